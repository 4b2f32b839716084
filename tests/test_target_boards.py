"""Board registry and the console protocol parser (no tools needed)."""

import pytest

from tvm_mpq.errors import MpqError, TargetError
from tvm_mpq.target import BOARDS, PROJECT_DIR, get_board
from tvm_mpq.target.console import RunResult, check_run, parse_console
from tvm_mpq.target.errors import FirmwareFaultError, FirmwareRunError


def test_registry_matches_board_directories():
    on_disk = {p.parent.name for p in (PROJECT_DIR / "boards").glob("*/board.cmake")}
    assert set(BOARDS) == on_disk == {"host", "qemu_m7", "nucleo_h743zi"}


def test_board_properties():
    assert get_board("qemu_m7").can_run and get_board("host").can_run
    assert not get_board("nucleo_h743zi").can_run
    for name in ("qemu_m7", "nucleo_h743zi"):
        b = get_board(name)
        assert b.chip == "STM32H743" and b.toolchain == "arm-none-eabi"
        assert (b.flash_bytes, b.ram_bytes) == (2048 * 1024, 512 * 1024)


def test_unknown_board_is_a_user_error():
    with pytest.raises(TargetError, match="unknown board 'stm32f4'") as e:
        get_board("stm32f4")
    assert isinstance(e.value, MpqError) and "qemu_m7" in e.value.one_line()


CONSOLE = """\
MPQ_START board=qemu_m7 counter=cmsdk_ticks input_bytes=64 output_bytes=64
hello from the model
MPQ_PROFILE 0 conv 1 12
MPQ_PROFILE 1 fc 7
MPQ_TOTAL 20
MPQ_OUTPUT 0102
MPQ_OUTPUT ff
MPQ_DONE status=0
"""


def test_parse_console():
    con = parse_console(CONSOLE)
    assert con.start["counter"] == "cmsdk_ticks"
    assert [(r.layer, r.name, r.counter) for r in con.profile] == [(0, "conv 1", 12), (1, "fc", 7)]
    assert (con.total, con.status, con.output_hex, con.fault) == (20, 0, "0102ff", None)


def _result(text, exit_code=0):
    con = parse_console(text)
    return RunResult(b"", text, exit_code, con.status), con


def test_check_run_accepts_success_and_names_failures():
    check_run(*_result(CONSOLE), "test")
    with pytest.raises(FirmwareRunError, match="mpq_model_run returned 3"):
        check_run(*_result("MPQ_DONE status=3\n", 100), "test")
    with pytest.raises(FirmwareRunError, match="reported: cannot open input file"):
        check_run(*_result("MPQ_ERROR cannot open input file input.bin\n", 101), "test")
    with pytest.raises(FirmwareRunError, match="before MPQ_DONE; last line: boom"):
        check_run(*_result("boom\n", 1), "test")


def test_fault_description_decodes_cfsr():
    line = ("MPQ_FAULT HardFault pc=0x000000ca lr=0x0000010b cfsr=0x02000000 hfsr=0x40000000 "
            "mmfar=0x00000000 bfar=0x00000000\n")
    with pytest.raises(FirmwareFaultError) as e:
        check_run(*_result(line, 102), "test", lambda pc: "kernel+0x2")
    assert e.value.fault == "HardFault" and e.value.pc == 0xCA
    assert "HardFault at pc=0x000000ca (kernel+0x2)" in str(e.value)
    assert "division by zero" in str(e.value)
