"""The generated C of two reference models is pinned by digest: a refactor of the compiler
(the operator registry, a new kernel path) must not change a byte of what existing models
compile to. When a change of the generated C is intended, update the digest in the same
commit and say why in its message.

- the demo's QDQ model (models/fashion_mnist/, MixPC for 100 kB / 12 kB);
- the zoo's mobilenet_v1_0.75_224, planned MixPC at 2,048,000 B / 512,000 B and calibrated
  on synthetic inputs (plan, calibration, QDQ export, conversion and code generation).
"""

import json

import pytest

from conftest import ROOT, run_cli
from tvm_mpq.codegen.project import read_metadata

DEMO = ROOT / "models" / "fashion_mnist" / "mobilenet_v1_0.25_28.mixpc_100kB_12kB.qat.onnx"
PINNED = {
    "demo": ("a5d3fa2d60d11330020e523c4357a8d7864687d34cb8f9b2d6c271645da859a1",
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
