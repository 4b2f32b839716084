"""The TinyML reference networks (tests/reference_nets.py: ResNet-8, DS-CNN, MobileNetV1-0.25
at 96x96, the dense autoencoder, MobileNetV2-0.35 at 96x96, the tutorial CNN), each as
torch.onnx.export writes it with a dynamic batch: `tvm-mpq compile MODEL --device stm32h743
--calib synthetic --board qemu_m7`, then the emulated Cortex-M7 == host build == golden."""

import pytest

from conftest import run_cli
from reference_nets import NETS, export

pytest.importorskip("torch")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NETS))
def test_reference_net_on_qemu_equals_host_and_golden(name, tmp_path):
    path = export(name, tmp_path / f"{name}.onnx")
    out = tmp_path / "build"
    p = run_cli("compile", path, "--device", "stm32h743", "--calib", "synthetic", "--board",
                "qemu_m7", "-o", out, timeout=1200)
    assert p.returncode == 0, p.stderr
    assert sum("dynamic batch" in ln for ln in p.stderr.splitlines()) == 1
    r = run_cli("run", out, "--input", "random", "--check-host", "--reference", timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "host build: byte-identical output" in r.stdout
    assert "golden model: bit-identical" in r.stdout
