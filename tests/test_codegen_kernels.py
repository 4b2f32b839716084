"""The generated C kernels, compiled with the host gcc and called through ctypes on packed
random data, against the numpy golden model (tvm_mpq.reference.ops) bit for bit: every
kind x every (in, out, weight) bit combination, odd channel counts, strides 1 and 2,
per-layer and per-channel zero points, signed and unsigned activations and weights;
hypothesis over random shapes; determinism; the Cortex-M7 cross-compile.

Kernels are generated once per session (generate_kernel caches) and compiled in batches:
one gcc call per test builds one shared library from many kernels."""

from __future__ import annotations

import ctypes
import itertools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tvm_mpq.codegen import kernel_dsp, kernels
from tvm_mpq.codegen.kernels import KernelSpec, generate_kernel, pack_params
from tvm_mpq.errors import ModelError
from tvm_mpq.reference import icn, ops
from tvm_mpq.reference.packing import pack, packed_bytes, unpack

BITS = (8, 4, 2)
COMBOS = list(itertools.product(BITS, BITS, BITS))
GCC = shutil.which("gcc")
ARM_GCC = shutil.which("arm-none-eabi-gcc")
C_FLAGS = ["-std=c99", "-O2", "-Wall", "-Werror"]
ARM_FLAGS = ["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"]

pytestmark = pytest.mark.skipif(GCC is None, reason="host gcc not installed")


