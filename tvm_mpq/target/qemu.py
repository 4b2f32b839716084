"""Run `qemu_m7` firmware on QEMU (mps2-an500) and collect its results.

Contract with the firmware (boards/qemu_m7): QEMU runs in a fresh temporary directory
holding `input.bin`; the firmware reads it and writes `output.bin` there through
semihosting; the console (MPQ_* lines) arrives on QEMU's stdout and stderr; the exit code
is the firmware's (0 ok, 100 model status, 101 I/O, 102 fault). `-icount shift=0` makes
the CMSDK timer (the firmware's profile counter) deterministic: 1 tick = 40 instructions.
With `count_instructions`, the TCG plugin counts executed instructions exactly: in
total, per address range, and per profiled layer (between the calls of
mpq_profile_begin and mpq_profile_end).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TargetError
from .console import RunResult, check_run, parse_console
from .errors import FirmwareTimeoutError, ToolMissingError
from .plugin import function_ranges, plugin_library, symbolize

QEMU = "qemu-system-arm"
QEMU_MACHINE = "mps2-an500"
INSTRUCTIONS_PER_TICK = 40  # CMSDK timer at 25 MHz, -icount shift=0 (1 ns per instruction)
PROFILE_HOOKS = ("mpq_profile_begin", "mpq_profile_end")


@dataclass
class QemuResult(RunResult):
    instructions_total: int | None = None          # whole run, reset to exit
    instructions_by_range: dict[str, int] = field(default_factory=dict)


Ranges = Mapping[str, tuple[int, int]] | Iterable[str] | None


def qemu_command(elf: Path, plugin_args: list[str] | None = None,
                 plugin_log: Path | None = None) -> list[str]:
    cmd = [QEMU, "-M", QEMU_MACHINE, "-display", "none", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native", "-icount", "shift=0",
           "-kernel", str(elf)]
    if plugin_args is not None:
        cmd += ["-plugin", ",".join([str(plugin_library())] + plugin_args),
                "-d", "plugin", "-D", str(plugin_log)]
    return cmd


def run_qemu(elf: str | os.PathLike, input_bytes: bytes, timeout_s: float = 60,
             count_instructions: bool = False, ranges: Ranges = None, *,
             check: bool = True) -> QemuResult:
    """Run the firmware once on `input_bytes`; returns its output tensor and console.

    ranges: function names of the ELF, or {name: (start, end)} addresses, whose executed
    instructions are counted separately (implies count_instructions).
    check: raise FirmwareRunError/FirmwareFaultError/FirmwareTimeoutError on failure.
    """
    if shutil.which(QEMU) is None:
        raise ToolMissingError(QEMU, "qemu-system-arm")
    elf = Path(elf).resolve()
    if not elf.is_file():
        raise TargetError(f"firmware image {elf} does not exist", hint="build it first")
    symbols = function_ranges(elf)
    count_instructions = count_instructions or ranges is not None
    with tempfile.TemporaryDirectory(prefix="mpq-qemu-") as tmp:
        work = Path(tmp)
        (work / "input.bin").write_bytes(bytes(input_bytes))
        plugin_log = work / "plugin.log"
        plugin_args = _plugin_args(symbols, ranges) if count_instructions else None
        cmd = qemu_command(elf, plugin_args, plugin_log)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=work, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, errors="replace", timeout=timeout_s,
                                  check=False)
        except subprocess.TimeoutExpired:  # subprocess.run has killed QEMU
            raise FirmwareTimeoutError(
                f"firmware {elf.name} did not finish within {timeout_s:g} s on QEMU",
                hint="an endless loop, or a model far slower than expected") from None
        wall_s = time.perf_counter() - t0
        output = (work / "output.bin").read_bytes() if (work / "output.bin").is_file() else b""
        plugin_text = plugin_log.read_text() if plugin_log.is_file() else ""
    # Semihosting writes stdio to stdout; the fault handler's raw writes go to stderr.
    console = proc.stdout + "".join(ln + "\n" for ln in proc.stderr.splitlines()
                                    if ln.startswith("MPQ_"))
    if proc.returncode == 1 and "qemu-system-arm:" in proc.stderr:
        raise TargetError(f"QEMU failed: {proc.stderr.strip().splitlines()[-1]}")
    con = parse_console(console)
    result = QemuResult(output_bytes=output, stdout=console, exit_code=proc.returncode,
                        status=con.status, counter_unit=con.start.get("counter", "none"),
                        counter_total=con.total, profile=con.profile, wall_s=wall_s)
    if check:
        check_run(result, con, f"QEMU ({elf.name})", lambda pc: symbolize(symbols, pc))
    if count_instructions:
        _apply_plugin_log(result, plugin_text, symbols)
    return result


def _plugin_args(symbols: dict[str, tuple[int, int]], ranges: Ranges) -> list[str]:
    if ranges is None:
        ranges = {}
    elif not isinstance(ranges, Mapping):
        names = list(ranges)
        missing = [n for n in names if n not in symbols]
        if missing:
            raise TargetError(f"no function {missing[0]} in the firmware image",
                              hint="give names as `arm-none-eabi-nm` lists them")
        ranges = {n: symbols[n] for n in names}
    args = [f"range={name}:0x{start:x}:0x{end:x}" for name, (start, end) in ranges.items()]
    args += [f"mark=0x{symbols[h][0]:x}" for h in PROFILE_HOOKS if h in symbols]
    return args


def _apply_plugin_log(result: QemuResult, text: str, symbols) -> None:
    marks: list[tuple[int, int]] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[0] != "MPQ_INSN":
            continue
        if parts[1] == "total":
            result.instructions_total = int(parts[2])
        elif parts[1] == "range":
            result.instructions_by_range[parts[2]] = int(parts[3])
        elif parts[1] == "mark":
            marks.append((int(parts[2], 16), int(parts[3])))
    if result.instructions_total is None:
        raise TargetError("the QEMU instruction-counting plugin reported nothing",
                          hint="QEMU 7.x with TCG plugin support is needed")
    # Layer i's instructions: from entering mpq_profile_begin to entering mpq_profile_end,
    # pairing the calls in order (the model runs each layer once, in order).
    begin = symbols.get(PROFILE_HOOKS[0], (None,))[0]
    starts = [count for pc, count in marks if pc == begin]
    ends = [count for pc, count in marks if pc != begin]
    if len(starts) == len(ends) == len(result.profile):
        for row, s, e in zip(result.profile, starts, ends):
            row.instructions = e - s
