"""What an operator module declares: the `Operator` base class, one method per face.

Every stage of the flow reaches an operator only through these faces (never by asking
`layer.kind == ...`); docs/operators.md says what each face must do and which tests every
operator brings. A face an operator does not have raises `MissingFace`, naming the
operator and the face, so an incomplete operator fails loudly (and the registry test
lists it by name).

    frontend   onnx_types, from_onnx(ctx, node) -> Layer      (+ BatchNormalization/Relu/
                                                               Clip fused when has_weights)
    plan       kinds, letters, has_weights, plan_scratch_bytes(layer)
    Relax      mpq_ops {name: (n_inputs, infer, legalize)}, relax_patterns,
               legalize(leg, expr, fused, out, q_min, q_max)   (fake-quant -> integer op)
    golden     golden(op_name, args, attrs) -> np.ndarray       (numpy, bit-exact contract)
    kernels    kernel_kinds, c_kind, spec_from_call(call, common), validate_spec(spec, bad),
               c_args(spec), build_kernel(spec) -> (PrimFunc, scratch, prelude | None),
               pack_params(spec, consts), requant_flags(spec, consts),
               call_args(acts, cargs, y), weight_shape(spec), dsp_layout(spec)
    training   torch_face: the PyTorch twin's face (quant/faces/<op>.py: module, fake-quant
               configuration, calibration, QDQ export), imported only when training, since
               PyTorch is an optional dependency
    report     colors
"""

from __future__ import annotations

import numpy as np

from ..errors import MpqError


class MissingFace(MpqError):
    """An operator was asked for a face it does not declare (a bug in that operator)."""


class Operator:
    """One operator family. Subclasses set the class attributes and override the faces
    they have; `ops.register` makes the family known to every stage."""

    name: str = ""                        # family name: conv2d, linear, ...
    kinds: tuple[str, ...] = ()           # layer kinds (LayerGraph, plan) it owns
    onnx_types: tuple[str, ...] = ()      # ONNX op types it recognises
    letters: dict[str, str] = {}          # plan code letter per weight-layer kind
    has_weights: bool = False
    mpq_ops: dict = {}                    # integer Relax op name -> (n_inputs, infer, legalize)
    relax_patterns: tuple[str, ...] = ()  # float Relax ops (ONNX frontend) it legalizes
    kernel_kinds: tuple[str, ...] = ()    # codegen.kernels.KernelSpec kinds
    c_kind: dict[str, str] = {}           # KernelSpec kind -> name part of its C function
    colors: dict[str, str] = {}           # report colour per layer / kernel kind
    torch_face: str = ""                  # "module:Class" of its PyTorch training face

    def training_face(self):
        """The operator's PyTorch training face (an instance of the `torch_face` class)."""
        if not self.torch_face:
            self._missing("PyTorch training")
        if not hasattr(self, "_training_face"):
            import importlib

            module, cls = self.torch_face.split(":")
            self._training_face = getattr(importlib.import_module(module), cls)()
        return self._training_face

    def _missing(self, face: str):
        raise MissingFace(f"operator '{self.name}' has no {face} face")

    # ---- frontend -----------------------------------------------------------------------
    def from_onnx(self, ctx, node):
        """The `frontend.graph.Layer` of ONNX `node` (one of `onnx_types`), or None when the
        node folds into the layer that produced its input (e.g. an Add of a bias); `ctx`
        is the graph analyzer (shapes, constants, activation aliases, `owner`). Refuses
        what the flow cannot compile with an UnsupportedOpError/ModelError naming the
        node."""
        self._missing("frontend")

    # ---- plan -----------------------------------------------------------------------------
    def plan_scratch_bytes(self, layer) -> int:
        """The kernel scratch the liveness RAM model counts for `layer` (CMSIS-NN style)."""
        return 0

    # ---- Relax ----------------------------------------------------------------------------
    def legalize(self, leg, expr, fused, out, q_min: int, q_max: int):
        """Emit the integer op for the float Relax `expr` (one of `relax_patterns`) whose
        result is quantized to `out` (a QAct) with clamp [q_min, q_max]; `fused` holds
        the bias and batch-norm folded in front of the quantize (None if none). Returns
        the new Relax var. `leg` is the LegalizeRequantizeToICN state."""
        self._missing("legalization")

    # ---- golden model --------------------------------------------------------------------
    def golden(self, op_name: str, args: list[np.ndarray], attrs: dict) -> np.ndarray:
        """The numpy golden model of integer op `op_name` on unpacked integer arrays
        (activations NHWC, batch 1; constants as the Relax op holds them)."""
        self._missing("golden model")

    # ---- kernels -------------------------------------------------------------------------
    def spec_from_call(self, call, common: dict, get):
        """The `KernelSpec` of an integer Relax call; `common` holds the fields every
        kernel shares (shapes, in/out bits and signs, z_out, clamp, suffix); `get(key,
        default=0)` reads an int attribute of the call."""
        self._missing("kernel spec")

    def validate_spec(self, spec, bad) -> None:
        """Check the kernel spec's attributes; `bad(msg)` raises."""

    def c_args(self, spec) -> tuple[str, ...]:
        """The C parameters of the kernel (before an optional trailing scratch)."""
        self._missing("kernel ABI")

    def build_kernel(self, spec, name: str):
        """(PrimFunc, scratch bytes, C prelude or None) of the kernel for `spec`."""
        self._missing("kernel")

    def pack_params(self, spec, consts: list[np.ndarray]) -> dict[str, tuple[str, bytes]]:
        """The kernel's constant arguments as it reads them: {name: (C type, bytes)}, from
        the Relax call's constant arguments in order."""
        return {}

    def requant_flags(self, spec, consts: list[np.ndarray]) -> tuple[bool, bool]:
        """(ties, shift_hi) for the kernel spec from the layer's constants: whether exact
        rounding ties can occur (else a cheaper rounding), and whether every
        requantization shift is at least 33 bits (see codegen.kernels.KernelSpec)."""
        return True, False

    def call_args(self, acts: list[str], cargs: list[str], y: str) -> list[str]:
        """The kernel call's arguments from the activation pointers, the constants' symbols
        and the output pointer (scratch, if any, is appended by the caller)."""
        return acts[:1] + cargs + [y]

    def dsp_layout(self, spec) -> str | None:
        """How the DSP kernels (codegen.kernel_dsp) read the weights: "gemm" (im2col rows),
        "depthwise", or None when the operator has no DSP kernel."""
        return None

    def weight_shape(self, spec) -> tuple:
        """The shape of the weights `pack_params` takes (weight operators)."""
        self._missing("weight shape")