# ---- building and calling kernels ----------------------------------------------------------
class HostBuilder:
    """Compiles batches of kernels into shared libraries (one gcc call per batch)."""

    def __init__(self, root: Path):
        self.root = root
        self.n = 0
        self.libs: dict[tuple, ctypes.CDLL] = {}

    def load(self, kernels) -> ctypes.CDLL:
        kernels = list({k.name: k for k in kernels}.values())
        key = tuple(sorted((k.name, hash(k.c_source)) for k in kernels))
        if key in self.libs:
            return self.libs[key]
        self.n += 1
        d = self.root / f"batch{self.n}"
        d.mkdir()
        srcs = []
        for k in kernels:
            (d / f"{k.name}.c").write_text(k.c_source)
            srcs.append(str(d / f"{k.name}.c"))
        so = d / "kernels.so"
        proc = subprocess.run([GCC, *C_FLAGS, "-shared", "-fPIC", "-o", str(so), *srcs],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr[-4000:]
        self.libs[key] = lib = ctypes.CDLL(str(so))
        return lib


@pytest.fixture(scope="session")
def builder(tmp_path_factory):
    return HostBuilder(tmp_path_factory.mktemp("kernels"))


def _call(lib, kernel, args: list[bytes], out_bytes: int) -> bytes:
    bufs = [ctypes.create_string_buffer(a, len(a)) for a in args]
    out = ctypes.create_string_buffer(b"\xa5" * out_bytes, out_bytes)  # tails must be cleared
    # scratch starts as garbage (the kernel must not rely on its contents); 8-byte aligned
    scratch = [(ctypes.c_uint64 * -(-kernel.scratch_bytes // 8))(
        *([0xa5a5a5a5a5a5a5a5] * -(-kernel.scratch_bytes // 8)))] if kernel.scratch_bytes else []
    fn = getattr(lib, kernel.name)
    fn.restype = ctypes.c_int32
    fn.argtypes = [ctypes.c_void_p] * (len(bufs) + 1 + len(scratch))
    assert fn(*bufs, out, *[ctypes.cast(b, ctypes.c_void_p) for b in scratch]) == 0
    return out.raw


# ---- random cases ---------------------------------------------------------------------------
def _range(bits, signed):
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _ints(rng, bits, signed, shape):
    lo, hi = _range(bits, signed)
    return rng.integers(lo, hi + 1, shape)


class Case:
    """A spec, its packed arguments and the golden output (packed and unpacked)."""

    def __init__(self, spec: KernelSpec, args: list[bytes], want: np.ndarray):
        self.spec, self.args, self.want = spec, args, want
        self.kernel = generate_kernel(spec)
        # the stack stays small: the accumulators of one channel block (the fast depthwise
        # kernels add their widened weights of one block: 2 k^2 + 4 int32, or the row
        # kernel's table of G channels); im2col columns and rings are in the scratch argument
        body = self.kernel.c_source[self.kernel.c_source.rindex(self.kernel.prototype[:-1]):]
        arrays = [int(n) for n in re.findall(r"\b\w+\[(\d+)\];", body)]
        # (the one-row GEMM block: up to 8 columns x the channels of one output byte)
        limit = 8
        if kernels.is_fast(spec):
            limit = max(2 * spec.kernel ** 2 + 4, kernel_dsp.DWR_TAB * 8) \
                if spec.kind == "depthwise" else 8 * max(1, 8 // spec.out_bits)
        assert max(arrays, default=0) <= max(8, limit), (self.kernel.name, arrays)

    def check(self, lib):
        s = self.spec
        got_raw = _call(lib, self.kernel, self.args, packed_bytes(s.out_shape, s.out_bits))
        got = unpack(np.frombuffer(got_raw, np.uint8).reshape(s.out_shape[:-1] + (-1,)),
                     s.out_bits, s.out_shape[-1], signed=s.out_signed)
        np.testing.assert_array_equal(got, self.want, err_msg=self.kernel.name)
        assert got_raw == pack(self.want, s.out_bits).tobytes(), f"{self.kernel.name}: tails"


def _icn_params(rng, cout, k_elems, in_bits, w_bits, out_bits):
    bias = rng.integers(-2000, 2000, cout)
    scale = (1 << out_bits) / max(1.0, np.sqrt(k_elems) * (1 << in_bits) * (1 << w_bits) / 4)
    ms = rng.uniform(0.3, 3.0, cout) * scale * rng.choice([1, 1, 1, -1], cout)
    m0, n0 = icn.quantize_multipliers(ms)
    return bias, m0, n0


def _q_limits(rng, out_bits, out_signed, narrow):
    lo, hi = _range(out_bits, out_signed)
    if narrow and hi - lo >= 3:             # a fused activation clamp
        lo, hi = lo + 1, hi - int(rng.integers(0, 2))
    return lo, hi


def conv_case(seed, kind, in_bits, out_bits, w_bits, per_channel, *, h=7, c=5, cout=3,
              stride=1, in_signed=False, out_signed=False, w_signed=False, narrow=False):
    """Spec fields depend on everything but `per_channel` and the data (kernels are shared)."""
    rng = np.random.default_rng(seed)
    k, pad = (1, 0) if kind == "pointwise" else (3, 1)
    cout = c if kind == "depthwise" else cout
    ho = (h + 2 * pad - k) // stride + 1
    q_min, q_max = _q_limits(rng, out_bits, out_signed, narrow)
    z_in = int(_ints(rng, in_bits, in_signed, ()))
    z_out = int(rng.integers(q_min, min(q_max, q_min + 2) + 1))
    spec = KernelSpec(kind, (1, h, h, c), (1, ho, ho, cout), kernel=k, stride=stride, pad=pad,
                      in_bits=in_bits, out_bits=out_bits, w_bits=w_bits, in_signed=in_signed,
                      out_signed=out_signed, w_signed=w_signed, z_in=z_in, z_out=z_out,
                      q_min=q_min, q_max=q_max, suffix=f"t{seed}", acc_shift=seed % 3)
    drng = np.random.default_rng([seed, int(per_channel)])
    x = _ints(drng, in_bits, in_signed, (1, h, h, c))
    w = _ints(drng, w_bits, w_signed, (cout, k, k, 1 if kind == "depthwise" else c))
    w_zero = _ints(drng, w_bits, w_signed, cout if per_channel else 1)
    w_zero = np.broadcast_to(w_zero, (cout,))
    bias, m0, n0 = _icn_params(drng, cout, k * k * (1 if kind == "depthwise" else c),
                               in_bits, w_bits, out_bits)
    n0 = (np.asarray(n0) - spec.acc_shift).astype(np.int8)     # same scale, finer bias
    want = ops.conv2d(x, w, w_zero, bias, z_in, stride, pad, m0, n0, z_out, q_min, q_max,
                      depthwise=kind == "depthwise", acc_shift=spec.acc_shift)
    p = pack_params(spec, w, w_zero, bias, m0, n0)
    args = [pack(x[0], in_bits).tobytes()] + [p[n][1] for n in ("w", "w_zero", "bias", "m0", "n0")]
    return Case(spec, args, want)


def linear_case(seed, in_bits, out_bits, w_bits, *, kdim=37, n=11, in_signed=False,
                out_signed=True, w_signed=False, per_channel=True):
    rng = np.random.default_rng(seed)
    q_min, q_max = _range(out_bits, out_signed)
    z_in = int(_ints(rng, in_bits, in_signed, ()))
    spec = KernelSpec("linear", (1, kdim), (1, n), in_bits=in_bits, out_bits=out_bits,
                      w_bits=w_bits, in_signed=in_signed, out_signed=out_signed,
                      w_signed=w_signed, z_in=z_in, z_out=0, q_min=q_min, q_max=q_max,
                      suffix=f"t{seed}", acc_shift=seed % 2)
    x = _ints(rng, in_bits, in_signed, (1, kdim))
    w = _ints(rng, w_bits, w_signed, (n, kdim))
    w_zero = np.broadcast_to(_ints(rng, w_bits, w_signed, n if per_channel else 1), (n,))
    bias, m0, n0 = _icn_params(rng, n, kdim, in_bits, w_bits, out_bits)
    n0 = (np.asarray(n0) - spec.acc_shift).astype(np.int8)
    want = ops.linear(x, w, w_zero, bias, z_in, m0, n0, 0, q_min, q_max,
                      acc_shift=spec.acc_shift)
    p = pack_params(spec, w, w_zero, bias, m0, n0)
    args = [pack(x, in_bits).tobytes()] + [p[k][1] for k in ("w", "w_zero", "bias", "m0", "n0")]
    return Case(spec, args, want)


def pool_case(seed, in_bits, out_bits, *, h=5, c=9, kernel=5, stride=1, in_signed=False):
    rng = np.random.default_rng(seed)
    ho = (h - kernel) // stride + 1
    q_min, q_max = _range(out_bits, False)
    z_in = int(_ints(rng, in_bits, in_signed, ()))
    m0, n0 = icn.quantize_multipliers(np.array([(1 << out_bits) / (1 << in_bits)
                                                / kernel ** 2]))
    spec = KernelSpec("avg_pool", (1, h, h, c), (1, ho, ho, c), kernel=kernel, stride=stride,
                      in_bits=in_bits, out_bits=out_bits, in_signed=in_signed, z_in=z_in,
                      z_out=0, q_min=q_min, q_max=q_max, suffix=f"t{seed}")
    x = _ints(rng, in_bits, in_signed, (1, h, h, c))
    want = ops.avg_pool(x, kernel, stride, z_in, m0, n0, 0, q_min, q_max)
    p = pack_params(spec, m0=m0, n0=n0)
    return Case(spec, [pack(x[0], in_bits).tobytes(), p["m0"][1], p["n0"][1]], want)


def add_case(seed, a_bits, b_bits, out_bits, *, shape=(1, 4, 3, 7), shift=16, signed=False,
             b_signed=None):
    rng = np.random.default_rng(seed)
    b_signed = signed if b_signed is None else b_signed
    q_min, q_max = _range(out_bits, signed)
    z_a, z_b = int(_ints(rng, a_bits, signed, ())), int(_ints(rng, b_bits, b_signed, ()))
    scale = (1 << out_bits) / (1 << max(a_bits, b_bits))
    k_a = int(rng.uniform(0.3, 1.0) * scale * (1 << shift))
    k_b = int(rng.uniform(0.3, 1.0) * scale * (1 << shift))
    spec = KernelSpec("add", shape, shape, in_bits=a_bits, b_bits=b_bits, out_bits=out_bits,
                      in_signed=signed, b_signed=b_signed, out_signed=signed, z_a=z_a, z_b=z_b,
                      k_a=k_a, k_b=k_b,
                      shift=shift, z_out=int(q_min + 1), q_min=q_min, q_max=q_max,
                      suffix=f"t{seed}")
    a = _ints(rng, a_bits, signed, shape)
    b = _ints(rng, b_bits, b_signed, shape)
    want = ops.add(a, b, z_a, z_b, k_a, k_b, shift, q_min + 1, q_min, q_max)
    return Case(spec, [pack(a[0], a_bits).tobytes(), pack(b[0], b_bits).tobytes()], want)


def _run_all(builder, cases):
    lib = builder.load(c.kernel for c in cases)
    for c in cases:
        c.check(lib)


# ---- every kind x every bit combination -----------------------------------------------------
def _conv_combo_cases(kind, per_channel):
    cases = []
    for i, (ib, ob, wb) in enumerate(COMBOS):
        cases.append(conv_case(100 * KINDS_SEED[kind] + i, kind, ib, ob, wb, per_channel,
                               stride=1 + i % 2, in_signed=i % 4 == 1, out_signed=i % 5 == 2,
                               w_signed=i % 3 == 0, narrow=i % 7 == 3))
    return cases


KINDS_SEED = {"conv": 1, "depthwise": 2, "pointwise": 3}


@pytest.mark.parametrize("kind", ["conv", "depthwise", "pointwise"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["pl", "pc"])
def test_conv_kinds_all_bit_combos(builder, kind, per_channel):
    _run_all(builder, _conv_combo_cases(kind, per_channel))


def test_outputs_are_not_degenerate(builder):
    case = conv_case(7, "conv", 8, 8, 8, True, h=9, c=7, cout=5)
    _run_all(builder, [case])
    assert len(np.unique(case.want)) > 10


def test_unit_extents(builder):
    """Loops of extent 1 (1x1 windows, one channel) vanish in TIR; the schedule copes."""
    cases = [conv_case(800 + i, kind, 8, ob, 4, True, h=h, c=c, cout=co)
             for i, (kind, ob, h, c, co) in enumerate([
                 ("pointwise", 8, 3, 1, 1), ("pointwise", 2, 1, 1, 1), ("conv", 4, 1, 1, 2),
                 ("depthwise", 2, 2, 1, 1), ("pointwise", 8, 4, 64, 40)])]
    cases += [linear_case(810, 8, 4, 2, kdim=1, n=1), pool_case(811, 2, 4, h=1, c=1, kernel=1)]
    _run_all(builder, cases)


def test_large_odd_channel_counts_keep_scratch_small(builder):
    """A partly filled last output byte must not size the accumulators for all channels."""
    cases = [conv_case(820, "depthwise", 4, 2, 8, True, h=2, c=257),
             conv_case(821, "pointwise", 2, 4, 2, True, h=1, c=3, cout=1001),
             linear_case(822, 8, 2, 4, kdim=5, n=1001),
             pool_case(823, 8, 2, h=2, c=1023, kernel=2)]
    _run_all(builder, cases)          # Case asserts the stack arrays hold <= 8 int32


def test_linear_all_bit_combos_signed_int8_logits(builder):
    cases = [linear_case(300 + i, ib, ob, wb, in_signed=i % 4 == 1, w_signed=i % 3 == 0,
                         per_channel=i % 2 == 0) for i, (ib, ob, wb) in enumerate(COMBOS)]
    _run_all(builder, cases)
    assert all(c.spec.out_signed for c in cases)
    assert cases[0].kernel.name.startswith("mpq_linear_u8_s8_ws8_")
    assert any((c.want < 0).any() for c in cases)


def test_avg_pool_all_bit_combos(builder):
    cases = [pool_case(400 + i, ib, ob, in_signed=i % 3 == 2)
             for i, (ib, ob) in enumerate(itertools.product(BITS, BITS))]
    cases += [pool_case(450, 4, 2, h=7, c=3, kernel=2, stride=2),
              pool_case(451, 2, 8, h=6, c=13, kernel=3, stride=1)]
    _run_all(builder, cases)


def test_add_all_bit_combos(builder):
    cases = [add_case(500 + i, ab, ab, ob, signed=i % 4 == 3)
             for i, (ab, ob) in enumerate(itertools.product(BITS, BITS))]
    cases += [add_case(550, 8, 2, 4), add_case(551, 2, 4, 8, shape=(1, 11)),
              add_case(552, 8, 8, 8, shift=40),      # int64 arithmetic path
              add_case(553, 4, 8, 4, b_signed=True), add_case(554, 2, 4, 8, signed=True,
                                                              b_signed=False)]
    _run_all(builder, cases)


# ---- random shapes --------------------------------------------------------------------------
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), kind=st.sampled_from(["conv", "depthwise", "pointwise"]),
       bits=st.tuples(st.sampled_from(BITS), st.sampled_from(BITS), st.sampled_from(BITS)),
       h=st.integers(1, 9), c=st.integers(1, 19), cout=st.integers(1, 9),
       stride=st.sampled_from([1, 2]), signs=st.tuples(st.booleans(), st.booleans(), st.booleans()))
def test_conv_property_random_shapes(builder, seed, kind, bits, h, c, cout, stride, signs):
    case = conv_case(seed, kind, *bits, seed % 2 == 0, h=h, c=c, cout=cout, stride=stride,
                     in_signed=signs[0], out_signed=signs[1], w_signed=signs[2])
    _run_all(builder, [case])


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16),
       bits=st.tuples(st.sampled_from(BITS), st.sampled_from(BITS), st.sampled_from(BITS)),
       kdim=st.integers(1, 70), n=st.integers(1, 13))
def test_linear_property_random_shapes(builder, seed, bits, kdim, n):
    _run_all(builder, [linear_case(seed, *bits, kdim=kdim, n=n, out_signed=seed % 2 == 0)])


# ---- the C itself ---------------------------------------------------------------------------
def _one_of_each_kind():
    return [conv_case(600, "conv", 8, 4, 2, True, stride=2).spec,
            conv_case(601, "depthwise", 4, 8, 4, True).spec,
            conv_case(602, "pointwise", 2, 2, 8, True).spec,
            linear_case(603, 8, 8, 4).spec, pool_case(604, 4, 8).spec,
            add_case(605, 8, 4, 8).spec]


def test_deterministic_source():
    from tvm_mpq.codegen import kernels

    for spec in _one_of_each_kind():
        first = generate_kernel(spec)
        again = kernels._generate.__wrapped__(spec)          # bypass the cache: regenerate
        assert first == again
        assert first.name == spec.name and first.prototype.startswith(f"int32_t {spec.name}(")
        assert "TVMBackend" not in first.c_source and "malloc" not in first.c_source
        assert first.prototype[:-1] in first.c_source
        assert first.scratch_bytes == kernel_dsp.scratch_bytes(spec)


def test_deterministic_across_processes():
    spec = _one_of_each_kind()[0]
    code = ("import sys; from tvm_mpq.codegen.kernels import KernelSpec, generate_kernel; "
            f"sys.stdout.write(generate_kernel(KernelSpec(**{_fields(spec)!r})).c_source)")
    env = dict(os.environ, PYTHONHASHSEED="123")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout
    assert out == generate_kernel(spec).c_source


def _fields(spec):
    from dataclasses import asdict

    return asdict(spec)


def test_abi_prototypes():
    specs = _one_of_each_kind()
    for spec in specs[:4]:
        wz = "int8_t" if spec.w_signed else "uint8_t"
        scratch = ", uint8_t *scratch" if kernel_dsp.scratch_bytes(spec) else ""
        w_args = (f"(const uint8_t *x, const uint8_t *w, const {wz} *w_zero, const int32_t *bias, "
                  f"const int32_t *m0, const int8_t *n0, uint8_t *y{scratch});")
        assert generate_kernel(spec).prototype == f"int32_t {spec.name}{w_args}"
    assert generate_kernel(specs[4]).prototype == (
        f"int32_t {specs[4].name}(const uint8_t *x, const int32_t *m0, const int8_t *n0, "
        "uint8_t *y);")
    assert generate_kernel(specs[5]).prototype == (
        f"int32_t {specs[5].name}(const uint8_t *a, const uint8_t *b, uint8_t *y);")
    assert specs[0].name == "mpq_conv2d_u8_u4_w2_t600"


@pytest.mark.skipif(ARM_GCC is None, reason="arm-none-eabi-gcc not installed")
def test_cortex_m7_compile(tmp_path):
    for spec in _one_of_each_kind():
        k = generate_kernel(spec)
        src = tmp_path / f"{k.name}.c"
        src.write_text(k.c_source)
        proc = subprocess.run([ARM_GCC, *ARM_FLAGS, *C_FLAGS, "-c", str(src), "-o",
                               str(tmp_path / f"{k.name}.o")], capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]


# ---- parameters and specs -------------------------------------------------------------------
def test_pack_params_layouts():
    spec = conv_case(700, "depthwise", 8, 8, 4, True, c=5).spec
    w = np.arange(5 * 9).reshape(5, 3, 3, 1) % 16
    p = pack_params(spec, w, np.arange(5), np.arange(5) - 2, np.full(5, 1 << 30), np.full(5, -3))
    want_w = pack(np.transpose(w[..., 0], (1, 2, 0)), 4).tobytes()       # (KH, KW, C)
    assert p["w"] == ("uint8_t", want_w)
    assert p["w_zero"] == (("int8_t", np.arange(5, dtype="i1").tobytes()) if spec.w_signed
                           else ("uint8_t", np.arange(5, dtype="u1").tobytes()))
    assert p["bias"][0] == "int32_t" and p["n0"] == ("int8_t", np.full(5, -3, "i1").tobytes())
    with pytest.raises(ModelError, match="weights of shape"):
        pack_params(spec, np.zeros((5, 3, 3)), 0, 0, 0, 0)
    with pytest.raises(ModelError, match="outside"):
        pack_params(spec, w + 16, 0, 0, 0, 0)


def test_spec_errors():
    with pytest.raises(ModelError, match="in_bits=3"):
        KernelSpec("conv", (1, 4, 4, 2), (1, 4, 4, 2), kernel=3, pad=1, in_bits=3)
    with pytest.raises(ModelError, match="output shape"):
        KernelSpec("conv", (1, 4, 4, 2), (1, 3, 3, 2), kernel=3, pad=1)
    with pytest.raises(ModelError, match="q_min"):
        KernelSpec("linear", (1, 4), (1, 2), out_bits=4, q_min=0, q_max=16)


def _relax_call(op, inputs, consts, attrs):
    """The bound call of `op` in main(inputs) (normalized: its type is known)."""
    from tvm_mpq import tvm_adapter as ta
    from tvm_mpq.passes.ops import make_call

    relax = ta.relax()
    bb = relax.BlockBuilder()
    params = [relax.Var(f"x{i}", ta.tensor_type(shape, dt)) for i, (shape, dt) in
              enumerate(inputs)]
    with bb.function("main", params):
        with bb.dataflow():
            y = bb.emit(make_call(op, params + [ta.const(c) for c in consts], attrs))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return next(v for _, v in ta.function_bindings(bb.get()["main"]) if ta.is_call(v))


def test_from_relax_call():
    consts = [np.ones((3, 3, 3, 5), np.int8), np.zeros(3, np.int32), np.zeros(3, np.int32),
              np.full(3, 1 << 30, np.int32), np.full(3, -2, np.int32)]
    attrs = {"stride": 2, "pad": 1, "depthwise": 0, "z_in": 1, "z_out": -3, "q_min": -8,
             "q_max": 7, "in_bits": 4, "out_bits": 4, "w_bits": 2, "w_signed": 1,
             "name": "conv/1", "kind": "conv"}
    spec = KernelSpec.from_relax_call(_relax_call("mpq.conv2d_icn", [((1, 6, 6, 5), "uint8")],
                                                  consts, attrs))
    assert spec == KernelSpec("conv", (1, 6, 6, 5), (1, 3, 3, 3), kernel=3, stride=2, pad=1,
                              in_bits=4, out_bits=4, w_bits=2, w_signed=True, out_signed=True,
                              z_in=1, z_out=-3, q_min=-8, q_max=7, suffix="conv/1")
    assert spec.name == "mpq_conv2d_u4_s4_ws2_conv_1"

    consts = [np.ones((10, 16), np.uint8), np.zeros(10, np.int32), np.zeros(10, np.int32),
              np.full(10, 1 << 30, np.int32), np.full(10, -2, np.int32)]
    attrs = {"z_in": -2, "z_out": 0, "q_min": -128, "q_max": 127, "in_bits": 8, "out_bits": 8,
             "w_bits": 4, "w_signed": 0, "name": "fc", "kind": "linear"}
    spec = KernelSpec.from_relax_call(_relax_call("mpq.linear_icn", [((1, 16), "int8")],
                                                  consts, attrs))
    assert (spec.kind, spec.in_signed, spec.out_signed, spec.w_bits, spec.out_shape) == \
        ("linear", True, True, 4, (1, 10))
    assert spec.name == "mpq_linear_s8_s8_w4_fc"

    attrs = {"kernel": 4, "stride": 1, "z_in": 0, "z_out": 0, "q_min": 0, "q_max": 3,
             "in_bits": 4, "out_bits": 2, "name": "gap", "kind": "pool"}
    spec = KernelSpec.from_relax_call(_relax_call(
        "mpq.avg_pool_icn", [((1, 4, 4, 9), "uint8")],
        [np.array([1 << 30], np.int32), np.array([-3], np.int32)], attrs))
    assert (spec.kind, spec.kernel, spec.out_shape, spec.name) == \
        ("avg_pool", 4, (1, 1, 1, 9), "mpq_avg_pool_u4_u2_gap")

    attrs = {"z_a": 1, "z_b": 0, "k_a": 3, "k_b": 5, "shift": 3, "z_out": 0, "q_min": 0,
             "q_max": 15, "in_bits": 8, "a_bits": 4, "b_bits": 8, "out_bits": 4, "name": "res",
             "kind": "add"}
    spec = KernelSpec.from_relax_call(_relax_call(
        "mpq.add_icn", [((1, 2, 2, 3), "uint8"), ((1, 2, 2, 3), "int8")], [], attrs))
    assert (spec.in_bits, spec.in_signed, spec.b_bits, spec.b_signed, spec.k_b, spec.shift) == \
        (4, False, 8, True, 5, 3)
    assert spec.name == "mpq_add_u4_u4_res"
