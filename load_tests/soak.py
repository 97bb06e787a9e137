"""``make soak``: the locust scenarios at saturation for ten minutes, then two verdicts.

Starts a server of its own on a free port (training the default models first if the store has
none, as ``make load`` does), runs the ``make load`` scenarios (``load_tests/run.py``) against
it with enough users to keep it saturated (64 by default, no think time beyond the scenarios'
0-50 ms: on a 2-core host the server and the locust process keep both cores busy), and samples
the server's process tree (gateway, runner and watcher processes: ``liveserver.tree_memory_mib``,
plus their CPU, and the host's CPU) every second in a thread. It asserts:

1. **no failed request**: the aggregated ``Failure Count`` of locust's CSV is 0 and locust
   exited 0 (the p99 limit of ``make load`` is lifted: at saturation latency is queueing; the
   p99 is reported, not judged);
2. **flat memory**: the process tree's RSS at the end (median of the last ``--window`` seconds
   of samples) is within ``--tolerance`` (10 %) of its RSS after the first minute (median of
   the ``--window`` seconds up to ``--warmup``, 60 s), up or down: a leak grows it, a worker
   that died and came back shrinks it.

3. **new versions load under load** (``--new-version-every``, 60 s by default; ``0`` turns it
   off): the server polls the store (``OIP_POLL_INTERVAL_S=5`` unless set), and a thread trains
   a new ``iris`` version every so often (``train.py``, a weak ``C`` so that ``best`` never moves
   to it: only ``latest`` does); each must appear in the server's metadata within 60 s. So that
   no run writes versions into your store, the server then serves a store of the soak's own,
   trained at start (``<out>/bentoml-home``).

For a short run (``--time 30s``) the warm-up is a quarter of the run. Everything goes to
``results/soak/<timestamp>/`` (or ``--out``): locust's HTML and CSV reports, ``server.log``,
``memory.csv`` (one row per sample) and ``verdict.json``. Exits 0 when both hold, 1 when
either fails, 2 when no server could be started. Server settings come from the environment
(e.g. ``OIP_WORKERS=2``, ``OIP_PLACEMENT=runner``).

    python load_tests/soak.py [--time 10m] [--users 64] [--spawn-rate N] [--models ...]
                              [--warmup 60] [--window 10] [--tolerance 0.10] [--out DIR]
                              [--new-version-every 60]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script, sys.path[0] is load_tests/
    sys.path.append(str(ROOT))

import liveserver  # noqa: E402
from load_tests import run  # noqa: E402

NO_P99_LIMIT_MS = "1e12"
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # this machine: no proxy


@dataclass(frozen=True)
class Sample:
    """One look at the server's process tree, ``t_s`` seconds after the load started."""

    t_s: float
    rss_mib: float
    pss_mib: float
    processes: int
    cpu_cores: float  # CPU seconds the tree used since the previous sample, per second
    host_cpu_pct: float  # the whole machine (load generator too) since the previous sample


