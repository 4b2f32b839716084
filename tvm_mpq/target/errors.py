"""Errors of the firmware stage, all `tvm_mpq.errors.TargetError` (user-facing, one line)."""

from __future__ import annotations

from ..errors import TargetError


class ToolMissingError(TargetError):
    """A required program (cross compiler, CMake, QEMU) is not installed."""

    def __init__(self, tool: str, apt_package: str):
        super().__init__(f"{tool} not found on PATH",
                         hint=f"install the Debian package {apt_package} "
                              f"(apt-get install {apt_package}) or run scripts/setup.sh")
        self.tool = tool
        self.apt_package = apt_package


class FirmwareBuildError(TargetError):
    """CMake configure or build failed; `log_path` holds the full output."""

    def __init__(self, message: str, log_path, *, hint: str | None = None):
        hint = f"{hint}; full log: {log_path}" if hint else f"full log: {log_path}"
        super().__init__(message, hint=hint)
        self.log_path = log_path


class ImageTooLargeError(FirmwareBuildError):
    """The linker refused the image: a memory region of the MCU overflows.
    `overflow_bytes` maps region name ("FLASH", "RAM", ...) to the excess in bytes."""

    def __init__(self, message: str, log_path, overflow_bytes: dict[str, int], *,
                 hint: str | None = None):
        super().__init__(message, log_path, hint=hint)
        self.overflow_bytes = overflow_bytes


class FirmwareRunError(TargetError):
    """The firmware ran but did not succeed (model status, I/O error, bad exit code)."""


class FirmwareTimeoutError(FirmwareRunError):
    """The firmware did not finish within the time limit (it was killed)."""


class FirmwareFaultError(FirmwareRunError):
    """The CPU faulted (ARM boards) or the host program died from a signal."""

    def __init__(self, message: str, *, fault: str, pc: int | None = None,
                 hint: str | None = None):
        super().__init__(message, hint=hint)
        self.fault = fault
        self.pc = pc
