"""Replicas behind HAProxy on this machine (``deploy/cluster``, ``docs/scaling.md``): three come up
behind the balancer, HTTP and gRPC; a rolling restart replaces every replica's process while wrk
loads HAProxy the whole time, and not one request fails or is answered other than 2xx.

HAProxy and wrk are Debian's; a test that needs them is skipped where they are missing, except
in CI (``CI`` set), where that fails: ``.ci/run`` installs them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from bench.load import write_wrk_script
from deploy.cluster import haproxy, replicas

from .clients import ours
from .conftest import Store, free_port

ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}
BEFORE_S = 5.0  # the load's rate before the restart is measured over this window


def needs(tool: str) -> None:
    """Skip without ``tool`` (fail in CI, which installs it)."""
    found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        missing = f"no {tool}: apt-get install -y {tool} (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)


@pytest.fixture(params=["inprocess", "runner"])
def cluster(
    request: pytest.FixtureRequest, store: Store, tmp_path: Path
) -> Iterator[replicas.Cluster]:
    """``make cluster REPLICAS=3`` serving iris, in one placement, on free ports."""
    needs("haproxy")
    env = {"OIP_MODELS": "iris", "OIP_PLACEMENT": request.param}
    directory = tmp_path / "cluster"
    started = replicas.up(
        directory,
        replicas=3,
        store=store.home,
        env=env,
        lb_port=free_port(),
        lb_grpc_port=free_port(),
    )
    try:
        yield started
    finally:
        replicas.down(directory)


@pytest.mark.e2e
def test_a_rolling_restart_under_load_drops_no_request(
    cluster: replicas.Cluster, tmp_path: Path
) -> None:
    needs("wrk")
    assert cluster.url and len(cluster.replicas) == 3
    before = {r.name: r.pid for r in cluster.replicas}
    assert infer_over_grpc(cluster.grpc_address) == "iris"
    load = start_wrk(f"{cluster.url}/v2/models/iris/infer", tmp_path)
    try:
        # NOTE: wrk opens and closes one connection first, to see that it can connect; HAProxy
        # counts that as a 400 (no request): the counts start after it
        time.sleep(2.0)
        first, start = answers(cluster.directory), time.monotonic()
        time.sleep(BEFORE_S)
        restart_counted, restart_start = haproxy.answered(cluster.directory), time.monotonic()
        turns = replicas.rolling_restart(cluster.directory)
        done_counted, done = haproxy.answered(cluster.directory), time.monotonic()
        last = answers(cluster.directory)  # before wrk stops: it leaves requests unanswered
    finally:
        load.send_signal(signal.SIGINT)  # wrk stops and prints its summary
        output, _ = load.communicate(timeout=60)
    summary = wrk_summary(output)
    rate_before = (restart_counted - first["req_tot"]) / (restart_start - start)
    rate_during = (done_counted - restart_counted) / (done - restart_start)
    print(  # the figures docs/scaling.md quotes (pytest -s, or -rP)
        f"rolling restart: {rate_before:,.0f} req/s before, {rate_during:,.0f} during "
        f"({done - restart_start:.0f} s); {summary['requests']:,} requests; turns "
        + ", ".join(f"{t.name} stop {t.stop_s:.1f} s start {t.start_s:.1f} s" for t in turns)
    )

    assert [t.name for t in turns] == ["r1", "r2", "r3"]
    for turn in turns:  # every replica's process replaced, the old one gone
        assert turn.old_pid == before[turn.name] and turn.new_pid != turn.old_pid
        assert not alive(turn.old_pid)
    errors = {k: summary[k] for k in ("status_errors", "connect", "read", "write", "timeout")}
    assert errors == dict.fromkeys(errors, 0), output
    # HAProxy's answers from before the restart to its end: 2xx, and not one other status
    # (wrk's own count above, status_errors, covers the rest of its run)
    answered = {k: last[k] - first[k] for k in last}
    assert answered["hrsp_2xx"] > 0, answered
    assert sum(n for k, n in answered.items() if k.startswith("hrsp_")) == answered["hrsp_2xx"]
    assert rate_during >= 0.5 * rate_before, (rate_before, rate_during)


def answers(directory: Path) -> dict[str, int]:
    """HAProxy's HTTP frontend counters: requests (``req_tot``), answers by status class."""
    frontend = haproxy.stats(directory)["http/FRONTEND"]
    return {k: int(v or 0) for k, v in frontend.items() if k == "req_tot" or k.startswith("hrsp_")}


def start_wrk(url: str, directory: Path) -> subprocess.Popen[str]:
    """wrk POSTing one iris row over 16 connections until it is interrupted (at most 10 min)."""
    body = directory / "row.json"
    body.write_text(json.dumps(ROW))
    script = write_wrk_script(body, {"Content-Type": "application/json"}, directory / "row.lua")
    argv = ["wrk", "-t2", "-c16", "-d600s", "--timeout", "10s", "-s", str(script), url]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wrk_summary(output: str) -> dict[str, int]:
    """The counts wrk's ``done()`` printed (``bench/load.py``'s script)."""
    line = next((ln for ln in output.splitlines() if ln.startswith("BENCHJSON ")), None)
    assert line is not None, output
    return {k: int(v) for k, v in json.loads(line.removeprefix("BENCHJSON ")).items()}


def infer_over_grpc(address: str) -> str:
    """One ModelInfer through HAProxy's gRPC frontend; the model that answered."""
    answer = ours.run("infer", address, "iris", json.dumps(ROW["inputs"][0]["data"]))
    return str(answer.get("model_name", answer))


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
