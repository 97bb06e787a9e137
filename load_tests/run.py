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
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script, sys.path[0] is load_tests/
    sys.path.append(str(ROOT))

import liveserver  # noqa: E402

BIN = Path(sys.executable).parent


def start_server(url: str, models: str, log: Path) -> liveserver.Server:
    """Train if needed, then ``bentoml serve`` on the URL's host and port; returns once ready.

    Raises :class:`liveserver.ServerStartError` (with the log's tail) if it never gets ready.
    """
    parsed = urlparse(url)
    env = {"OIP_MODELS": models}
    subprocess.run(
        [BIN / "python", "train.py", "--if-empty"],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
    )
    return liveserver.serve_gateway(
        log_path=log,
        env=env,
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 80,
        cwd=ROOT,
        deadline_s=120.0,
    )


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
    if not liveserver.is_ready(args.url):
        if args.url.rstrip("/") != "http://127.0.0.1:3000":
            print(f"load: nothing ready at {args.url}", file=sys.stderr)
            return 2
        print("load: no server at the default URL, starting one for this run")
        try:
            server = start_server(args.url, args.models, out / "server.log")
        except liveserver.ServerStartError as err:
            print(f"load: could not start a server: {err}", file=sys.stderr)
            return 2
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
            liveserver.stop(server.proc, grace_s=30.0)
    print(f"load: reports in {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