def parse_duration_s(text: str) -> float:
    """Locust's ``--run-time`` syntax (``10m``, ``1h30m``, ``45s``, ``90``) in seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+)\s*([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", text):
        raise argparse.ArgumentTypeError(f"not a duration like 10m, 1h30m or 45s: {text!r}")
    return float(sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts))


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0
    total = 0.0
    for p in procs:
        try:
            times = p.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += times.user + times.system
    return total


class Sampler(threading.Thread):
    """Samples the process tree of ``pid`` every ``interval_s`` until :meth:`stop`."""

    def __init__(self, pid: int, interval_s: float) -> None:
        super().__init__(name="soak-sampler", daemon=True)
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self._done = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        last_t, last_cpu = start, tree_cpu_s(self.pid)
        psutil.cpu_percent(interval=None)  # starts the host-wide measurement
        while True:
            memory = liveserver.tree_memory_mib(self.pid)
            now, cpu = time.monotonic(), tree_cpu_s(self.pid)
            busy = max(cpu - last_cpu, 0.0) / (now - last_t) if now > last_t else 0.0
            self.samples.append(
                Sample(
                    t_s=round(now - start, 3),
                    rss_mib=round(memory["rss_mib"], 2),
                    pss_mib=round(memory["pss_mib"], 2),
                    processes=memory["processes"],
                    cpu_cores=round(busy, 3),
                    host_cpu_pct=psutil.cpu_percent(interval=None),
                )
            )
            last_t, last_cpu = now, cpu
            if self._done.wait(self.interval_s):
                return

    def stop(self) -> list[Sample]:
        self._done.set()
        self.join()
        return self.samples


class NewVersions(threading.Thread):
    """Trains a new ``iris`` version every ``every_s`` into the served store, and checks that the
    server (polling the store) serves each within ``deadline_s``; every failure is kept."""

    C_VALUES = ("0.001", "0.0015", "0.002")  # weak: accuracy far below the first version's

    def __init__(self, url: str, every_s: float, deadline_s: float = 60.0) -> None:
        super().__init__(name="soak-new-versions", daemon=True)
        self.url, self.every_s, self.deadline_s = url, every_s, deadline_s
        self.trained: list[str] = []
        self.served: list[str] = []
        self.errors: list[str] = []
        self._done = threading.Event()

    def run(self) -> None:
        try:
            while not self._done.wait(self.every_s):
                self._one(self.C_VALUES[len(self.trained) % len(self.C_VALUES)])
        except Exception as exc:  # kept for the verdict, never lost with the thread
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _one(self, c: str) -> None:
        done = subprocess.run(
            [sys.executable, "train.py", "--model", "iris", "--param", f"C={c}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        found = re.search(r"iris:([a-z0-9]+)", done.stdout)
        if done.returncode != 0 or found is None:
            self.errors.append(f"training failed ({done.returncode}): {done.stderr[-500:]}")
            return
        version = found.group(1)
        self.trained.append(version)
        deadline = time.monotonic() + self.deadline_s
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError, ValueError),
                DIRECT.open(f"{self.url}/v2/models/iris", timeout=10) as r,
            ):
                if version in json.loads(r.read())["versions"]:
                    self.served.append(version)
                    return
            time.sleep(0.5)
        self.errors.append(f"iris:{version} was not served within {self.deadline_s:g} s")

    def stop(self) -> dict[str, object]:
        self._done.set()
        self.join(timeout=600)
        return {
            "ok": not self.errors and self.trained == self.served,
            "every_s": self.every_s,
            "trained": len(self.trained),
            "served": len(self.served),
            "errors": self.errors,
        }


def memory_verdict(
    samples: list[Sample], *, warmup_s: float, window_s: float, tolerance: float
) -> dict[str, object]:
    """Baseline: median RSS of the samples in ``[warmup_s - window_s, warmup_s]``; end: median
    RSS of the last ``window_s`` seconds. Flat when ``|end - baseline| <= tolerance * baseline``.
    """
    if not samples:
        return {"ok": False, "reason": "no memory samples"}
    last_t = samples[-1].t_s
    base = [s.rss_mib for s in samples if warmup_s - window_s <= s.t_s <= warmup_s]
    end = [s.rss_mib for s in samples if s.t_s >= last_t - window_s]
    if not base or not end or last_t <= warmup_s:
        return {"ok": False, "reason": f"too few samples for a {warmup_s:g} s warm-up"}
    baseline, final = statistics.median(base), statistics.median(end)
    change = (final - baseline) / baseline
    return {
        "ok": abs(change) <= tolerance,
        "baseline_rss_mib": round(baseline, 1),
        "baseline_window_s": [round(max(warmup_s - window_s, 0.0), 1), round(warmup_s, 1)],
        "end_rss_mib": round(final, 1),
        "end_window_s": [round(max(last_t - window_s, 0.0), 1), round(last_t, 1)],
        "change_pct": round(100 * change, 2),
        "tolerance_pct": round(100 * tolerance, 2),
        "min_rss_mib": round(min(s.rss_mib for s in samples), 1),
        "max_rss_mib": round(max(s.rss_mib for s in samples), 1),
    }


def locust_totals(out: Path) -> dict[str, float]:
    """The ``Aggregated`` row of locust's ``load_stats.csv`` (empty if locust wrote none)."""
    path = out / "load_stats.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    total = rows.get("Aggregated")
    if total is None:
        return {}
    return {
        "requests": int(total["Request Count"]),
        "failures": int(total["Failure Count"]),
        "rps": round(float(total["Requests/s"]), 1),
        "p50_ms": float(total["50%"]),
        "p99_ms": float(total["99%"]),
    }


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--time", default=env("SOAK_TIME", "10m"), help="locust --run-time")
    p.add_argument("--users", type=int, default=int(env("SOAK_USERS", "64")))
    p.add_argument("--spawn-rate", type=float, default=None, help="default: all users in 1 s")
    p.add_argument("--models", default=env("SOAK_MODELS", env("LOAD_MODELS", "iris,diabetes,text")))
    p.add_argument("--warmup", type=float, default=60.0, help="s; default min(60, a quarter)")
    p.add_argument("--window", type=float, default=10.0, help="s of samples per median")
    p.add_argument("--tolerance", type=float, default=0.10)
    p.add_argument("--sample-s", type=float, default=1.0)
    p.add_argument("--out", type=Path, default=None, help="default results/soak/<timestamp>")
    p.add_argument(
        "--new-version-every",
        type=float,
        default=float(env("SOAK_NEW_VERSION_EVERY", "60")),
        help="s between new iris versions trained into the served store (0: none)",
    )
    args = p.parse_args(argv)

    duration_s = parse_duration_s(args.time)
    warmup_s = min(args.warmup, duration_s / 4)
    window_s = min(args.window, warmup_s / 2)
    out = args.out or ROOT / "results" / "soak" / datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{liveserver.free_port()}"
    print(f"soak: {args.time} at {args.users} users against {url}; results in {out}", flush=True)
    churn = args.new_version_every > 0
    if churn:  # the soak's own store: new versions never land in yours
        os.environ["BENTOML_HOME"] = str(out / "bentoml-home")
        os.environ.setdefault("OIP_POLL_INTERVAL_S", "5")
    try:
        server = run.start_server(url, args.models, out / "server.log")
    except liveserver.ServerStartError as err:
        print(f"soak: could not start a server: {err}", file=sys.stderr)
        return 2

    sampler = Sampler(server.proc.pid, args.sample_s)
    versions = NewVersions(url, args.new_version_every)
    try:
        sampler.start()
        if churn:
            versions.start()
        load_argv = [
            *("--url", url, "--users", str(args.users), "--time", args.time),
            *("--spawn-rate", str(args.spawn_rate or args.users)),
            *("--models", args.models),
            *("--max-p99-ms", NO_P99_LIMIT_MS, "--out", str(out)),
        ]
        locust_code = run.main(load_argv)
    finally:
        try:
            samples = sampler.stop()
            new_versions = versions.stop() if churn else {"ok": True, "every_s": 0}
        finally:
            liveserver.stop(server.proc, grace_s=30.0)

    with (out / "memory.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(Sample.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(s) for s in samples)
    totals = locust_totals(out)
    failures_ok = locust_code == 0 and totals.get("failures") == 0 and totals["requests"] > 0
    memory = memory_verdict(samples, warmup_s=warmup_s, window_s=window_s, tolerance=args.tolerance)
    loaded = [s for s in samples if s.t_s >= warmup_s]
    busy = [s.cpu_cores for s in loaded]
    host = [s.host_cpu_pct for s in loaded]
    verdict = {
        "ok": bool(failures_ok and memory["ok"] and new_versions["ok"]),
        "time": args.time,
        "users": args.users,
        "models": args.models,
        "locust_exit_code": locust_code,
        "failures_ok": failures_ok,
        "locust": totals,
        "memory": memory,
        "new_versions": new_versions,
        "placement": os.environ.get("OIP_PLACEMENT", "inprocess"),
        "server_cpu_cores_mean": round(statistics.fmean(busy), 2) if busy else None,
        "host_cpu_pct_mean": round(statistics.fmean(host), 1) if host else None,
        "host_cores": os.cpu_count(),
        "samples": len(samples),
    }
    (out / "verdict.json").write_text(json.dumps(verdict, indent=2) + "\n")
    print(
        f"soak: requests {totals.get('requests')} ({totals.get('rps')}/s), failures "
        f"{totals.get('failures')}, p99 {totals.get('p99_ms')} ms; server CPU "
        f"{verdict['server_cpu_cores_mean']} cores, host CPU {verdict['host_cpu_pct_mean']} % "
        f"of {os.cpu_count()} cores (after the warm-up)"
    )
    reason = f": {memory['reason']}" if "reason" in memory else ""
    print(
        f"soak: RSS {memory.get('baseline_rss_mib')} MiB after {warmup_s:g} s -> "
        f"{memory.get('end_rss_mib')} MiB at the end ({memory.get('change_pct')} %, "
        f"limit ±{100 * args.tolerance:g} %){reason}"
    )
    if churn:
        print(
            f"soak: new iris versions: {new_versions['trained']} trained, "
            f"{new_versions['served']} served by polling; errors {new_versions['errors'] or 0}"
        )
    print(
        f"soak: {'PASS' if verdict['ok'] else 'FAIL'} (failures "
        f"{'ok' if failures_ok else 'FAILED'}, memory {'flat' if memory['ok'] else 'NOT flat'}, "
        f"new versions {'ok' if new_versions['ok'] else 'FAILED'}); {out / 'verdict.json'}"
    )
    return 0 if verdict["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
