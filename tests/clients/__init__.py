"""Stock V2 clients, each call in a process of its own (:mod:`tests.clients.call`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent


def printed_json(argv: list[str], *, env: dict[str, str] | None = None) -> Any:
    """Run ``argv`` from the repository, in a process of its own; the JSON of its last line."""
    done = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def answers(client: str, address: str, calls: list[dict[str, Any]]) -> list[Any]:
    """Each of ``calls`` through ``client`` (``triton-grpc``, ``kserve-rest``, ...) at
    ``address``, as :mod:`tests.clients.call` prints them: outputs or ``{"error"}``."""
    argv = [sys.executable, "-m", "tests.clients.call", client, address, json.dumps(calls)]
    got: list[Any] = printed_json(argv)
    return got
