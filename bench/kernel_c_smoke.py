"""Generate the benchmark layers L1-L7 (docs/benchmarks.md) as C kernels and
smoke-test them: TVM generation time, host gcc build and run (checked bit for bit against
tvm_mpq.reference.ops, host ns/MAC), arm-none-eabi-gcc object size, and with --qemu the
executed Cortex-M7 instructions per MAC on QEMU mps2-an500 (also checked bit for bit).

    .venv/bin/python bench/kernel_c_smoke.py [--bits 8,8,8 --bits 4,4,4 ...] [--only L1,L5]
                                             [--qemu] [--keep DIR]

--bits takes in,out,weight bit widths (default: 8,8,8 and 4,4,4 and 2,2,2). Instruction
counts are not cycles (a Cortex-M7 issues up to two a cycle); the CMSIS-NN int8 anchor is
1.56-8.83 instructions/MAC on the same shapes. A kernel's count includes its generated
assembly functions (`<kernel>__*`); MPQ_BENCH_SPLIT=1 prints them apart on stderr (also
for bench/kernel_bench.py, which measures through qemu_count here).
"""

from __future__ import annotations

import dataclasses

import argparse
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tvm_mpq.codegen.aot import c_array
from tvm_mpq.codegen.kernels import KernelSpec, generate_kernel, pack_params
from tvm_mpq.reference import icn, ops
from tvm_mpq.reference.packing import pack, packed_bytes

# id: (kind, H, C_in, C_out, kernel, stride, pad)
LAYERS = {
    "L1": ("pointwise", 14, 256, 256, 1, 1, 0),
    "L2": ("pointwise", 56, 32, 64, 1, 1, 0),
    "L3": ("conv", 32, 3, 16, 3, 2, 1),
    "L4": ("conv", 14, 32, 32, 3, 1, 1),
    "L5": ("depthwise", 28, 64, 64, 3, 1, 1),
    "L6": ("depthwise", 56, 32, 32, 3, 2, 1),
    "L7": ("linear", 1, 1024, 1000, 1, 1, 0),
}
ARM = ["arm-none-eabi-gcc", "-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard",
       "-mfpu=fpv5-d16", "-O2", "-std=c99", "-Wall", "-fstack-usage", "-c"]


def make_layer(lid: str, bits: tuple[int, int, int], seed: int = 0):
    """(spec, packed args, golden packed output, MACs) of one benchmark layer."""
    kind, h, c, cout, k, s, p = LAYERS[lid]
    ib, ob, wb = bits
    rng = np.random.default_rng(seed)
    q = (0, (1 << ob) - 1)
    z_in = int(rng.integers(0, 1 << ib))
    if kind == "linear":
        spec = KernelSpec("linear", (1, c), (1, cout), in_bits=ib, out_bits=ob, w_bits=wb,
                          w_signed=True, z_in=z_in, suffix=lid)
        w = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), (cout, c))
        macs = c * cout
    else:
        ho = (h + 2 * p - k) // s + 1
        cout = c if kind == "depthwise" else cout
        spec = KernelSpec(kind, (1, h, h, c), (1, ho, ho, cout), kernel=k, stride=s, pad=p,
                          in_bits=ib, out_bits=ob, w_bits=wb, w_signed=True, z_in=z_in,
                          suffix=lid)
        w = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1),
                         (cout, k, k, 1 if kind == "depthwise" else c))
        macs = ho * ho * cout * k * k * (1 if kind == "depthwise" else c)
    x = rng.integers(0, 1 << ib, spec.in_shape)
    w_zero = rng.integers(-1, 2, cout)
    bias = rng.integers(-500, 500, cout)
    k_elems = w[0].size
    m = rng.uniform(0.5, 2.0, cout) * (1 << ob) / (np.sqrt(k_elems) * (1 << ib) * (1 << wb) / 4)
    # bias fractional bits as the compiler picks them (passes/legalize_icn.py: the largest
    # shift <= 12 that keeps the worst accumulator in int32), the multipliers scaled to match
    x_dev = max(z_in, (1 << ib) - 1 - z_in)
    raw = int(np.max(icn.accumulator_max(w, w_zero, np.zeros(cout, np.int64), x_dev)))
    acc_shift = 0
    while acc_shift < 12 and (raw + 500) * 2 ** (acc_shift + 1) < 2 ** 31 - 1:
        acc_shift += 1
    bias = bias * (1 << acc_shift) + rng.integers(0, 1 << acc_shift, cout)
    m0, n0 = icn.quantize_multipliers(m / (1 << acc_shift))
    spec = dataclasses.replace(spec, acc_shift=acc_shift)
    if kind == "linear":
        want = ops.linear(x, w, w_zero, bias, z_in, m0, n0, 0, *q, acc_shift=acc_shift)
        xp = pack(x, ib)
    else:
        want = ops.conv2d(x, w, w_zero, bias, z_in, s, p, m0, n0, 0, *q,
                          depthwise=kind == "depthwise", acc_shift=acc_shift)
        xp = pack(x[0], ib)
    consts = pack_params(spec, w, w_zero, bias, m0, n0)
    # as the compiler does (codegen/aot.py): the cheaper rounding when no tie can occur
    amax = icn.accumulator_max(w, w_zero, bias, x_dev, acc_shift)
    spec = dataclasses.replace(spec, ties=icn.ties_possible(m0, n0, amax),
                               shift_hi=bool(np.all(n0 <= -2)))
    return spec, xp.tobytes(), consts, pack(want, ob).tobytes(), macs


