"""Measurements on other machines or boards, through TVM's RPC tracker and servers (`tvm.rpc`).

    tracker host:   python -m tvm.exec.rpc_tracker --port 9190
    each machine:   tvm-mpq rpc-server --tracker HOST:9190 --key qemu_m7
    client:         n = measure_remote(("HOST", 9190, "qemu_m7"), elf, input, want, kernel)

A measurement server is a plain `tvm.rpc.Server` whose `server_init_callback` (`server_init`)
registers two global functions in the server process:

- `tvm_mpq.measure_elf(elf_name, input_name, want_name, kernel_name, timeout_s) -> int`:
  the names are files uploaded into the session's work directory (resolved with the
  server's `tvm.rpc.server.workpath`); runs `measure.measure_elf` there (QEMU on that
  machine) and returns the kernel's executed instructions. A server next to a real board
  registers another function under the same name (flash the image, read the DWT cycle
  count from the serial console): clients do not change.
- `tvm_mpq.server_info() -> str`: "hostname:pid" of the server process (which server
  measured; used by the tests).

`measure_remote` asks the tracker for a session with the key (one session per
measurement: the tracker hands out free servers first-come first-served and queues the
rest, so concurrent callers spread over all servers of the key), uploads the firmware, the
input and the golden output under content-hash names, calls `tvm_mpq.measure_elf` and
closes the session (the server deletes the session's files).

Errors: a failed measurement on the server (wrong output, fault, timeout, the session's
time limit) comes back as `measure.MeasureError` (a failed trial); an unreachable tracker,
no server for the key, a server without the tvm_mpq functions or a lost connection raise
`RpcError` (a set-up problem, not a property of the schedule).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from pathlib import Path

from .. import tvm_adapter as ta
from ..errors import MpqError
from .measure import MeasureError

log = logging.getLogger("tvm_mpq")

MEASURE_FUNC = "tvm_mpq.measure_elf"
INFO_FUNC = "tvm_mpq.server_info"
# Tag of a measurement error raised on the server, recognised in the client's exception text.
_REMOTE_TAG = "tvm_mpq.MeasureError: "
SESSION_SLACK_S = 60       # session time limit = measurement timeout + this (uploads, startup)
CONNECT_TIMEOUT_S = 10


class RpcError(MpqError):
    """The RPC set-up failed: tracker unreachable, no server for the key, lost session."""


def parse_host_port(text: str, what: str = "--rpc-tracker") -> tuple[str, int]:
    """"HOST:PORT" -> (host, port)."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise MpqError(f"{what} {text!r}: expected HOST:PORT")
    return host, int(port)


# --- client --------------------------------------------------------------------------------

def _probe(host: str, port: int) -> None:
    """Fail fast (TVM's own connect retries for a minute) when nothing listens there."""
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise RpcError(f"cannot reach the RPC tracker {host}:{port}: "
                       f"{e.strerror or type(e).__name__}",
                       hint="start one with `python -m tvm.exec.rpc_tracker --port "
                            f"{port}` or `tvm-mpq rpc-server --start-tracker`") from None


def connect_tracker(host: str, port: int):
    """A `tvm.rpc.TrackerSession` (RpcError when the tracker cannot be reached)."""
    _probe(host, port)
    try:
        return ta.rpc().connect_tracker(host, port)
    except (OSError, RuntimeError) as e:
        raise RpcError(f"cannot connect to the RPC tracker {host}:{port}: {_first_line(e)}"
                       ) from None


def servers_with_key(tracker, key: str) -> list[tuple]:
    """The addresses of the servers registered with the tracker under `key` (busy or free)."""
    info = tracker.summary().get("server_info", [])
    return [tuple(s.get("addr", ())) for s in info if s.get("key") == "server:" + key]


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def _remote_message(e: BaseException) -> str | None:
    """The server's MeasureError text inside an RPC exception, if it is one."""
    text = str(e)
    i = text.find(_REMOTE_TAG)
    if i < 0:
        return None
    return text[i + len(_REMOTE_TAG):].splitlines()[0].strip()


def request_session(rpc: tuple[str, int, str], session_timeout: float = 0):
    """A session on a free server of `key` (waits while all of them are busy)."""
    host, port, key = rpc
    tracker = connect_tracker(host, port)
    try:
        if not servers_with_key(tracker, key):
            raise RpcError(f"no RPC server with key '{key}' on tracker {host}:{port}",
                           hint=f"start one with `tvm-mpq rpc-server --tracker {host}:{port} "
                                f"--key {key}`")
        try:
            return tracker.request(key, priority=1, session_timeout=session_timeout,
                                   max_retry=2)
        except (OSError, RuntimeError) as e:
            raise RpcError(f"no session for key '{key}' from tracker {host}:{port}: "
                           f"{_first_line(e)}") from None
    finally:
        tracker.close()


def _upload(sess, data: bytes, suffix: str) -> str:
    name = hashlib.sha256(data).hexdigest()[:20] + suffix
    sess.upload(bytearray(data), name)
    return name


def count_servers(rpc: tuple[str, int, str]) -> int:
    """How many servers are registered under the key (busy or free): how many
    measurements are worth running at once."""
    tracker = connect_tracker(rpc[0], rpc[1])
    try:
        return len(servers_with_key(tracker, rpc[2]))
    finally:
        tracker.close()


