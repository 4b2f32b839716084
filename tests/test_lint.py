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


def test_the_repository_stands_alone():
    """Docs, docstrings and comments never point outside the repository."""
    bad = []
    for path in ROOT.rglob("*"):
        if path.suffix not in (".py", ".md", ".h", ".c", ".txt", ".cmake", ".j2", ".sh") or \
                any(part in (".venv", ".git", "build") for part in path.parts):
            continue
        text = path.read_text(errors="replace")
        for needle in ("/work/" + "shared", "shared/" + "notes", "../" + "shared"):
            if needle in text:
                bad.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not bad, bad
