"""Distributed measurement through TVM's RPC tracker: on loopback, one tracker and two
measurement servers with the same key (one started in-process with tune.rpc.start_server,
one as `tvm-mpq rpc-server` in a subprocess); remote instruction counts equal the local
ones exactly, both servers measure, and set-up errors are one clear line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import assert_user_error
from tvm_mpq.codegen.kernels import KernelSpec
from tvm_mpq.tune import rpc
from tvm_mpq.tune.measure import LayerBench, MeasureError, measure_elf

KEY = "m7test"
SPEC = KernelSpec("pointwise", (1, 6, 6, 16), (1, 6, 6, 8), w_signed=True)
SCHEDULES = [{"pix": 1}, {"pix": 4, "ch": 2}, {"pix": 2, "ch": 4},
             {"pix": 1, "ch": 2, "unroll": 1}]
# `tvm-mpq ARGS`, with the rpc-server verb whether or not cli.VERBS lists it yet
CLI_CODE = ("import sys\nfrom tvm_mpq import cli\n"
            "if 'rpc-server' not in cli.VERBS: cli.VERBS.append('rpc-server')\n"
            "sys.exit(cli.main(sys.argv[1:]))\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_cmd(*args) -> list[str]:
    return [sys.executable, "-c", CLI_CODE, *map(str, args)]


def wait_for_servers(tracker_port: int, n: int, timeout_s: float = 90) -> None:
    t_end = time.monotonic() + timeout_s
    while True:
        got = rpc.count_servers(("127.0.0.1", tracker_port, KEY))
        if got >= n:
            return
        assert time.monotonic() < t_end, f"only {got} of {n} servers registered"
        time.sleep(0.5)


@pytest.fixture
def cluster(tmp_path):
    """(tracker port, {elf: local count}, bench, CLI server process): a tracker, two
    servers with the same key, the firmware of every schedule and its local count."""
    tracker = rpc.start_tracker("127.0.0.1", free_port())
    proc = server = None
    try:
        # server 2: the CLI verb in a subprocess (its own session: SIGINT reaches it only)
        sport = free_port()
        proc = subprocess.Popen(cli_cmd("rpc-server", "--tracker", f"127.0.0.1:{tracker.port}",
                                        "--key", KEY, "--host", "127.0.0.1", "--port", sport),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        # server 1: in-process API, started while this thread builds the firmware
        box = {}

        def start():
            try:
                box["server"] = rpc.start_server(("127.0.0.1", tracker.port), KEY,
                                                 host="127.0.0.1", port=free_port())
            except Exception as e:  # noqa: BLE001
                box["error"] = e

        th = threading.Thread(target=start)
        th.start()
        bench = LayerBench(SPEC, tmp_path / "bench")
        local = {}
        for sched in SCHEDULES:
            name = "_".join(f"{k}{v}" for k, v in sorted(sched.items()))
            elf = bench.build(sched, tmp_path / "elf" / f"{name}.elf")
            local[elf] = measure_elf(elf, bench.input_path, bench.want_path, bench.kernel_name,
                                     timeout_s=60)
        th.join()
        if "error" in box:
            raise box["error"]
        server = box["server"]
        wait_for_servers(tracker.port, 2)
        yield tracker.port, local, bench, proc
    finally:
        if server is not None:
            server.terminate()
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        tracker.terminate()


def test_two_servers_on_loopback(cluster, tmp_path):
    port, local, bench, proc = cluster
    assert len(set(local.values())) > 1          # the schedules really differ
    rpc_addr = ("127.0.0.1", port, KEY)

    # 8 measurements, 2 at a time: counts equal the local ones, both servers took part
    trials = list(local) * 2

    def one(elf):
        return rpc.measure_remote_info(rpc_addr, elf, bench.input_path, bench.want_path,
                                       bench.kernel_name, 60)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, trials))
    assert [n for n, _ in results] == [local[elf] for elf in trials]
    assert len({who for _, who in results}) == 2, results
    elf = trials[0]
    assert rpc.measure_remote(rpc_addr, elf, bench.input_path, bench.want_path,
                              bench.kernel_name, 60) == local[elf]

    # a failed measurement on the server is a failed trial (MeasureError)
    bad = tmp_path / "want.bin"
    bad.write_bytes(bytes(len(bench.want_path.read_bytes())))
    with pytest.raises(MeasureError, match="differs from the golden model"):
        rpc.measure_remote(rpc_addr, elf, bench.input_path, bad, bench.kernel_name, 60)
    with pytest.raises(MeasureError, match="did not finish within"):
        rpc.measure_remote(rpc_addr, elf, bench.input_path, bench.want_path,
                           bench.kernel_name, 0.001)

    # no server for the key: one clear line, at once
    with pytest.raises(rpc.RpcError) as e:
        rpc.measure_remote(("127.0.0.1", port, "nosuchkey"), elf, bench.input_path,
                           bench.want_path, bench.kernel_name, 60)
    assert e.value.one_line().startswith(
        f"no RPC server with key 'nosuchkey' on tracker 127.0.0.1:{port}")

    # the tuner through the tracker: MetaSchedule trials measured on both servers, 2 at
    # a time; the counts are the local ones
    from tvm_mpq.tune.tuner import tune_layers

    recs = tune_layers([("l0", SPEC)], trials=4, records_path=tmp_path / "r.json",
                       rpc=rpc_addr, progress=lambda s: None)
    (w,) = recs.workloads.values()
    assert 2 <= w["trials"] <= 4          # the search may stop early on a small space
    by_name = {"_".join(f"{k}{v}" for k, v in sorted(s.items())): n
               for s, n in zip(SCHEDULES, local.values())}
    for t in (tmp_path / "r.json.work" / "trials.jsonl").read_text().splitlines():
        import json
        t = json.loads(t)
        full = "_".join(f"{k}{v}" for k, v in sorted(t["schedule"].items()))
        for name, n in by_name.items():      # a schedule measured locally above
            if all(part in full.split("_") for part in name.split("_")) and \
                    len(name.split("_")) == 3:
                assert t["instructions"] == n

    # the CLI server stops cleanly on Ctrl-C
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert f"key '{KEY}'" in stdout and "rpc-server: stopped" in stdout


def test_unreachable_tracker_is_one_line_error(tmp_path):
    dead = free_port()
    f = tmp_path / "x"
    f.write_bytes(b"x")
    t0 = time.monotonic()
    with pytest.raises(rpc.RpcError) as e:
        rpc.measure_remote(("127.0.0.1", dead, KEY), f, f, f, "k", 60)
    assert time.monotonic() - t0 < 15
    assert e.value.one_line().startswith(f"cannot reach the RPC tracker 127.0.0.1:{dead}")
    # the CLI verb: a user error (exit 2, one line on stderr)
    p = subprocess.run(cli_cmd("rpc-server", "--tracker", f"127.0.0.1:{dead}", "--key", KEY),
                       capture_output=True, text=True, timeout=120)
    assert_user_error(p, "cannot reach the RPC tracker")
