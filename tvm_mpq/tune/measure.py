"""Measure one kernel on the target: a one-layer firmware, exact executed instructions.

    bench = LayerBench(spec, work_dir)              # data and golden output, once per layer
    elf = bench.build(schedule)                     # firmware with that schedule's kernel
    n = measure_elf(elf, bench.input_path, bench.want_path, bench.kernel_name)

The layer's data are random (seeded by the spec, so a measurement is repeatable) with the
layer's own quantization constants: its zero points, clamp range, accumulator shift and
whether rounding ties can occur (m0 / n0 are drawn so `reference.icn.ties_possible`
agrees with `spec.ties`: the measured kernel is the variant the compiled model uses).
Every measurement checks the firmware's output bytes against the numpy golden model, so a
schedule that computes a wrong result is a failed trial, never a fast one.

The weights and the harness are compiled once per layer; a trial rebuilds only the
kernel's C file (CMake/make in a per-layer build directory).
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import numpy as np

from ..codegen.aot import c_array
from ..codegen.kernels import Kernel, KernelSpec, generate_kernel, pack_params
from ..errors import MpqError
from ..fsutil import write_bytes_atomic, write_text_atomic
from .. import ops
from ..reference import icn
from ..reference.packing import int_range, pack



class MeasureError(MpqError):
    """A trial that could not be measured (wrong output, fault, timeout)."""


def layer_data(spec: KernelSpec):
    """(packed input, packed constants, golden packed output) of random data for `spec`."""
    seed = int(hashlib.sha256(spec.digest().encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    lo, hi = int_range(spec.in_bits, spec.in_signed)
    x = rng.integers(lo, hi + 1, spec.in_shape)
    op = ops.for_kernel(spec.kind)
    wshape = op.relax_weight_shape(spec)
    wlo, whi = int_range(spec.w_bits, spec.w_signed)
    w = rng.integers(wlo, whi + 1, wshape)
    cout = wshape[0]
    w_zero = rng.integers(wlo, whi + 1, cout) // 4
    bias = rng.integers(-500, 500, cout)
    k_elems = int(np.prod(wshape[1:]))
    scale = (1 << spec.out_bits) / (np.sqrt(k_elems) * (1 << spec.in_bits)
                                    * (1 << spec.w_bits) / 4)
    m0, n0 = icn.quantize_multipliers(rng.uniform(0.5, 2.0, cout) * scale
                                      / (1 << spec.acc_shift))
    m0 = m0.astype(np.int64)
    n0 = (np.minimum(n0, -2) if spec.shift_hi else n0).astype(np.int8)
    if not spec.shift_hi and np.all(n0 <= -2):
        n0[0] = -1
    if spec.ties:        # make one channel able to tie: m0 with enough trailing zeros
        v = max(1, -int(n0[0]) + 1)
        m0[0] = (m0[0] >> v << v) or (1 << 30)
    else:                # odd multipliers: no tie for any accumulator when n0 < 0
        m0 |= 1
        n0 = np.minimum(n0, -1).astype(np.int8)
    m0 = m0.astype(np.int32)
    if icn.ties_possible(m0, n0) != spec.ties:
        raise MeasureError(f"could not draw multipliers with ties={spec.ties} for {spec.name}")
    want = op.golden_from_spec(spec, x, w, w_zero, bias, m0, n0)
    xp = pack(x.reshape(-1, x.shape[-1]), spec.in_bits)
    outp = pack(np.asarray(want).reshape(-1, spec.out_shape[-1]), spec.out_bits)
    return xp.tobytes(), pack_params(spec, w, w_zero, bias, m0, n0), outp.tobytes()


_MODEL_H = """#ifndef MODEL_H
#define MODEL_H
#include <stdint.h>
#define MPQ_INPUT_BYTES {in_bytes}
#define MPQ_OUTPUT_BYTES {out_bytes}
#define MPQ_ARENA_BYTES 4
#define MPQ_NUM_LAYERS 1
extern const char *const mpq_layer_names[MPQ_NUM_LAYERS];
int mpq_model_run(const uint8_t *input, uint8_t *output);
#ifdef MPQ_PROFILE
void mpq_profile_begin(int layer);
void mpq_profile_end(int layer);
#endif
#endif
"""


def kernel_for(spec: KernelSpec, schedule: dict | None) -> Kernel:
    """The kernel of `spec` with `schedule`, under the fixed name the harness calls."""
    return generate_kernel(dataclasses.replace(spec.with_schedule(schedule), suffix="kernel"))


def kernel_digest(spec: KernelSpec, schedule: dict | None) -> str:
    """Identifies the measured code: a trial is reused only while its kernel is unchanged."""
    return hashlib.sha256(kernel_for(spec, schedule).c_source.encode()).hexdigest()[:16]


class LayerBench:
    """The measurement firmware of one layer (one directory per layer under `work_dir`)."""

    def __init__(self, spec: KernelSpec, work_dir: str | Path, board: str = "qemu_m7"):
        self.spec = dataclasses.replace(spec, suffix="", schedule=())
        self.board = board
        self.dir = Path(work_dir) / f"layer_{self.spec.digest()}"
        self.cg = self.dir / "codegen"
        self.input_path = self.dir / "input.bin"
        self.want_path = self.dir / "want.bin"
        self.kernel_name = kernel_for(self.spec, None).name

    def prepare(self) -> None:
        """Write the data, the harness and the golden output (once; kept across runs)."""
        if (self.dir / "ready").is_file():
            return
        self.cg.mkdir(parents=True, exist_ok=True)
        x, consts, want = layer_data(self.spec)
        k = kernel_for(self.spec, None)
        scratch = self.max_scratch()
        write_text_atomic(self.cg / "model.h", _MODEL_H.format(in_bytes=len(x),
                                                               out_bytes=len(want)))
        write_text_atomic(self.cg / "data.c", '#include <stdint.h>\n' + "".join(
            c_array(t, f"k_{n}", d) for n, (t, d) in consts.items()))
        externs = "".join(f"extern const {t} k_{n}[];\n" for n, (t, _) in consts.items())
        args = ", ".join(["input"] + [f"k_{n}" for n in consts] + ["output"])
        write_text_atomic(self.cg / "model.c", (
            '#include "model.h"\n' + externs
            + f"static uint8_t scratch[{scratch}] __attribute__((aligned(8)));\n"
            + k.prototype + "\n"
            + f'const char *const mpq_layer_names[MPQ_NUM_LAYERS] = {{"{k.name}"}};\n'
            "int mpq_model_run(const uint8_t *input, uint8_t *output)\n{\n"
            f"    return {k.name}({args}{', scratch' if k.scratch_bytes else ''});\n}}\n"))
        write_bytes_atomic(self.input_path, x)
        write_bytes_atomic(self.want_path, want)
        (self.dir / "ready").write_text("")

    def max_scratch(self) -> int:
        """The largest scratch any schedule of the layer's space asks for (at least 8 B)."""
        from ..codegen import kernel_dsp

        from .space import points

        best = 8
        for sched in points(self.spec) or [{}]:
            best = max(best, kernel_dsp.scratch_bytes(self.spec.with_schedule(sched)))
        return best

    def scratch_ok(self, schedule: dict | None) -> bool:
        return kernel_for(self.spec, schedule).scratch_bytes <= self.max_scratch()

    def build(self, schedule: dict | None, out_elf: str | Path) -> Path:
        """Build the firmware with this schedule's kernel; copy the image to `out_elf`."""
        from ..target import build_firmware

        self.prepare()
        k = kernel_for(self.spec, schedule)
        if not self.scratch_ok(schedule):
            raise MeasureError(f"schedule {schedule} needs {k.scratch_bytes} B of scratch")
        src = self.cg / "kernel.c"
        if not src.is_file() or src.read_text() != k.c_source:
            write_text_atomic(src, k.c_source)
        elf = build_firmware(None, self.board, self.dir / "build", codegen_dir=self.cg)
        out = Path(out_elf)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(elf, out)
        return out


def measure_elf(elf: str | Path, input_path: str | Path, want_path: str | Path,
                kernel_name: str, timeout_s: float = 600) -> int:
    """Run the measurement firmware on QEMU; the kernel's executed instructions.
    Raises MeasureError when its output differs from the golden model's."""
    from ..target import run_qemu
    from ..target.plugin import function_ranges, kernel_symbols

    x = Path(input_path).read_bytes()
    names = kernel_symbols(function_ranges(elf), kernel_name)
    res = run_qemu(elf, x, ranges=names or [kernel_name], timeout_s=timeout_s)
    if res.output_bytes != Path(want_path).read_bytes():
        raise MeasureError(f"{kernel_name}: output differs from the golden model")
    return sum(int(res.instructions_by_range[n]) for n in names)
