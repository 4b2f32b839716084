"""One firmware image of many kernels, for QEMU == host == golden tests: `mpq_model_run`
calls each kernel on constant packed inputs and writes its packed output at its own offset
of the output buffer; the same sources are built for the emulated Cortex-M7 and the host,
and one run of each checks every kernel against its golden output."""

from __future__ import annotations

import numpy as np

from tvm_mpq.codegen.aot import c_array
from tvm_mpq.codegen.kernels import generate_kernel
from tvm_mpq.reference.packing import packed_bytes, unpack
from tvm_mpq.target import build_firmware, run_host, run_qemu


def build_image(cases, root):
    """`cases`: (spec, packed x, packed params {name: (ctype, bytes)}, golden y, packed
    second input or None). Returns (qemu exe, host exe, expected [(offset, bytes, spec, y)])."""
    d = root / "codegen"
    d.mkdir(parents=True)
    kernels, arrays, calls, expect, offset = {}, [], [], [], 0
    for j, (spec, xb, params, y, bb) in enumerate(cases):
        k = generate_kernel(spec)
        kernels[k.name] = k
        arrays.append(c_array("uint8_t", f"x{j}", xb))
        args = [f"x{j}"]
        if bb is not None:
            arrays.append(c_array("uint8_t", f"b{j}", bb))
            args.append(f"b{j}")
        for pname, (ctype, data) in params.items():
            arrays.append(c_array(ctype, f"p{j}_{pname}", data))
            args.append(f"p{j}_{pname}")
        args.append(f"output + {offset}")
        if k.scratch_bytes:                      # the fast kernels' im2col columns
            arrays.append(f"static uint8_t s{j}[{k.scratch_bytes}] __attribute__((aligned(8)));")
            args.append(f"s{j}")
        calls.append(f"    if ({k.name}({', '.join(args)}) != 0) return {j + 1};")
        nbytes = packed_bytes(spec.out_shape, spec.out_bits)
        expect.append((offset, nbytes, spec, y))
        offset += nbytes
    for k in kernels.values():
        (d / f"{k.name}.c").write_text(k.c_source)
    (d / "model.h").write_text(
        "#include <stdint.h>\n#define MPQ_INPUT_BYTES 1\n"
        f"#define MPQ_OUTPUT_BYTES {offset}\n#define MPQ_ARENA_BYTES 0\n"
        "#define MPQ_NUM_LAYERS 1\nextern const char *const mpq_layer_names[1];\n"
        "int mpq_model_run(const uint8_t *input, uint8_t *output);\n"
        "#ifdef MPQ_PROFILE\nvoid mpq_profile_begin(int);\nvoid mpq_profile_end(int);\n#endif\n")
    protos = "\n".join(k.prototype for k in kernels.values())
    (d / "model.c").write_text(
        "#include \"model.h\"\n" + protos + "\n" + "\n".join(arrays) +
        "\nconst char *const mpq_layer_names[1] = {\"all_kernels\"};\n"
        "int mpq_model_run(const uint8_t *input, uint8_t *output) {\n    (void)input;\n"
        + "\n".join(calls) + "\n    return 0;\n}\n")
    qemu = build_firmware(None, "qemu_m7", root / "qemu", codegen_dir=d)
    host = build_firmware(None, "host", root / "host", codegen_dir=d)
    return qemu, host, expect


def check_image(qemu, host, expect) -> None:
    """QEMU's output == the host build's, and every kernel's slice == its golden output."""
    q = run_qemu(qemu, b"\0", timeout_s=120).output_bytes
    assert q == run_host(host, b"\0").output_bytes
    data = np.frombuffer(q, np.uint8)
    for offset, nbytes, spec, y in expect:
        row = spec.out_shape[-1]
        got = unpack(data[offset:offset + nbytes].reshape(-1, packed_bytes((row,), spec.out_bits)),
                     spec.out_bits, row, signed=spec.out_signed)
        np.testing.assert_array_equal(got.reshape(y.shape), y, err_msg=spec.name)
