"""The README's main job: `tvm-mpq demo` on the shipped checkpoints (few images)."""

import json

import pytest

from conftest import run_cli


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    p = run_cli("demo", "--images", "50", "-o", tmp_path / "demo", timeout=1200)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "[7/7]" in p.stdout and "emulated Cortex-M7" in p.stdout
    s = json.loads((tmp_path / "demo/demo_summary.json").read_text())
    assert s["emulator_equals_host"] is True
    assert s["eight_bit_fits"] is False
    assert s["model_flash_bytes"] <= s["budget"]["flash_bytes"]
    assert s["arena_bytes"] <= s["budget"]["ram_bytes"]
    acc = s["accuracy"]
    assert acc["integer, emulated Cortex-M7, first 50"] == acc[
        "integer, host build of the firmware C, first 50"]
    assert acc["float (onnxruntime)"] > 0.75          # a trained model, not noise
    assert acc["integer, host build of the firmware C"] > 0.70
