"""Coverage-guided fuzzing of the ONNX loader with atheris (libFuzzer):

    python tests/fuzz/fuzz_loader_atheris.py -runs=100000 -seed=1 CORPUS_DIR

The target is tests/test_fuzz_loader.py's fuzz_target (load, layer graph, memory plan,
Relax conversion and golden model or PyTorch twin); anything but the project's MpqError is
a crash. CI runs it for a fixed number of runs from the seed models (test_atheris_fixed_run).
"""

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # tests/

with atheris.instrument_imports(include=["tvm_mpq"]):
    from test_fuzz_loader import fuzz_target  # noqa: E402

    import tvm_mpq.frontend.graph  # noqa: E402,F401
    import tvm_mpq.frontend.loader  # noqa: E402,F401
    import tvm_mpq.frontend.qdq  # noqa: E402,F401
    import tvm_mpq.memory.allocation  # noqa: E402,F401
    import tvm_mpq.passes.pipeline  # noqa: E402,F401


def main() -> None:
    atheris.Setup(sys.argv, fuzz_target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
