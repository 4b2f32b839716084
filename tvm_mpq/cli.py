"""`tvm-mpq`: the command-line interface (tvmc-style verbs).

Exit codes: 0 success, 1 failure (a bug or a failed check), 2 user error (bad input,
unsupported model, impossible budget). User errors print one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading

from . import __version__
from .errors import MpqError

# verb -> module in tvm_mpq.commands; each has register(subparsers) and run(args).
VERBS = ["demo", "zoo", "inspect", "plan", "quantize", "train", "compile", "tune", "run",
         "report", "rpc-server"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors: one line, exit 2
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tvm-mpq", description=__doc__.split("\n")[0].strip("`: "),
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="Run `tvm-mpq VERB --help` for a verb's options and examples.")
    p.add_argument("-v", "--verbose", action="store_true", help="more detail on stderr")
    p.add_argument("-q", "--quiet", action="store_true", help="only results and errors")
    p.add_argument("--version", action="version", version=f"tvm-mpq {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    for verb in VERBS:
        importlib.import_module(f".commands.{verb.replace('-', '_')}", __package__).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    # our messages only: libraries keep their own loggers quiet (matplotlib's "generated new
    # fontManager" on a fresh machine is INFO), their warnings still reach stderr
    log = logging.getLogger("tvm_mpq")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
    signalled: list[int] = []

    def on_signal(signum, frame):
        # Ctrl-C or a SIGTERM: unwind (atomic writers remove their temporary files). TVM's
        # FFI turns the KeyboardInterrupt into a RuntimeError when it arrives inside a pass,
        # hence the record of the signal.
        signalled.append(signum)
        raise KeyboardInterrupt

    previous = {} if threading.current_thread() is not threading.main_thread() else {
        s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        rc = args.func(args)
    except MpqError as e:
        print(f"tvm-mpq {args.verb}: error: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        return 0
    except BaseException as e:
        if not (signalled or isinstance(e, KeyboardInterrupt)):
            raise
        print(f"tvm-mpq {args.verb}: interrupted", file=sys.stderr)
        return 128 + (signalled[0] if signalled else signal.SIGINT)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