def host_run(so: Path, name: str, x: bytes, consts: dict, out_bytes: int, repeat: int = 3,
             scratch_bytes: int = 0):
    lib = ctypes.CDLL(str(so))
    fn = getattr(lib, name)
    fn.restype = ctypes.c_int32
    args = [ctypes.create_string_buffer(x, len(x))] + \
        [ctypes.create_string_buffer(d, len(d)) for _, d in consts.values()]
    out = ctypes.create_string_buffer(out_bytes)
    extra = [(ctypes.c_uint64 * -(-scratch_bytes // 8))()] if scratch_bytes else []
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        rc = fn(*args, out, *extra)
        best = min(best, time.perf_counter() - t0)
    assert rc == 0
    return out.raw, best


def qemu_count(tmp: Path, kernel, x: bytes, consts: dict, want: bytes):
    """Build a one-layer firmware for qemu_m7; returns (instructions in the kernel, ok)."""
    from tvm_mpq.target import build_firmware, run_qemu
    from tvm_mpq.target.plugin import function_ranges, kernel_symbols

    cg = tmp / f"cg_{kernel.name}"
    cg.mkdir()
    (cg / "model.h").write_text(
        "#ifndef MODEL_H\n#define MODEL_H\n#include <stdint.h>\n"
        f"#define MPQ_INPUT_BYTES {len(x)}\n#define MPQ_OUTPUT_BYTES {len(want)}\n"
        "#define MPQ_ARENA_BYTES 4\n#define MPQ_NUM_LAYERS 1\n"
        "extern const char *const mpq_layer_names[MPQ_NUM_LAYERS];\n"
        "int mpq_model_run(const uint8_t *input, uint8_t *output);\n"
        "#ifdef MPQ_PROFILE\nvoid mpq_profile_begin(int layer);\nvoid mpq_profile_end(int layer);\n"
        "#endif\n#endif\n")
    (cg / f"{kernel.name}.c").write_text(kernel.c_source)
    arrays = [c_array(t, f"k_{n}", d) for n, (t, d) in consts.items()]
    call_args = ", ".join(["input"] + [f"k_{n}" for n in consts] + ["output"]
                          + (["scratch"] if kernel.scratch_bytes else []))
    if kernel.scratch_bytes:
        arrays.append(f"static uint8_t scratch[{kernel.scratch_bytes}] "
                      "__attribute__((aligned(8)));")
    (cg / "model.c").write_text(
        '#include "model.h"\n' + "\n".join(arrays) + "\n" + kernel.prototype + "\n"
        f'const char *const mpq_layer_names[MPQ_NUM_LAYERS] = {{"{kernel.name}"}};\n'
        "int mpq_model_run(const uint8_t *input, uint8_t *output)\n{\n"
        "#ifdef MPQ_PROFILE\n    mpq_profile_begin(0);\n#endif\n"
        f"    int rc = {kernel.name}({call_args});\n"
        "#ifdef MPQ_PROFILE\n    mpq_profile_end(0);\n#endif\n    return rc;\n}\n")
    elf = build_firmware(None, "qemu_m7", tmp / f"build_{kernel.name}", codegen_dir=cg)
    names = kernel_symbols(function_ranges(elf), kernel.name)   # with its helpers
    res = run_qemu(elf, x, ranges=names, timeout_s=600)
    if os.environ.get("MPQ_BENCH_SPLIT"):
        print({n: res.instructions_by_range[n] for n in names}, file=sys.stderr)
    return sum(res.instructions_by_range[n] for n in names), res.output_bytes == want


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bits", action="append", help="in,out,weight bits (repeatable)")
    p.add_argument("--only", help="comma-separated layer ids (default: all)")
    p.add_argument("--qemu", action="store_true", help="count Cortex-M7 instructions on QEMU")
    p.add_argument("--keep", type=Path, help="keep sources and builds in this directory")
    args = p.parse_args(argv)
    combos = [tuple(int(v) for v in b.split(",")) for b in (args.bits or ["8,8,8", "4,4,4",
                                                                          "2,2,2"])]
    layers = args.only.split(",") if args.only else list(LAYERS)
    gcc, arm = shutil.which("gcc"), shutil.which(ARM[0])
    tmp = Path(tempfile.mkdtemp(prefix="mpq-kernels-")) if not args.keep else args.keep
    tmp.mkdir(parents=True, exist_ok=True)
    print("| layer | bits i/o/w | kernel | gen s | C lines | host check | host ns/MAC "
          "| ARM .text B | ARM stack B | M7 insn/MAC |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    for bits in combos:
        for lid in layers:
            spec, x, consts, want, macs = make_layer(lid, bits)
            t0 = time.perf_counter()
            k = generate_kernel(spec)
            gen_s = time.perf_counter() - t0
            src = tmp / f"{k.name}.c"
            src.write_text(k.c_source)
            so = tmp / f"{k.name}.so"
            subprocess.run([gcc, "-std=c99", "-O2", "-Wall", "-Werror", "-shared", "-fPIC",
                            "-o", str(so), str(src)], check=True)
            got, secs = host_run(so, k.name, x, consts, packed_bytes(spec.out_shape,
                                                                      spec.out_bits),
                                 scratch_bytes=k.scratch_bytes)
            good = got == want
            text = stack = "-"
            if arm:
                obj = tmp / f"{k.name}.o"
                subprocess.run(ARM + [str(src), "-o", str(obj)], check=True)
                size = subprocess.run(["arm-none-eabi-size", str(obj)], capture_output=True,
                                      text=True, check=True).stdout.splitlines()[1].split()
                text = size[0]
                stack = obj.with_suffix(".su").read_text().split()[-2]
            insn = "-"
            if args.qemu:
                n, qok = qemu_count(tmp, k, x, consts, want)
                insn = f"{n / macs:.2f}" + ("" if qok else " WRONG")
                good = good and qok
            ok = ok and good
            print(f"| {lid} | {'/'.join(map(str, bits))} | {k.name} | {gen_s:.2f} | "
                  f"{k.c_source.count(chr(10))} | {'ok' if good else 'WRONG'} | "
                  f"{secs * 1e9 / macs:.2f} | {text} | {stack} | {insn} |", flush=True)
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
