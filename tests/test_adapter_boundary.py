"""Every import of TVM goes through tvm_mpq/tvm_adapter.py (the next rename touches one file)."""

import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "tvm_mpq"
IMPORT = re.compile(r"^\s*(import tvm\b|from tvm(\.| import))", re.M)


def test_only_the_adapter_imports_tvm():
    offenders = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
                 if p.name != "tvm_adapter.py" and IMPORT.search(p.read_text())]
    assert offenders == []
