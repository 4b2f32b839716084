"""`tvm-mpq rpc-server`: a TVM RPC server that measures tuning trials on this machine."""

from __future__ import annotations

import signal
import sys
import time

from ..errors import MpqError
from .common import out, verb_parser


def register(sub) -> None:
    p = verb_parser(
        sub, "rpc-server",
        "serve tuning measurements on this machine (QEMU) to `tvm-mpq tune --rpc-tracker`: "
        "a TVM RPC server registered with a TVM RPC tracker under a device key",
        "  # one tracker, on any machine the others can reach:\n"
        "  python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port 9190\n"
        "  # one server per machine (or per board), all with the same key:\n"
        "  tvm-mpq rpc-server --tracker 10.0.0.5:9190 --key qemu_m7\n"
        "  tvm-mpq rpc-server --tracker 10.0.0.5:9190 --key qemu_m7 --port 9091\n"
        "  # the tuner spreads its measurements over them:\n"
        "  tvm-mpq tune q.onnx -o q.tune.json --rpc-tracker 10.0.0.5:9190 --rpc-key qemu_m7\n"
        "  # or start the tracker and a first server together, on this machine (give its\n"
        "  # address as the others reach it; 127.0.0.1 for a single-machine set-up):\n"
        "  tvm-mpq rpc-server --start-tracker --tracker 10.0.0.5:9190 --key qemu_m7\n"
        "  # which servers are registered:\n"
        "  python -m tvm.exec.query_rpc_tracker --host 10.0.0.5 --port 9190\n"
        "\n"
        "The server runs one measurement at a time, each in a fresh session (its own work\n"
        "directory, removed afterwards); start several servers for parallel measurements.\n"
        "It needs qemu-system-arm here; the firmware is built by the tuning machine.\n"
        "Stop it with Ctrl-C. TVM RPC executes what clients send: use it on a trusted\n"
        "network only.\n")
    p.add_argument("--tracker", required=True, metavar="HOST:PORT",
                   help="the TVM RPC tracker to register with")
    p.add_argument("--key", required=True,
                   help="device key the tuner asks for (`tune --rpc-key`), e.g. qemu_m7")
    p.add_argument("--host", default="0.0.0.0",
                   help="address to listen on (default 0.0.0.0: all interfaces)")
    p.add_argument("--port", type=int, default=9090,
                   help="port to listen on; the next free one up to PORT+99 if taken "
                        "(default 9090)")
    p.add_argument("--custom-addr", metavar="ADDR",
                   help="the address the tracker gives clients for this server (default: "
                        "the one the tracker sees; set it behind NAT)")
    p.add_argument("--start-tracker", action="store_true",
                   help="also start a tracker on this machine, on the --tracker port")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..tune import rpc

    host, port = rpc.parse_host_port(args.tracker, "--tracker")
    if not args.key.strip() or any(c.isspace() for c in args.key):
        raise MpqError(f"--key {args.key!r}: expected a non-empty name without spaces")
    tracker = server = None
    _interrupt_on(signal.SIGTERM, signal.SIGHUP)   # also stop cleanly when killed
    try:
        if args.start_tracker:
            tracker = rpc.start_tracker("0.0.0.0", port)
            out(f"tracker listening on 0.0.0.0:{tracker.port}")
        server = rpc.start_server((host, port), args.key, host=args.host, port=args.port,
                                  custom_addr=args.custom_addr)
        out(f"rpc-server: key '{args.key}' on {args.host}:{server.port}, registered with "
            f"tracker {host}:{port} (Ctrl-C to stop)")
        sys.stdout.flush()
        while server.proc is not None and server.proc.is_alive():
            time.sleep(1)
        raise MpqError("the RPC server process exited")
    except KeyboardInterrupt:
        out("rpc-server: stopped")
        return 0
    finally:
        if server is not None:
            server.terminate()
        if tracker is not None:
            tracker.terminate()


def _interrupt_on(*signums) -> None:
    """Turn these signals into KeyboardInterrupt (Ctrl-C), so that the tracker's and the
    server's worker processes are stopped with this one; also undo an inherited SIG_IGN
    of SIGINT (a server started with `&` from a script)."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    for s in (signal.SIGINT, *signums):
        signal.signal(s, handler)
