"""`tvm-mpq run` with bad runtime input, through the CLI: wrong input shape or dtype, a
missing build directory, a bad --timeout, QEMU missing from PATH, a firmware that hangs or
faults. Each is one line on stderr and exit 2. (The library side: test_target_qemu.py.)"""

import os
import shutil

import numpy as np
import pytest

from conftest import assert_user_error, run_cli

MODEL = "mobilenet_v1_0.25_28"
SHAPE = (1, 1, 28, 28)


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "fm"
    p = run_cli("-q", "compile", MODEL, "--flash", "2MB", "--ram", "512kB", "--num-samples",
                4, "--board", "qemu_m7", "-o", out)
    assert p.returncode == 0, p.stderr
    return out


def _npy(path, arr):
    np.save(path, arr, allow_pickle=arr.dtype == object)
    return path


BAD_INPUTS = {
    "shape": (np.zeros((1, 3, 28, 28), np.float32), ["shape (1, 3, 28, 28)", "(1, 1, 28, 28)"]),
    "batch": (np.zeros((2, 1, 28, 28), np.float32), ["shape (2, 1, 28, 28)"]),
    "dtype_int64": (np.zeros(SHAPE, np.int64), ["dtype int64"]),
    "dtype_int8": (np.zeros(SHAPE, np.int8), ["dtype int8", "uint8"]),
    "dtype_complex": (np.zeros(SHAPE, np.complex64), ["dtype complex64"]),
    "nan": (np.full(SHAPE, np.nan, np.float32), ["NaN"]),
    "objects": (np.array([{"a": 1}], dtype=object), ["not a .npy array"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_array(build, tmp_path, case):
    arr, needles = BAD_INPUTS[case]
    x = _npy(tmp_path / "x.npy", arr)
    assert_user_error(run_cli("run", build, "--input", x, "--output", tmp_path / "y.npy"),
                      "x.npy", *needles)
    assert not (tmp_path / "y.npy").exists()


def test_bad_input_files(build, tmp_path):
    (tmp_path / "garbage.npy").write_text("not numpy")
    assert_user_error(run_cli("run", build, "--input", tmp_path / "garbage.npy"),
                      "garbage.npy", "not a .npy array")
    assert_user_error(run_cli("run", build, "--input", tmp_path / "none.npy"),
                      "none.npy", "not found")


def test_bad_input_for_an_onnx_model(build, tmp_path):
    x = _npy(tmp_path / "x.npy", np.zeros((1, 1, 32, 32), np.float32))
    assert_user_error(run_cli("run", build / "model.qdq.onnx", "--input", x), "x.npy",
                      "(1, 1, 28, 28)")


def test_good_inputs_run(build, tmp_path):
    """The same checks accept float NCHW, quantized uint8 and an image without the batch."""
    xf = _npy(tmp_path / "f.npy", np.zeros(SHAPE, np.float32))
    xq = _npy(tmp_path / "q.npy", np.full(SHAPE[1:], 128, np.uint8))
    for x in (xf, xq):
        p = run_cli("run", build, "--board", "host", "--input", x, "--output", tmp_path / "y.npy")
        assert p.returncode == 0, p.stderr
        assert np.load(tmp_path / "y.npy").shape == (1, 10)


def test_missing_or_foreign_build_directory(tmp_path):
    assert_user_error(run_cli("run", tmp_path / "nope"), "nope", "not found")
    assert_user_error(run_cli("run", tmp_path), "not a tvm-mpq build", "metadata.json")
    (tmp_path / "notes.txt").write_text("x")
    assert_user_error(run_cli("run", tmp_path / "notes.txt"), "notes.txt")


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf"])
def test_bad_timeout(build, timeout):
    # nan and inf were a ValueError / OverflowError traceback
    assert_user_error(run_cli("run", build, "--timeout", timeout), "--timeout")


def test_qemu_missing(build, tmp_path):
    """PATH holds every program but qemu-system-arm (so CMake still rebuilds)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for d in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            if name.startswith("qemu-system-arm") or (bindir / name).exists():
                continue
            (bindir / name).symlink_to(os.path.join(d, name))
    p = run_cli("run", build, "--input", "random", env={"PATH": str(bindir)})
    assert_user_error(p, "qemu-system-arm not found", "apt-get install qemu-system-arm")


def _patched(build, tmp_path, code):
    """A copy of the build whose mpq_model_run starts with `code`."""
    out = tmp_path / "fm"
    shutil.copytree(build, out, ignore=shutil.ignore_patterns("build"))
    model_c = out / "codegen" / "model.c"
    head = "int mpq_model_run(const uint8_t *input, uint8_t *output) {"
    text = model_c.read_text()
    assert head in text
    model_c.write_text(text.replace(head, head + "\n    " + code))
    return out


def test_firmware_hang_times_out(build, tmp_path):
    out = _patched(build, tmp_path, 'for (;;) { __asm__ volatile(""); }')
    assert_user_error(run_cli("run", out, "--timeout", 3), "did not finish within 3 s",
                      "QEMU")


def test_firmware_fault_is_a_hardfault(build, tmp_path):
    out = _patched(build, tmp_path, "output[0] = *(volatile const uint8_t *)0xF0000000u;")
    assert_user_error(run_cli("run", out), "faulted", "HardFault at pc=0x",
                      "mpq_model_run+0x", "0xf0000000")
