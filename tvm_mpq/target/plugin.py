"""The exact instruction-counting QEMU plugin (microtvm_project/tools/insn_count_plugin.c):
built on demand with the host C compiler and cached; plus ELF symbol look-ups for the
address ranges it counts in."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
from pathlib import Path

from .build import PROJECT_DIR, require_tool
from .errors import FirmwareBuildError

PLUGIN_SOURCE = PROJECT_DIR / "tools" / "insn_count_plugin.c"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tvm-mpq"


def plugin_library(source: str | os.PathLike = PLUGIN_SOURCE) -> Path:
    """Path of the compiled plugin (`-shared -fPIC`), built once per source version."""
    source = Path(source)
    code = source.read_bytes()
    digest = hashlib.sha256(code).hexdigest()[:16]
    lib = cache_dir() / "qemu-plugins" / f"{source.stem}-{digest}.so"
    if lib.is_file():
        return lib
    cc = require_tool("cc")
    lib.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{lib.name}.", suffix=".tmp", dir=lib.parent)
    os.close(fd)
    try:
        proc = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-fvisibility=hidden", "-Wall",
                               "-o", tmp, str(source)], capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:
            log = lib.with_suffix(".log")
            log.write_text(proc.stdout + proc.stderr)
            raise FirmwareBuildError(f"compiling the QEMU plugin {source.name} failed", log)
        os.replace(tmp, lib)  # atomic: concurrent builders agree on the result
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return lib


_NM_LINE = re.compile(r"^([0-9a-fA-F]+) ([0-9a-fA-F]+) ([tTwW]) (\S+)$")


def function_ranges(elf: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """Every function symbol of an ARM ELF: name -> (start, end) addresses, end exclusive.
    GCC's clones (`times3.constprop.0`) are also listed under their base name when that
    name is free."""
    nm = require_tool("arm-none-eabi-nm")
    proc = subprocess.run([nm, "-S", "--defined-only", str(elf)], capture_output=True,
                          text=True, check=True)
    ranges: dict[str, tuple[int, int]] = {}
    for line in proc.stdout.splitlines():
        m = _NM_LINE.match(line.strip())
        if m:
            start = int(m.group(1), 16) & ~1  # Thumb bit, if a tool ever reports it
            ranges[m.group(4)] = (start, start + int(m.group(2), 16))
    for name, rng in list(ranges.items()):
        ranges.setdefault(name.split(".", 1)[0], rng)
    return ranges


def kernel_symbols(ranges: dict[str, tuple[int, int]], name: str) -> list[str]:
    """The functions of kernel `name` among `ranges` (function_ranges): the kernel and its
    generated helpers `<name>__*` (e.g. a generated assembly row), whose instructions
    count as the kernel's."""
    return [n for n in ranges if n == name or (n.startswith(name + "__") and "." not in n)]


def symbolize(ranges: dict[str, tuple[int, int]], addr: int) -> str | None:
    """`name+0xoff` of the function holding addr, or None."""
    for name, (start, end) in ranges.items():
        if start <= addr < end and "." not in name:
            return f"{name}+0x{addr - start:x}"
    for name, (start, end) in ranges.items():
        if start <= addr < end:
            return f"{name}+0x{addr - start:x}"
    return None