def measure_remote(rpc: tuple[str, int, str], elf: Path, input_path: Path, want_path: Path,
                   kernel_name: str, timeout_s: float = 600) -> int:
    """Measure the firmware on a server of the tracker (host, port, key); the kernel's
    executed instructions. MeasureError for a failed measurement, RpcError for the set-up.
    Thread-safe: concurrent calls get different servers while free ones remain."""
    return measure_remote_info(rpc, elf, input_path, want_path, kernel_name, timeout_s)[0]


def measure_remote_info(rpc: tuple[str, int, str], elf: Path, input_path: Path,
                        want_path: Path, kernel_name: str, timeout_s: float = 600
                        ) -> tuple[int, str]:
    """`measure_remote`, and which server measured ("hostname:pid", tvm_mpq.server_info)."""
    key = rpc[2]
    sess = request_session(rpc, session_timeout=timeout_s + SESSION_SLACK_S)
    func = None
    try:
        try:
            names = [_upload(sess, Path(p).read_bytes(), sfx) for p, sfx in
                     ((elf, ".elf"), (input_path, ".in.bin"), (want_path, ".want.bin"))]
            func = sess.get_function(MEASURE_FUNC)
            server = str(sess.get_function(INFO_FUNC)())
        except Exception as e:  # noqa: BLE001  (TVM raises its own error classes)
            if MEASURE_FUNC in str(e):
                error = RpcError(f"the RPC server with key '{key}' has no function "
                                 f"{MEASURE_FUNC}", hint="start it with `tvm-mpq rpc-server`")
            else:
                error = RpcError(f"RPC session with key '{key}' failed: {_first_line(e)}")
        else:
            try:
                n = int(func(*names, kernel_name, float(timeout_s)))
                log.debug("%s measured on %s: %d instructions", kernel_name, server, n)
                return n, server
            except Exception as e:  # noqa: BLE001
                error = _measure_error(e, key, kernel_name, timeout_s)
    finally:
        # Dropping the last references closes the session; the server deletes its files
        # and registers with the tracker again. (Raised below, outside the `except`, so
        # that no exception context keeps the session alive.)
        sess = func = None
    raise error


def _measure_error(e: BaseException, key: str, kernel_name: str, timeout_s: float
                   ) -> MpqError:
    msg = _remote_message(e)
    if msg is not None:
        return MeasureError(msg)
    if "RPCSessionTimeoutError" in str(e):
        return MeasureError(f"{kernel_name}: the RPC session on a '{key}' server expired "
                            f"({timeout_s + SESSION_SLACK_S:g} s)")
    return RpcError(f"RPC measurement on a '{key}' server failed: {_first_line(e)}")


# --- server --------------------------------------------------------------------------------

_server_id = ""


def _remote_measure_elf(elf_name: str, input_name: str, want_name: str, kernel_name: str,
                        timeout_s: float) -> int:
    from .measure import measure_elf

    workpath = ta.get_global_func("tvm.rpc.server.workpath")
    try:
        return measure_elf(workpath(elf_name), workpath(input_name), workpath(want_name),
                           kernel_name, timeout_s)
    except MpqError as e:
        raise RuntimeError(_REMOTE_TAG + e.one_line()) from None


def _server_info() -> str:
    return _server_id or f"{socket.gethostname()}:{os.getpid()}"


def server_init() -> None:
    """`server_init_callback` of a measurement server: registers tvm_mpq.measure_elf and
    tvm_mpq.server_info in the server process (its sessions are forked from it)."""
    global _server_id
    _server_id = f"{socket.gethostname()}:{os.getpid()}"
    ta.register_global_func(MEASURE_FUNC, _remote_measure_elf)
    ta.register_global_func(INFO_FUNC, _server_info)


def start_server(tracker: tuple[str, int] | None, key: str, host: str = "0.0.0.0",
                 port: int = 9090, port_end: int | None = None,
                 custom_addr: str | None = None, silent: bool = True):
    """A `tvm.rpc.Server` (in its own process) with the tvm_mpq measurement functions,
    registered with `tracker` under `key`; `.port` is the port it bound (the first free one
    in [port, port_end)), `.terminate()` stops it."""
    if tracker is not None:
        _probe(*tracker)
    try:
        return ta.rpc().Server(host=host, port=port, port_end=port_end or port + 100,
                               tracker_addr=tracker, key=key, custom_addr=custom_addr,
                               silent=silent, server_init_callback=server_init)
    except (OSError, ValueError, RuntimeError) as e:
        raise RpcError(f"cannot start an RPC server on {host}:{port}: {_first_line(e)}"
                       ) from None


def start_tracker(host: str = "0.0.0.0", port: int = 9190, port_end: int | None = None,
                  silent: bool = True):
    """A `tvm.rpc.tracker.Tracker` (in its own process); `.port`, `.terminate()`."""
    try:
        tracker_mod = ta.rpc_tracker()
    except ImportError as e:        # tvm.rpc.tracker needs tornado (only the tracker does)
        raise RpcError(f"cannot start an RPC tracker: {_first_line(e)}",
                       hint="pip install tornado") from None
    try:
        return tracker_mod.Tracker(host=host, port=port, port_end=port_end or port + 1,
                                        silent=silent)
    except (OSError, ValueError, RuntimeError) as e:
        raise RpcError(f"cannot start an RPC tracker on {host}:{port}: {_first_line(e)}"
                       ) from None
