"""Build firmware from `microtvm_project/` with CMake, and measure the image.

`build_firmware` runs `cmake` configure and build with all output captured to
`<build_dir>/mpq_build.log`; a failure becomes one clear error line naming the step, the
first compiler/linker error and the log. A linker region overflow becomes an
`ImageTooLargeError` saying by how many bytes the image does not fit the chip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from .boards import Board, get_board
from .errors import FirmwareBuildError, ImageTooLargeError, ToolMissingError

PROJECT_DIR = Path(__file__).resolve().parents[2] / "microtvm_project"
LOG_NAME = "mpq_build.log"

# tool -> Debian package providing it
_APT = {"cmake": "cmake", "make": "make", "cc": "gcc", "arm-none-eabi-gcc": "gcc-arm-none-eabi",
        "arm-none-eabi-size": "binutils-arm-none-eabi", "size": "binutils"}
_OVERFLOW = re.compile(r"region [`'](\w+)' overflowed by (\d+) bytes")
_ERROR_LINE = re.compile(r"(^|[\s:])(fatal )?error:|undefined reference|will not fit|"
                         r"^CMake Error|No rule to make")


def require_tool(tool: str) -> str:
    """Path of `tool`, or a ToolMissingError naming the Debian package to install."""
    path = shutil.which(tool)
    if path is None:
        raise ToolMissingError(tool, _APT.get(tool, tool))
    return path


def firmware_path(board: str | Board, build_dir: str | os.PathLike) -> Path:
    board = get_board(board) if isinstance(board, str) else board
    suffix = "" if board.toolchain == "host-cc" else ".elf"
    return Path(build_dir) / f"mpq_firmware{suffix}"


def build_firmware(project_dir: str | os.PathLike | None, board: str,
                   build_dir: str | os.PathLike, profile: bool = False, *,
                   codegen_dir: str | os.PathLike | None = None,
                   stack_bytes: int | None = None, heap_bytes: int | None = None,
                   timeout_s: float = 600) -> Path:
    """Configure and build the firmware; returns the ELF (ARM boards) or host executable.

    project_dir: the CMake template (None: this checkout's microtvm_project/).
    codegen_dir: directory with model.h and the generated .c files (None: project's codegen/).
    profile: define MPQ_PROFILE, so the model reports per-layer counters.
    """
    board_def = get_board(board)
    project = Path(project_dir or PROJECT_DIR).resolve()
    build = Path(build_dir).resolve()
    for tool in ["cmake", "make"] + (["arm-none-eabi-gcc"] if board_def.toolchain
                                     == "arm-none-eabi" else ["cc"]):
        require_tool(tool)
    build.mkdir(parents=True, exist_ok=True)
    _drop_stale_cache(build, project, board)
    log_path = build / LOG_NAME
    log_path.write_text("")

    configure = ["cmake", "-S", str(project), "-B", str(build), "-G", "Unix Makefiles",
                 f"-DMPQ_BOARD={board}", f"-DMPQ_PROFILE={'ON' if profile else 'OFF'}"]
    if codegen_dir is not None:
        configure.append(f"-DMPQ_CODEGEN_DIR={Path(codegen_dir).resolve()}")
    if stack_bytes is not None:
        configure.append(f"-DMPQ_STACK_BYTES={int(stack_bytes)}")
    if heap_bytes is not None:
        configure.append(f"-DMPQ_HEAP_BYTES={int(heap_bytes)}")
    compile_ = ["cmake", "--build", str(build), "--", f"-j{os.cpu_count() or 2}"]
    for step, cmd in (("configure", configure), ("build", compile_)):
        _run_step(step, cmd, log_path, board_def, timeout_s)
    exe = firmware_path(board_def, build)
    if not exe.is_file():
        raise FirmwareBuildError(f"firmware build for board {board} produced no {exe.name}",
                                 log_path)
    return exe


def _run_step(step: str, cmd: list[str], log_path: Path, board: Board, timeout_s: float):
    env = dict(os.environ, LC_ALL="C")  # English tool messages: they are parsed below
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                              timeout=timeout_s, check=False)
        output, failed = proc.stdout + proc.stderr, proc.returncode != 0
    except subprocess.TimeoutExpired as e:
        output = _text(e.stdout) + _text(e.stderr) + f"\n(killed after {timeout_s} s)\n"
        failed = True
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(cmd)}\n{output}\n")
    if not failed:
        return
    overflow = {m.group(1): int(m.group(2)) for m in _OVERFLOW.finditer(output)}
    if overflow:
        raise _too_large(board, overflow, log_path)
    raise FirmwareBuildError(f"firmware {step} for board {board.name} failed: "
                             f"{_first_error(output)[:300]}", log_path)


def _first_error(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines()]
    for i, line in enumerate(lines):
        if _ERROR_LINE.search(line):
            if line.startswith("CMake Error"):  # the message is on the next lines
                line += " " + next((nxt for nxt in lines[i + 1:] if nxt), "")
            return line
    return "see the log"


def _too_large(board: Board, overflow: dict[str, int], log_path: Path) -> ImageTooLargeError:
    chip = board.chip or f"board {board.name}"
    parts = []
    for region, excess in overflow.items():
        size = board.region_bytes.get(region)
        cap = f" ({size // 1024} kB)" if size else ""
        parts.append(f"{region}{cap} by {excess} bytes")
    msg = f"the firmware image does not fit the {chip}'s " + " and ".join(parts)
    hints = []
    if "FLASH" in overflow:
        hints.append("fewer weight bits shrink FLASH")
    if set(overflow) - {"FLASH"}:
        hints.append("a lower activation budget shrinks RAM")
    return ImageTooLargeError(msg, log_path, overflow, hint="; ".join(hints) or None)


def _drop_stale_cache(build: Path, project: Path, board: str) -> None:
    """A build dir configured for another board or project cannot be reconfigured in place
    (the toolchain is fixed at first configure): forget that configuration."""
    cache = build / "CMakeCache.txt"
    if not cache.is_file():
        return
    text = cache.read_text(errors="replace")
    home = re.search(r"^CMAKE_HOME_DIRECTORY:INTERNAL=(.*)$", text, re.MULTILINE)
    old_board = re.search(r"^MPQ_BOARD:STRING=(.*)$", text, re.MULTILINE)
    if (home and Path(home.group(1)).resolve() == project
            and old_board and old_board.group(1) == board):
        return
    cache.unlink()
    shutil.rmtree(build / "CMakeFiles", ignore_errors=True)


def _text(data) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


# Sections the linker scripts reserve for heap and stack (NOLOAD, counted as bss by `size`).
_RESERVE_SECTIONS = {".heap_stack", ".heap", ".stack"}


def memory_report(elf: str | os.PathLike) -> dict[str, int]:
    """Sizes of a built image, from `arm-none-eabi-size` (`size` for a host executable).

    text: code and read-only data (FLASH); data: initialised RAM (also stored in FLASH);
    bss: zero-initialised RAM (the arena included); reserved_bytes: heap and stack the linker
    script reserves; flash_bytes = text + data; ram_bytes = data + bss + reserved_bytes.
    """
    elf = Path(elf)
    with open(elf, "rb") as f:
        header = f.read(20)
    is_arm = header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 40
    tool = require_tool("arm-none-eabi-size" if is_arm else "size")
    berkeley = subprocess.run([tool, str(elf)], capture_output=True, text=True, check=True)
    text, data, bss = (int(v) for v in berkeley.stdout.splitlines()[1].split()[:3])
    sysv = subprocess.run([tool, "-A", str(elf)], capture_output=True, text=True, check=True)
    reserved = sum(int(parts[1]) for parts in (ln.split() for ln in sysv.stdout.splitlines())
                   if len(parts) == 3 and parts[0] in _RESERVE_SECTIONS and parts[1].isdigit())
    bss -= reserved
    return {"flash_bytes": text + data, "ram_bytes": data + bss + reserved, "text": text,
            "data": data, "bss": bss, "reserved_bytes": reserved}
