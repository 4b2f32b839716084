"""tvm_mpq.target: build the generated model into firmware and run it.

    exe = build_firmware(None, "qemu_m7", "build/fw", codegen_dir="out/codegen", profile=True)
    res = run_qemu(exe, input_bytes, count_instructions=True)   # or run_host(host_exe, ...)
    res.output_bytes, res.profile, res.instructions_total, memory_report(exe)

The C side lives in microtvm_project/ (CMake template, runtime, boards, QEMU plugin).
"""

from .boards import BOARDS, Board, board_names, get_board
from .build import PROJECT_DIR, build_firmware, memory_report
from .console import ProfileRow, RunResult
from .host import run_host
from .qemu import QemuResult, run_qemu

__all__ = ["BOARDS", "PROJECT_DIR", "Board", "ProfileRow", "QemuResult", "RunResult",
           "board_names", "build_firmware", "get_board", "memory_report", "run_host", "run_qemu"]
