"""`tvm-mpq compile` / `run` end to end: float model + budget -> plan, calibration,
integer graph, C, firmware; the emulated Cortex-M7 output equals the host build's byte for
byte and the golden model's; a Fashion-MNIST model's accuracy on the emulator equals the
host accuracy exactly; the big ImageNet-size configurations fit (or fail clearly)."""

from pathlib import Path

import numpy as np
import pytest

from conftest import assert_user_error, run_cli
from tvm_mpq.codegen.project import read_metadata
from tvm_mpq.evaluate import fashion_mnist_inputs, run_batch
from tvm_mpq.frontend.loader import load_onnx_file
from tvm_mpq.passes.pipeline import convert
from tvm_mpq.reference.interpret import run_reference
from tvm_mpq.target import build_firmware, memory_report

N_IMAGES = 100


@pytest.fixture(scope="module")
def fmnist_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("fm") / "build"
    p = run_cli("compile", "mobilenet_v1_0.25_32", "--flash", "120kB", "--ram", "10kB",
                "--calib", "fashion-mnist", "--num-samples", "128", "--board", "qemu_m7",
                "-o", out)
    assert p.returncode == 0, p.stderr
    assert "FLASH" in p.stdout and "RAM" in p.stdout
    return out


def test_project_is_self_contained(fmnist_build):
    for f in ("CMakeLists.txt", "codegen/model.h", "codegen/model.c", "metadata.json",
              "plan.json", "model.qdq.onnx", "boards/qemu_m7", "runtime/mpq_main.c"):
        assert (fmnist_build / f).exists(), f
    meta = read_metadata(fmnist_build)
    assert meta["memory"]["arena_bytes"] <= 10_000
    assert {layer["kind"] for layer in meta["layers"]} >= {"conv", "depthwise", "pointwise",
                                                            "avg_pool", "linear"}
    assert "MPQ_ARENA_BYTES" in (fmnist_build / "codegen/model.h").read_text()


def test_qemu_equals_host_equals_golden_on_fashion_mnist(fmnist_build):
    meta = read_metadata(fmnist_build)
    x, labels = fashion_mnist_inputs(meta, N_IMAGES)
    q = run_batch(fmnist_build, "qemu_m7", x)
    h = run_batch(fmnist_build, "host", x)
    np.testing.assert_array_equal(q.outputs, h.outputs)
    im = convert(load_onnx_file(str(fmnist_build / "model.qdq.onnx")))
    for i in range(0, N_IMAGES, 25):
        ref = run_reference(im.mod, x[i:i + 1])
        np.testing.assert_array_equal(q.outputs[i].ravel(), ref.ravel())
    acc_q = float(np.mean(q.outputs.reshape(N_IMAGES, -1).argmax(1) == labels))
    acc_h = float(np.mean(h.outputs.reshape(N_IMAGES, -1).argmax(1) == labels))
    assert acc_q == acc_h


def test_run_cli_profile_and_checks(fmnist_build):
    p = run_cli("run", fmnist_build, "--input", "random", "--profile", "--check-host",
                "--reference")
    assert p.returncode == 0, p.stderr
    assert "byte-identical" in p.stdout and "bit-identical" in p.stdout
    assert "instructions/MAC" in p.stdout and "block13.pw" in p.stdout


def test_same_model_same_bytes(fmnist_build, tmp_path):
    p = run_cli("compile", fmnist_build / "model.qdq.onnx", "--board", "qemu_m7", "-o",
                tmp_path / "again", "--no-build")
    assert p.returncode == 0, p.stderr
    for f in sorted((fmnist_build / "codegen").iterdir()):
        assert f.read_bytes() == (tmp_path / "again/codegen" / f.name).read_bytes(), f.name


def test_nucleo_firmware_builds(fmnist_build, tmp_path):
    exe = build_firmware(fmnist_build, "nucleo_h743zi", tmp_path / "nucleo")
    mem = memory_report(exe)
    assert 0 < mem["flash_bytes"] < 2 * 1024 * 1024 and 0 < mem["ram_bytes"] < 512 * 1024


def test_run_errors(fmnist_build, tmp_path):
    assert_user_error(run_cli("run", tmp_path / "missing_dir"), "not found")
    bad = tmp_path / "x.npy"
    np.save(bad, np.zeros((2, 2), np.float32))
    assert_user_error(run_cli("run", fmnist_build, "--input", bad), "shape")
    assert_user_error(run_cli("run", fmnist_build, "--board", "nucleo_h743zi"), "cannot run")


@pytest.mark.slow
@pytest.mark.parametrize("model,args", [
    ("mobilenet_v1_0.75_224", ["--flash", "2048000", "--ram", "512000", "--scheme", "mixpc"]),
    ("mobilenet_v1_0.5_192", ["--device", "stm32h743"]),
])
def test_imagenet_size_models_fit_and_match_host(model, args, tmp_path):
    out = tmp_path / "b"
    p = run_cli("compile", model, *args, "--num-samples", "16", "-o", out, timeout=1500)
    assert p.returncode == 0, p.stderr
    meta = read_metadata(out)
    if model.endswith("0.5_192"):
        assert all(layer["in_bits"] == layer["out_bits"] == 8 for layer in meta["layers"])
    else:
        assert any(layer.get("w_bits") == 4 for layer in meta["layers"])
    exe = Path(out) / "build/qemu_m7/mpq_firmware.elf"
    mem = memory_report(exe)
    assert mem["flash_bytes"] <= 2 * 1024 * 1024 and mem["ram_bytes"] <= 512 * 1024
    r = run_cli("run", out, "--input", "random", "--check-host")
    assert r.returncode == 0 and "byte-identical" in r.stdout, r.stdout + r.stderr
