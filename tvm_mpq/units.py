"""Sizes as users write them: `2MiB`, `512 KiB`, `2,048,000`, `512k`, `1.5MB`.

Suffixes (optional `B` alone means bytes):

    k, K, kB, KB = 1000        KiB = 1024
    M, MB        = 1000**2     MiB = 1024**2
    G, GB        = 1000**3     GiB = 1024**3

The binary forms are case-sensitive (`KiB`, not `kib`). Digits may be grouped with
underscores (`2_048_000`) or with commas in groups of three (`2,048,000`). A decimal
fraction is accepted when the result is a whole number of bytes (`1.5MB`).
"""

from __future__ import annotations

import re
from fractions import Fraction

from .errors import MpqError

SUFFIXES = {
    "": 1, "B": 1,
    "k": 1000, "K": 1000, "kB": 1000, "KB": 1000,
    "M": 1000**2, "MB": 1000**2,
    "G": 1000**3, "GB": 1000**3,
    "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3,
}

_NUMBER = r"(?P<num>\d{1,3}(?:,\d{3})+|\d+(?:_\d+)*)(?:\.(?P<frac>\d+))?"
_SIZE = re.compile(rf"^{_NUMBER}\s*(?P<suffix>[A-Za-z]*)$")


def parse_size(text: str | int) -> int:
    """`"2MiB"` -> 2097152. Raises `MpqError` (one line) on anything malformed."""
    if isinstance(text, bool):
        raise MpqError(f"invalid size {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise MpqError(f"invalid size {text}: must not be negative")
        return text
    if not isinstance(text, str):
        raise MpqError(f"invalid size {text!r}: expected a string such as 2MiB or 512000")
    s = text.strip()
    m = _SIZE.match(s)
    if not m:
        raise MpqError(f"invalid size '{text}'",
                       hint="use bytes or a suffix: 512000, 512kB, 512KiB, 2MB, 2MiB")
    suffix = m["suffix"]
    if suffix not in SUFFIXES:
        raise MpqError(f"invalid size '{text}': unknown unit '{suffix}'",
                       hint="units: B, k/kB/KB, KiB, M/MB, MiB, G/GB, GiB")
    whole = int(m["num"].replace(",", "").replace("_", ""))
    value = Fraction(whole)
    if m["frac"]:
        value += Fraction(int(m["frac"]), 10 ** len(m["frac"]))
    value *= SUFFIXES[suffix]
    if value.denominator != 1:
        raise MpqError(f"invalid size '{text}': not a whole number of bytes")
    return int(value)


def format_size(n: int) -> str:
    """`2048000` -> `2,048,000 B` (the form the error messages and reports use)."""
    return f"{n:,} B"
