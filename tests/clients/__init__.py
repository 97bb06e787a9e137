"""Stock V2 clients, each call in a process of its own (:mod:`tests.clients.call`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent


def answers(client: str, address: str, calls: list[dict[str, Any]]) -> list[Any]:
    """Each of ``calls`` through ``client`` (``triton-grpc``, ``kserve-rest``, ...) at
    ``address``, as :mod:`tests.clients.call` prints them: outputs or ``{"error"}``."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.clients.call", client, address, json.dumps(calls)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got: list[Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return got
