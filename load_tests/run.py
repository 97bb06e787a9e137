"""``make load``: run the locust scenarios headless and write HTML and CSV reports.

If nothing answers at the URL and it is this machine's default (http://127.0.0.1:3000), a server
is started for the run (training the default models first if the store has none) and stopped
after. Exits non-zero when any request failed or the p99 is over the threshold.

    python load_tests/run.py [--url URL] [--users N] [--spawn-rate N] [--time 30s]
                             [--max-p99-ms MS] [--models iris,diabetes,text] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def is_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start_server(url: str, models: str, log: Path) -> subprocess.Popen[bytes]:
    """Train if needed, then ``bentoml serve`` on the URL's port; returns once ready."""
    parsed = urlparse(url)
    env = {**os.environ, "OIP_MODELS": models}
    subprocess.run([BIN / "python", "train.py", "--if-empty"], cwd=ROOT, env=env, check=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                BIN / "bentoml",
                "serve",
                "service:Gateway",
                "--host",
                parsed.hostname or "127.0.0.1",
                "--port",
                str(parsed.port or 80),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited; see {log}")
        if is_ready(url):
            return proc
        time.sleep(0.25)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit(f"the server was not ready in 120 s; see {log}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--url", default=os.environ.get("LOAD_URL", "http://127.0.0.1:3000"))
    p.add_argument("--users", type=int, default=int(os.environ.get("LOAD_USERS", "20")))
    p.add_argument("--spawn-rate", type=float, default=10.0)
    p.add_argument("--time", default=os.environ.get("LOAD_TIME", "30s"))
    p.add_argument(
        "--max-p99-ms", type=float, default=float(os.environ.get("LOAD_MAX_P99_MS", "1000"))
    )
    p.add_argument("--models", default=os.environ.get("LOAD_MODELS", "iris,diabetes,text"))
    p.add_argument("--out", type=Path, default=None, help="default results/load/<timestamp>")
    args = p.parse_args(argv)

    out = args.out or ROOT / "results" / "load" / datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    server = None
    if not is_ready(args.url):
        if args.url.rstrip("/") != "http://127.0.0.1:3000":
            print(f"load: nothing ready at {args.url}", file=sys.stderr)
            return 2
        print("load: no server at the default URL, starting one for this run")
        server = start_server(args.url, args.models, out / "server.log")
    env = {**os.environ, "LOAD_MODELS": args.models, "LOAD_MAX_P99_MS": str(args.max_p99_ms)}
    cmd = [
        str(BIN / "locust"),
        "-f",
        str(ROOT / "load_tests" / "locustfile.py"),
        "--headless",
        "--host",
        args.url,
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate),
        "--run-time",
        args.time,
        "--stop-timeout",
        "5",
        "--only-summary",
        "--csv",
        str(out / "load"),
        "--html",
        str(out / "report.html"),
    ]
    try:
        code = subprocess.run(cmd, env=env, timeout=3600).returncode
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    print(f"load: reports in {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
