import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "tvm_mpq.cli"]


def run_cli(*args, cwd=None, timeout=600, env=None):
    """Run `tvm-mpq ARGS` in a subprocess; returns CompletedProcess (text). `env` overrides
    variables of the environment."""
    env = {**os.environ, "PYTHONHASHSEED": "0", **(env or {})}
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env)


def assert_user_error(proc, *needles):
    """A user error: exit 2, exactly one line on stderr, no traceback, mentions needles."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def host_builder(tmp_path_factory):
    """Compiles batches of generated kernels with the host gcc into shared libraries
    (tests/test_codegen_kernels.py: HostBuilder); one per session, shared by the operator
    tests."""
    from test_codegen_kernels import HostBuilder

    return HostBuilder(tmp_path_factory.mktemp("host_kernels"))
