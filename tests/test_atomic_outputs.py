"""Atomic outputs under real interruptions: `quantize`, `compile` and `train` run as
subprocesses and get SIGINT (Ctrl-C: exit 130, one line) or SIGKILL midway. The output path
then holds the previous complete output, the new complete output, or nothing - never a
partial file or directory; `train` resumes from its checkpoint and ends with the same
bytes as an uninterrupted run."""

import os
import re
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import onnx
import pytest

from conftest import CLI, run_cli
from tvm_mpq import fsutil

MODEL = "mobilenet_v1_0.25_28"


def _env():
    return dict(os.environ, PYTHONHASHSEED="0", PYTHONUNBUFFERED="1")


def interrupt(args, pattern: str, sig: int, delay: float = 0.0, timeout: float = 600):
    """Run `tvm-mpq ARGS`; `delay` s after a line of its output matches `pattern`, send
    `sig` to its process group (as Ctrl-C does). Returns (exit code, output, signalled)."""
    p = subprocess.Popen(CLI + [str(a) for a in args], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=_env(),
                         start_new_session=True)
    lines, signalled = [], False
    t_end = time.time() + timeout
    try:
        for line in p.stdout:
            lines.append(line)
            if not signalled and re.search(pattern, line):
                time.sleep(delay)
                try:
                    os.killpg(p.pid, sig)
                    signalled = True
                except ProcessLookupError:       # it finished first
                    pass
            if time.time() > t_end:
                break
        rc = p.wait(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return rc, "".join(lines), signalled


def _tree(d: Path) -> dict[str, bytes]:
    return {str(f.relative_to(d)): f.read_bytes() for f in sorted(d.rglob("*")) if f.is_file()}


def _strays(d: Path, name: str) -> list[str]:
    return [p.name for p in d.iterdir() if p.name.startswith(f".{name}.")]


# ---------------------------------------------------------------------------------------
# fsutil itself

def test_atomic_files_and_directories_get_the_usual_modes(tmp_path):
    old = os.umask(0o022)
    try:
        fsutil.write_bytes_atomic(tmp_path / "f.bin", b"x")
        with fsutil.atomic_directory(tmp_path / "d") as d:
            (d / "a").write_text("a")
    finally:
        os.umask(old)
    # mkstemp/mkdtemp made them 0600/0700: unreadable for anyone else
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch):
    f = tmp_path / "out.json"
    fsutil.write_text_atomic(f, "old\n")

    def interrupted(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(fsutil.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fsutil.write_text_atomic(f, "new\n")
    with pytest.raises(KeyboardInterrupt):
        with fsutil.atomic_directory(tmp_path / "dir") as d:
            (d / "x").write_text("x")
    assert f.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


# ---------------------------------------------------------------------------------------
# quantize

@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    p = tmp_path_factory.mktemp("plan") / "p.json"
    assert run_cli("plan", MODEL, "--flash", "120kB", "--ram", "12kB", "--json",
                   p).returncode == 0
    return p


@pytest.mark.slow
def test_quantize_interrupted(plan, tmp_path):
    def args(seed, out):
        return ["quantize", MODEL, "--plan", plan, "--calib", "synthetic", "--num-samples", 16,
                "--seed", seed, "--limit-test", 32, "-o", out]

    ref = tmp_path / "ref"
    ref.mkdir()
    for seed in (0, 1):
        assert run_cli(*args(seed, ref / f"{seed}.onnx")).returncode == 0
    old, new = (ref / "0.onnx").read_bytes(), (ref / "1.onnx").read_bytes()
    assert old != new
    out = tmp_path / "q.onnx"
    out.write_bytes(old)
    # the model is written ~0.1 s after the calibration warning: kill around that moment
    for sig, delay in [(signal.SIGINT, 0.0), (signal.SIGKILL, 0.05), (signal.SIGINT, 0.1)]:
        rc, text, signalled = interrupt(args(1, out), "warning: synthetic", sig, delay)
        assert out.read_bytes() in (old, new), (sig, delay)
        if rc == -signal.SIGINT:        # the signal came as the interpreter exited: done
            assert out.read_bytes() == new
        elif signalled and sig == signal.SIGINT and rc != 0:
            assert rc == 130 and "tvm-mpq quantize: interrupted" in text
            assert "Traceback" not in text
            assert not _strays(tmp_path, "q.onnx")
        out.write_bytes(old)
    # no previous output: none or the complete new one
    fresh = tmp_path / "fresh.onnx"
    interrupt(args(1, fresh), "warning: synthetic", signal.SIGKILL, 0.05)
    assert not fresh.exists() or fresh.read_bytes() == new


# ---------------------------------------------------------------------------------------
# compile

@pytest.fixture(scope="module")
def qmodels(plan, tmp_path_factory):
    d = tmp_path_factory.mktemp("qm")
    for seed in (0, 1):
        p = run_cli("-q", "quantize", MODEL, "--plan", plan, "--calib", "synthetic",
                    "--num-samples", 16, "--seed", seed, "--limit-test", 16, "-o",
                    d / f"q{seed}.onnx")
        assert p.returncode == 0, p.stderr
    return d / "q0.onnx", d / "q1.onnx"


@pytest.mark.slow
def test_compile_interrupted(qmodels, tmp_path):
    refs = []
    for i, q in enumerate(qmodels):
        assert run_cli("-q", "compile", q, "--no-build", "-o", tmp_path / f"ref{i}").returncode == 0
        refs.append(_tree(tmp_path / f"ref{i}"))
    assert refs[0] != refs[1]
    out = tmp_path / "out"
    # the project is written ~0.3 s after "generate C" is printed
    for sig, delay in [(signal.SIGINT, 0.0), (signal.SIGKILL, 0.1), (signal.SIGKILL, 0.25),
                       (signal.SIGINT, 0.3)]:
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(tmp_path / "ref0", out)           # the previous output
        rc, text, signalled = interrupt(["compile", qmodels[1], "--no-build", "-o", out],
                                        "generate C", sig, delay)
        assert _tree(out) in refs, (sig, delay)
        if rc == -signal.SIGINT:        # the signal came as the interpreter exited: done
            assert _tree(out) == refs[1]
        elif signalled and sig == signal.SIGINT and rc != 0:
            assert rc == 130 and "Traceback" not in text, text
            assert not _strays(tmp_path, "out")


@pytest.mark.slow
def test_compile_interrupted_while_building_then_run_rebuilds(qmodels, tmp_path):
    out = tmp_path / "fw"
    rc, text, signalled = interrupt(["compile", qmodels[0], "--board", "qemu_m7", "-o", out],
                                    "build the firmware", signal.SIGINT, 0.3)
    assert signalled and rc == 130, text
    assert (out / "metadata.json").is_file()          # the project itself is complete
    p = run_cli("run", out, "--input", "random", "--check-host")
    assert p.returncode == 0, p.stderr
    assert "host build: byte-identical output" in p.stdout


# ---------------------------------------------------------------------------------------
# train

@pytest.mark.slow
def test_train_interrupted_resumes_to_the_same_bytes(plan, tmp_path):
    from tvm_mpq.data.fashion_mnist import load_fashion_mnist
    from tvm_mpq.errors import MpqError

    try:
        load_fashion_mnist("test")
    except MpqError:
        pytest.skip("Fashion-MNIST is not installed (dataset-fashion-mnist)")

    def args(out):
        return ["train", MODEL, "--plan", plan, "--epochs", 3, "--float-epochs", 1,
                "--limit-train", 192, "--limit-test", 64, "--batch-size", 64, "-o", out]

    full = tmp_path / "full.onnx"
    p = run_cli(*args(full))
    assert p.returncode == 0, p.stderr
    out = tmp_path / "q.onnx"
    ckpt = tmp_path / "q.onnx.ckpt" / "state.pt"
    # Ctrl-C during the first QAT epoch: exit 130, one line, the float checkpoint kept
    rc, text, signalled = interrupt(args(out), r"float epoch 1/1", signal.SIGINT, 0.3)
    assert signalled and rc == 130, text
    assert text.strip().splitlines()[-1] == "tvm-mpq train: interrupted"
    assert "Traceback" not in text
    assert ckpt.is_file() and not out.exists()
    # SIGKILL right when QAT epoch 1 ends (its checkpoint may be half written)
    rc, text, signalled = interrupt(args(out), r"QAT epoch 1/3", signal.SIGKILL)
    assert "resuming from" in text and signalled
    assert not out.exists() and ckpt.is_file()
    assert not [p for p in ckpt.parent.iterdir() if p.name != "state.pt"
                and not p.name.startswith(".state.pt.")]
    # the rerun resumes and finishes with the same model as the uninterrupted run
    p = run_cli(*args(out))
    assert p.returncode == 0, p.stderr
    assert re.search(r"resuming from .* \((float epoch 1|qat epoch [12]) done\)", p.stderr)
    onnx.checker.check_model(onnx.load(str(out)))
    assert out.read_bytes() == full.read_bytes()


# ---------------------------------------------------------------------------------------
# the CLI's signal handling

@pytest.mark.parametrize("sig,rc", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_inside_tvm_is_an_interruption(monkeypatch, capsys, sig, rc):
    """TVM's FFI turns a KeyboardInterrupt raised inside a pass into a RuntimeError (a
    traceback and exit 1 before); SIGTERM unwinds like Ctrl-C, so temporary outputs go."""
    from tvm_mpq import cli
    from tvm_mpq.commands import zoo

    def run(args):
        try:
            os.kill(os.getpid(), sig)
            time.sleep(5)
        except KeyboardInterrupt:
            raise RuntimeError("wrapped by the FFI") from None

    monkeypatch.setattr(zoo, "run", run)
    assert cli.main(["zoo"]) == rc
    assert capsys.readouterr().err.strip() == "tvm-mpq zoo: interrupted"
    assert signal.getsignal(sig) in (signal.default_int_handler, signal.SIG_DFL)


def test_other_errors_keep_their_traceback(monkeypatch):
    from tvm_mpq import cli
    from tvm_mpq.commands import zoo

    def run(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(zoo, "run", run)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["zoo"])


# ---------------------------------------------------------------------------------------
# every writer of a user-visible output goes through tvm_mpq.fsutil

WRITE = re.compile(r"\.write_(text|bytes)\(|\bopen\([^)]*['\"][wax]b?['\"]|onnx\.save|"
                   r"(torch|np)\.save\((?![^)]*\bbuf\b)|json\.dump\(|shutil\.copy")
# (file, text on the line): writes into a private temporary directory (the atomic directory
# being filled, a TemporaryDirectory, the emulator's work directory) or to a log file
ALLOWED = {
    ("codegen/aot.py", "(codegen_dir / name).write_text(text)"),     # into atomic_directory
    ("codegen/project.py", "shutil.copytree(src, tmp / item)"),
    ("codegen/project.py", "shutil.copy2(src, tmp / item)"),
    ("codegen/project.py", '(tmp / "CMakeLists.txt").write_text('),
    ("codegen/project.py", '(tmp / "model.qdq.onnx").write_bytes(qdq_bytes)'),
    ("codegen/project.py", '(tmp / "plan.json").write_text('),
    ("codegen/project.py", '(tmp / "metadata.json").write_text('),
    ("codegen/project.py", '(tmp / "README.md").write_text('),
    ("flow.py", "p.write_text(json.dumps(plan_json))"),                  # TemporaryDirectory
    ("target/qemu.py", '(work / "input.bin").write_bytes('),           # emulator work dir
    ("target/host.py", '(work / "input.bin").write_bytes('),
    ("target/build.py", 'log_path.write_text("")'),                     # build log
    ("target/build.py", 'with open(log_path, "a") as log:'),
    ("target/plugin.py", "log.write_text("),                            # compiler log
    ("frontend/loader.py", "(onnx.save(model, path, save_as_external_data=False))"),  # a hint
}


def test_outputs_are_written_through_fsutil():
    root = Path(__file__).resolve().parents[1] / "tvm_mpq"
    found = set()
    for f in sorted(root.rglob("*.py")):
        rel = str(f.relative_to(root))
        if rel == "fsutil.py" or rel.startswith("tune/"):    # tune: written by its owner
            continue
        for line in f.read_text().splitlines():
            if WRITE.search(line) and not line.lstrip().startswith("#") and "noqa" not in line:
                hit = next(((rel, a) for r, a in ALLOWED if r == rel and a in line), None)
                assert hit, f"{rel}: '{line.strip()}' - write through tvm_mpq.fsutil " \
                    "(write_bytes_atomic / atomic_directory) or explain it in ALLOWED"
                found.add(hit)
    assert found == ALLOWED, f"stale ALLOWED entries: {ALLOWED - found}"
