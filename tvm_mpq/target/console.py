"""The firmware's console protocol (see microtvm_project/runtime/mpq_board.h): parse the
MPQ_* lines of a run and turn failures into clear errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import FirmwareFaultError, FirmwareRunError

# Exit statuses of the firmware (runtime/mpq_board.h).
EXIT_OK, EXIT_MODEL, EXIT_IO, EXIT_FAULT = 0, 100, 101, 102


@dataclass
class ProfileRow:
    layer: int
    name: str
    counter: int                     # in RunResult.counter_unit
    instructions: int | None = None  # exact, from the QEMU plugin (count_instructions=True)


@dataclass
class RunResult:
    output_bytes: bytes
    stdout: str                 # the firmware's console (MPQ_* lines and anything printed)
    exit_code: int
    status: int | None          # mpq_model_run's return value (None: it did not finish)
    counter_unit: str = "none"  # none | cmsdk_ticks | cycles
    counter_total: int | None = None
    profile: list[ProfileRow] = field(default_factory=list)
    wall_s: float = 0.0


@dataclass
class Console:
    """What the MPQ_* lines of one run say."""
    start: dict[str, str] = field(default_factory=dict)
    profile: list[ProfileRow] = field(default_factory=list)
    total: int | None = None
    status: int | None = None
    errors: list[str] = field(default_factory=list)
    fault: dict[str, str] | None = None
    output_hex: str = ""


_FAULT = re.compile(r"^MPQ_FAULT (\w+)((?: \w+=0x[0-9a-fA-F]+)*)")


def parse_console(text: str) -> Console:
    con = Console()
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("MPQ_"):
            continue
        tag, _, rest = line.partition(" ")
        if tag == "MPQ_START":
            con.start = dict(kv.split("=", 1) for kv in rest.split() if "=" in kv)
        elif tag == "MPQ_PROFILE":
            layer, _, name_count = rest.partition(" ")
            name, _, count = name_count.rpartition(" ")
            con.profile.append(ProfileRow(int(layer), name, int(count)))
        elif tag == "MPQ_TOTAL":
            con.total = int(rest)
        elif tag == "MPQ_DONE":
            con.status = int(rest.split("=", 1)[1])
        elif tag == "MPQ_ERROR":
            con.errors.append(rest)
        elif tag == "MPQ_OUTPUT":
            con.output_hex += rest.strip()
        elif tag == "MPQ_FAULT" and con.fault is None:
            m = _FAULT.match(line)
            if m:
                con.fault = {"name": m.group(1),
                             **dict(kv.split("=") for kv in m.group(2).split())}
    return con


# CFSR bits (ARMv7-M): what the escalated fault really was.
_CFSR_BITS = {
    0: "MemManage: instruction access violation", 1: "MemManage: data access violation",
    3: "MemManage: fault on exception return", 4: "MemManage: fault on exception entry",
    8: "BusFault: instruction bus error", 9: "BusFault: precise data bus error",
    10: "BusFault: imprecise data bus error", 11: "BusFault: on exception return",
    12: "BusFault: on exception entry (stack overflow?)", 16: "UsageFault: undefined instruction",
    17: "UsageFault: invalid state (Thumb bit)", 18: "UsageFault: invalid EXC_RETURN",
    19: "UsageFault: coprocessor (FPU disabled?)", 24: "UsageFault: unaligned access",
    25: "UsageFault: integer division by zero",
}


def describe_fault(fault: dict[str, str], symbolize=None) -> tuple[str, int | None]:
    """One-line description of an MPQ_FAULT line's fields, and the faulting pc."""
    pc = int(fault["pc"], 16) if "pc" in fault else None
    cfsr = int(fault.get("cfsr", "0"), 16)
    causes = [text for bit, text in _CFSR_BITS.items() if cfsr >> bit & 1]
    if cfsr >> 15 & 1 and "bfar" in fault:
        causes.append(f"at address {fault['bfar']}")
    elif cfsr >> 7 & 1 and "mmfar" in fault:
        causes.append(f"at address {fault['mmfar']}")
    where = f" at pc=0x{pc:08x}" if pc is not None else ""
    if pc is not None and symbolize is not None:
        sym = symbolize(pc)
        if sym:
            where += f" ({sym})"
    detail = f" [{'; '.join(causes)}]" if causes else ""
    return f"{fault['name']}{where}{detail}", pc


def check_run(result: RunResult, con: Console, where: str, symbolize=None) -> None:
    """Raise the error a failed run deserves; return quietly if it succeeded."""
    if con.fault is not None:
        text, pc = describe_fault(con.fault, symbolize)
        raise FirmwareFaultError(f"firmware faulted on {where}: {text}", fault=con.fault["name"],
                                 pc=pc)
    if con.errors:
        raise FirmwareRunError(f"firmware on {where} reported: {con.errors[0]}")
    if con.status is None:
        last = next((ln for ln in reversed(result.stdout.splitlines()) if ln.strip()), "")
        raise FirmwareRunError(f"firmware on {where} stopped (exit code {result.exit_code}) "
                               f"before MPQ_DONE" + (f"; last line: {last[:200]}" if last else ""))
    if con.status != 0:
        raise FirmwareRunError(f"mpq_model_run returned {con.status} on {where}")
    if result.exit_code != EXIT_OK:
        raise FirmwareRunError(f"firmware on {where} exited with code {result.exit_code}")
