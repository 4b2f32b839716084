"""Firmware builds through CMake (host, qemu_m7, nucleo_h743zi) and their failure modes."""

import shutil
from pathlib import Path

import pytest

from tvm_mpq.target import build_firmware, memory_report
from tvm_mpq.target.errors import FirmwareBuildError, ImageTooLargeError

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "tiny_model"
H743_FLASH, H743_RAM = 2048 * 1024, 512 * 1024


def test_qemu_m7_build_and_memory_report(tmp_path):
    elf = build_firmware(None, "qemu_m7", tmp_path, profile=True, codegen_dir=TINY)
    assert elf.name == "mpq_firmware.elf" and elf.read_bytes()[:4] == b"\x7fELF"
    mem = memory_report(elf)
    assert mem["flash_bytes"] == mem["text"] + mem["data"]
    assert mem["ram_bytes"] == mem["data"] + mem["bss"] + mem["reserved_bytes"]
    assert 1_000 < mem["text"] < 100_000          # runtime + newlib stdio + semihosting
    assert mem["bss"] >= 64 + 64 + 64             # arena + input + output buffers
    assert mem["reserved_bytes"] == 16384 + 16384  # default heap + stack
    assert (tmp_path / "mpq_build.log").is_file() and (tmp_path / "mpq_firmware.map").is_file()


def test_nucleo_h743zi_builds_with_sane_sizes(tmp_path):
    elf = build_firmware(None, "nucleo_h743zi", tmp_path, profile=True, codegen_dir=TINY)
    mem = memory_report(elf)
    assert 1_000 < mem["flash_bytes"] < 64 * 1024 and mem["ram_bytes"] < H743_RAM
    symbols = (tmp_path / "mpq_firmware.map").read_text()
    for needed in ("Reset_Handler", "mpq_system_clock_init", "mpq_fault_handler", "_write"):
        assert needed in symbols


def test_host_build_is_a_native_program(tmp_path):
    exe = build_firmware(None, "host", tmp_path, codegen_dir=TINY)
    assert exe.name == "mpq_firmware" and exe.stat().st_mode & 0o111
    assert memory_report(exe)["text"] > 0


def test_rebuild_in_same_dir_for_another_board(tmp_path):
    build_firmware(None, "host", tmp_path, codegen_dir=TINY)
    elf = build_firmware(None, "qemu_m7", tmp_path, codegen_dir=TINY)
    assert elf.suffix == ".elf"


def test_image_larger_than_flash_is_refused(tmp_path):
    with pytest.raises(ImageTooLargeError) as e:
        build_firmware(None, "qemu_m7", tmp_path, codegen_dir=FIXTURES / "target_too_big")
    err = e.value
    excess = err.overflow_bytes["FLASH"]
    assert 3 * 1024 * 1024 - H743_FLASH < excess < 3 * 1024 * 1024 - H743_FLASH + 100_000
    line = err.one_line()
    assert f"does not fit the STM32H743's FLASH (2048 kB) by {excess} bytes" in line
    assert str(tmp_path / "mpq_build.log") in line and "\n" not in line


def test_ram_overflow_names_ram(tmp_path):
    with pytest.raises(ImageTooLargeError, match=r"STM32H743's RAM \(512 kB\) by \d+ bytes"):
        build_firmware(None, "qemu_m7", tmp_path, codegen_dir=TINY, stack_bytes=600 * 1024)


def test_compile_error_names_step_and_log(tmp_path):
    codegen = tmp_path / "codegen"
    shutil.copytree(TINY, codegen)
    with open(codegen / "model.c", "a") as f:
        f.write("\nint broken(void) { return undeclared_thing; }\n")
    with pytest.raises(FirmwareBuildError) as e:
        build_firmware(None, "qemu_m7", tmp_path / "build", codegen_dir=codegen)
    line = e.value.one_line()
    assert "firmware build for board qemu_m7 failed" in line and "undeclared_thing" in line
    assert "full log:" in line and Path(e.value.log_path).is_file()


def test_missing_codegen_dir_fails_at_configure(tmp_path):
    with pytest.raises(FirmwareBuildError, match="firmware configure for board host failed"):
        build_firmware(None, "host", tmp_path / "build", codegen_dir=tmp_path / "nowhere")
