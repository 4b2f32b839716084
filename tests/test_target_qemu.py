"""Running firmware: QEMU (qemu_m7) and host builds agree with numpy and with each other;
exact instruction counts; faults, hangs and a missing QEMU give clear errors."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from tvm_mpq.target import build_firmware, run_host, run_qemu
from tvm_mpq.target.errors import (
    FirmwareFaultError,
    FirmwareRunError,
    FirmwareTimeoutError,
    ToolMissingError,
)
from tvm_mpq.target.qemu import INSTRUCTIONS_PER_TICK

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    """name -> built image, built once per module."""
    root = tmp_path_factory.mktemp("fw")
    built = {}

    def get(fixture, board="qemu_m7", profile=True):
        key = (fixture, board, profile)
        if key not in built:
            built[key] = build_firmware(None, board, root / "-".join(map(str, key)),
                                        profile=profile, codegen_dir=FIXTURES / fixture)
        return built[key]
    return get


def tiny_input(seed=0):
    return np.random.default_rng(seed).integers(0, 256, 64, dtype=np.uint8)


def tiny_expected(x):
    return (x.astype(np.uint32) * 3 + 1).astype(np.uint8).tobytes()


def test_tiny_model_qemu_and_host_match_numpy(firmware):
    x = tiny_input()
    q = run_qemu(firmware("tiny_model"), x.tobytes())
    h = run_host(firmware("tiny_model", "host"), x.tobytes())
    assert q.output_bytes == tiny_expected(x)
    assert h.output_bytes == q.output_bytes          # byte for byte
    assert q.status == h.status == 0 and q.exit_code == 0
    assert [(r.layer, r.name) for r in q.profile] == [(0, "times3"), (1, "plus1")]
    assert q.counter_unit == "cmsdk_ticks" and h.counter_unit == "none"
    assert all(r.counter == 0 for r in h.profile)
    assert q.wall_s < 5


def test_without_profile_no_profile_lines(firmware):
    x = tiny_input(1)
    q = run_qemu(firmware("tiny_model", profile=False), x.tobytes())
    assert q.output_bytes == tiny_expected(x) and q.profile == []
    assert "MPQ_DONE status=0" in q.stdout


def test_wrong_input_size_is_reported(firmware):
    with pytest.raises(Exception, match="must hold exactly 64 bytes"):
        run_qemu(firmware("tiny_model"), b"\0" * 10)


def test_instruction_counts_are_exact_and_repeatable(firmware):
    elf, x = firmware("tiny_model"), tiny_input(2).tobytes()
    a = run_qemu(elf, x, count_instructions=True, ranges=["times3", "plus1"])
    b = run_qemu(elf, x, count_instructions=True, ranges=["times3", "plus1"])
    assert a.instructions_total == b.instructions_total > 1000
    assert a.instructions_by_range == b.instructions_by_range
    assert a.instructions_by_range["times3"] > 64          # at least one per element
    assert [r.instructions for r in a.profile] == [r.instructions for r in b.profile]
    for row, kernel in zip(a.profile, ("times3", "plus1")):
        assert a.instructions_by_range[kernel] < row.instructions < a.instructions_by_range[
            kernel] + 40                                     # + the profiling hooks


def test_instruction_count_scales_with_work(firmware):
    elf = firmware("target_loop")
    runs = [run_qemu(elf, bytes([n & 255, n >> 8, 0, 0]), ranges=["mpq_loop_kernel"])
            for n in (1000, 2000, 3000)]
    k0, k1, k2 = (r.instructions_by_range["mpq_loop_kernel"] for r in runs)
    assert k2 - k1 == k1 - k0 >= 1000                       # linear in the iteration count
    assert runs[0].instructions_total < runs[1].instructions_total < runs[2].instructions_total
    # The firmware's own counter (CMSDK timer under -icount shift=0): 1 tick = 40 instructions.
    row = runs[2].profile[0]
    assert abs(row.counter * INSTRUCTIONS_PER_TICK - row.instructions) <= INSTRUCTIONS_PER_TICK


def test_invalid_address_reports_hardfault(firmware):
    with pytest.raises(FirmwareFaultError) as e:
        run_qemu(firmware("target_fault"), bytes(4))
    err = e.value
    assert err.fault == "HardFault" and err.pc is not None
    line = err.one_line()
    assert f"HardFault at pc=0x{err.pc:08x} (mpq_model_run+0x" in line
    assert "bus error" in line and "0xf0000000" in line


def test_endless_loop_times_out(firmware):
    with pytest.raises(FirmwareTimeoutError, match="did not finish within 0.5 s"):
        run_qemu(firmware("target_hang"), bytes(4), timeout_s=0.5)


def test_nonzero_model_status_is_an_error(tmp_path):
    codegen = tmp_path / "codegen"
    shutil.copytree(FIXTURES / "tiny_model", codegen)
    model_c = codegen / "model.c"
    model_c.write_text(model_c.read_text().replace("    return 0;\n}", "    return 7;\n}"))
    elf = build_firmware(None, "qemu_m7", tmp_path / "build", codegen_dir=codegen)
    with pytest.raises(FirmwareRunError, match="mpq_model_run returned 7 on QEMU"):
        run_qemu(elf, bytes(64))
    res = run_qemu(elf, bytes(64), check=False)
    assert (res.status, res.exit_code, res.output_bytes) == (7, 100, b"")


def test_check_false_returns_the_failed_run(firmware):
    res = run_qemu(firmware("target_fault"), bytes(4), check=False)
    assert res.exit_code == 102 and res.status is None and "MPQ_FAULT HardFault" in res.stdout


def test_missing_qemu_names_the_package(firmware, monkeypatch, tmp_path):
    elf = firmware("tiny_model")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError) as e:
        run_qemu(elf, bytes(64))
    assert "qemu-system-arm not found" in e.value.one_line()
    assert "apt-get install qemu-system-arm" in e.value.one_line()


def test_plugin_is_compiled_on_demand_into_the_cache(firmware, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    res = run_qemu(firmware("tiny_model"), tiny_input(3).tobytes(), count_instructions=True)
    assert res.instructions_total > 1000
    assert len(list((tmp_path / "tvm-mpq" / "qemu-plugins").glob("insn_count_plugin-*.so"))) == 1
