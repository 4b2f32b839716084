"""House style: ruff (pyflakes + pycodestyle errors) over the package, tests and benches."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    p = subprocess.run([sys.executable, "-m", "ruff", "check", "tvm_mpq", "tests", "bench",
                        "--select", "E,F,W", "--ignore", "E501", "--no-cache"],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-1000:]
