"""Board registry: what `microtvm_project/boards/<name>/` can build, and where it runs.

A board's memory sizes are the ones its linker script enforces; `qemu_m7` and
`nucleo_h743zi` both enforce the STM32H743's (FLASH 2 MB, main RAM 512 kB).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import TargetError

KIB = 1024


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    toolchain: str              # "host-cc" (native C compiler) or "arm-none-eabi"
    runner: str | None          # "host", "qemu" or None (build only: a real board)
    counter_unit: str           # unit of the MPQ_PROFILE counts, see runtime/mpq_board.h
    chip: str | None = None     # the MCU whose memory sizes the linker script enforces
    region_bytes: dict[str, int] = field(default_factory=dict)  # linker region -> capacity

    @property
    def can_run(self) -> bool:
        return self.runner is not None

    @property
    def flash_bytes(self) -> int | None:
        return self.region_bytes.get("FLASH")

    @property
    def ram_bytes(self) -> int | None:
        return self.region_bytes.get("RAM")


_H743 = {"FLASH": 2048 * KIB, "RAM": 512 * KIB}

BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("host", "native build with the host C compiler; tensors as files (bit-exact check)",
          toolchain="host-cc", runner="host", counter_unit="none"),
    Board("qemu_m7", "QEMU mps2-an500 Cortex-M7, linked with the STM32H743's FLASH/RAM sizes; "
          "semihosting I/O, exact instruction counts", toolchain="arm-none-eabi",
          runner="qemu", counter_unit="cmsdk_ticks", chip="STM32H743", region_bytes=_H743),
    Board("nucleo_h743zi", "Nucleo-H743ZI (STM32H743ZI at 400 MHz): USART3 console, DWT "
          "cycle counter; build only here", toolchain="arm-none-eabi", runner=None,
          counter_unit="cycles", chip="STM32H743",
          region_bytes={**_H743, "DTCM": 128 * KIB}),
)}


def get_board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise TargetError(f"unknown board '{name}'",
                          hint=f"choose one of: {', '.join(BOARDS)}") from None


def board_names() -> list[str]:
    return list(BOARDS)
