"""`tvm-mpq report`: a self-contained HTML page with the plots a person wants."""

from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import assert_user_error, run_cli

ROOT = Path(__file__).resolve().parents[1]
QMODEL = ROOT / "models/fashion_mnist/mobilenet_v1_0.25_28.mixpc_100kB_12kB.qat.onnx"


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.links, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag in ("link", "script") or (tag == "a" and "href" in a):
            self.links.append((tag, a))

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "b"
    p = run_cli("compile", QMODEL, "--board", "qemu_m7", "-o", out)
    assert p.returncode == 0, p.stderr
    p = run_cli("run", out, "--input", "random", "--profile")
    assert p.returncode == 0, p.stderr
    assert (out / "profile.json").is_file()
    return out


def test_report_is_self_contained_with_plots(build, tmp_path):
    dst = tmp_path / "r.html"
    p = run_cli("report", build, "-o", dst)
    assert p.returncode == 0, p.stderr
    c = _Collect()
    c.feed(dst.read_text())
    assert len(c.imgs) == 4                        # bits, memory, arena, instructions
    assert all(src.startswith("data:image/png;base64,") for src in c.imgs)
    assert not c.links                              # nothing external
    text = " ".join(c.text)
    for needle in ("Precision", "Memory", "block13.pw", "instructions", "100,000 B / 12,000 B"):
        assert needle in text or needle in dst.read_text(), needle


def test_report_deterministic(build, tmp_path):
    a, b = tmp_path / "a.html", tmp_path / "b.html"
    assert run_cli("report", build, "-o", a).returncode == 0
    assert run_cli("report", build, "-o", b).returncode == 0
    assert a.read_bytes() == b.read_bytes()


def test_report_on_non_build(tmp_path):
    assert_user_error(run_cli("report", tmp_path), "not a tvm-mpq build")
