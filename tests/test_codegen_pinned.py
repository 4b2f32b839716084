"""The generated C of two reference models is pinned by digest: a refactor of the compiler
(the operator registry, a new kernel path) must not change a byte of what existing models
compile to. When a change of the generated C is intended, update the digest in the same
commit and say why in its message.

- the demo's QDQ model (models/fashion_mnist/, MixPC for 100 kB / 12 kB; re-pinned when the
  demo's checkpoint was retrained: the compiler's C for the old checkpoint was unchanged by
  the operator registry, digest a5d3fa2d...);
- the zoo's mobilenet_v1_0.75_224, planned MixPC at 2,048,000 B / 512,000 B and calibrated
  on synthetic inputs (plan, calibration, QDQ export, conversion and code generation).
"""

import json

import pytest

from conftest import ROOT, run_cli
from tvm_mpq.codegen.project import read_metadata

DEMO = ROOT / "models" / "fashion_mnist" / "mobilenet_v1_0.25_28.mixpc_100kB_12kB.qat.onnx"
PINNED = {
    "demo": ("5c95e81b172c49a6f88d1fdf67d743dfdda838fd8f36b675f0a24821e1927984",
             [str(DEMO)]),
    "mobilenet_v1_0.75_224": ("972e9fc6fe503d74514baf95f379430ad3f1e474e9811cf75134532499a41583",
                              ["mobilenet_v1_0.75_224", "--flash", "2048000", "--ram",
                               "512000", "--scheme", "mixpc"]),
}


@pytest.mark.parametrize("which", sorted(PINNED))
def test_generated_c_is_unchanged(which, tmp_path):
    digest, args = PINNED[which]
    out = tmp_path / which
    p = run_cli("compile", *args, "--no-build", "-o", out)
    assert p.returncode == 0, p.stderr
    meta = read_metadata(out)
    assert meta["codegen_digest"] == digest, (
        f"the generated C of {which} changed: {meta['codegen_digest']}\n"
        + json.dumps([la["name"] for la in meta["layers"]]))
