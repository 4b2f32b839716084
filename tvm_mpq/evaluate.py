"""Run a compiled build on many inputs in one firmware run (a batch), and measure accuracy.

The firmware reads a batch file (inputs back to back) and writes the outputs back to back
(microtvm_project/runtime/mpq_file_io.h), so a data set costs one QEMU start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MpqError
from .reference.packing import pack, packed_bytes, unpack


@dataclass
class BatchResult:
    outputs: np.ndarray            # integer outputs, (N,) + output shape
    instructions_total: int | None
    wall_s: float


def quantize_images(meta: dict, x_float_nchw: np.ndarray) -> np.ndarray:
    """Float model inputs (N, C, H, W), or (N, K) feature vectors -> the build's integer
    inputs (NHWC images)."""
    inp = meta["input"]
    dtype = "int8" if inp["signed"] else "uint8"
    info = np.iinfo(dtype)
    q = np.rint(np.asarray(x_float_nchw, np.float64) / inp["scale"]) + inp["zero_point"]
    q = np.clip(q, info.min, info.max).astype(dtype)
    return np.transpose(q, (0, 2, 3, 1)) if q.ndim == 4 else q


def float_input_shape(meta: dict) -> tuple[int, ...]:
    """The model's float input shape: NCHW for images, (1, K) for feature vectors."""
    s = tuple(meta["input"]["shape_nhwc"])
    return (s[0], s[3], s[1], s[2]) if len(s) == 4 else s


def pack_inputs(meta: dict, x_nhwc: np.ndarray) -> bytes:
    c = meta["input"]["shape_nhwc"][-1]
    return pack(x_nhwc.reshape(-1, c), meta["input"]["bits"]).tobytes()


def unpack_outputs(meta: dict, data: bytes, n: int) -> np.ndarray:
    outp = meta["output"]
    if len(data) != n * outp["bytes"]:
        raise MpqError(f"firmware wrote {len(data)} output bytes, expected {n} x {outp['bytes']}")
    row = outp["shape"][-1]
    arr = np.frombuffer(data, np.uint8).reshape(-1, packed_bytes((row,), outp["bits"]))
    return unpack(arr, outp["bits"], row, signed=outp["signed"]).reshape(
        (n,) + tuple(outp["shape"]))


def run_batch(outdir: str | Path, board: str, x_nhwc: np.ndarray, *, timeout_s: float = 600,
              count_instructions: bool = False) -> BatchResult:
    """Run the build on every input of x_nhwc (N, H, W, C); one firmware run."""
    from .codegen.project import read_metadata
    from .target import build_firmware, run_host, run_qemu

    outdir = Path(outdir)
    meta = read_metadata(outdir)
    data = pack_inputs(meta, x_nhwc)
    exe = build_firmware(outdir, board, outdir / "build" / board)
    if board == "host":
        res = run_host(exe, data, timeout_s=timeout_s)
    else:
        res = run_qemu(exe, data, timeout_s=timeout_s, count_instructions=count_instructions)
    ys = unpack_outputs(meta, res.output_bytes, len(x_nhwc))
    return BatchResult(ys, getattr(res, "instructions_total", None), res.wall_s)


def fashion_mnist_inputs(meta: dict, limit: int | None = None, split: str = "test"):
    """Fashion-MNIST images as the build's integer inputs, and their labels."""
    from .data.fashion_mnist import load_fashion_mnist, to_model_input

    shape = meta["input"]["shape_nhwc"]
    n, h, w, c = shape if len(shape) == 4 else (1, 0, 0, 0)
    if meta["output"]["elements"] != 10 or h != w or h not in (28, 32):
        raise MpqError(f"model '{meta['model']}' does not take Fashion-MNIST images "
                       f"({h}x{w}x{c} -> {meta['output']['elements']} classes)")
    images, labels = load_fashion_mnist(split)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return quantize_images(meta, to_model_input(images, h, c)), labels


def profile_layers(outdir: str | Path, x_nhwc: np.ndarray, *, timeout_s: float = 600) -> dict:
    """Exact executed instructions per layer for one input on QEMU (a profiling build);
    written to OUTDIR/profile.json for `tvm-mpq report`."""
    from .codegen.project import read_metadata
    from .fsutil import write_json_atomic
    from .target import build_firmware, run_qemu

    outdir = Path(outdir)
    meta = read_metadata(outdir)
    exe = build_firmware(outdir, "qemu_m7", outdir / "build" / "qemu_m7-profile", profile=True)
    res = run_qemu(exe, pack_inputs(meta, x_nhwc[:1]), timeout_s=timeout_s,
                   count_instructions=True)
    rows = [{"index": r.layer, "name": r.name,
             "instructions": int(r.instructions if r.instructions is not None
                                 else r.counter * 40)} for r in res.profile]
    prof = {"unit": "instructions", "total_instructions": int(sum(r["instructions"]
                                                                  for r in rows)),
            "layers": rows}
    write_json_atomic(outdir / "profile.json", prof)
    return prof
