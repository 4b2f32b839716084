"""Run `host` firmware (a native program: `mpq_firmware input.bin output.bin`) the same way
`qemu.run_qemu` runs QEMU firmware, in a fresh temporary directory."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ..errors import TargetError
from .console import RunResult, check_run, parse_console
from .errors import FirmwareFaultError, FirmwareTimeoutError


def run_host(exe: str | os.PathLike, input_bytes: bytes, timeout_s: float = 60, *,
             check: bool = True) -> RunResult:
    """Run the host build once on `input_bytes`; returns its output tensor and console."""
    exe = Path(exe).resolve()
    if not exe.is_file():
        raise TargetError(f"firmware program {exe} does not exist", hint="build it first")
    with tempfile.TemporaryDirectory(prefix="mpq-host-") as tmp:
        work = Path(tmp)
        (work / "input.bin").write_bytes(bytes(input_bytes))
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([str(exe), "input.bin", "output.bin"], cwd=work,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  errors="replace", timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise FirmwareTimeoutError(
                f"firmware {exe.name} did not finish within {timeout_s:g} s on the host",
                hint="an endless loop, or a model far slower than expected") from None
        wall_s = time.perf_counter() - t0
        out_path = work / "output.bin"
        output = out_path.read_bytes() if out_path.is_file() else b""
    con = parse_console(proc.stdout)
    result = RunResult(output_bytes=output, stdout=proc.stdout, exit_code=proc.returncode,
                       status=con.status, counter_unit=con.start.get("counter", "none"),
                       counter_total=con.total, profile=con.profile, wall_s=wall_s)
    if check and proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        raise FirmwareFaultError(f"host firmware {exe.name} died from {sig}", fault=sig)
    if check:
        check_run(result, con, f"the host ({exe.name})")
    return result
