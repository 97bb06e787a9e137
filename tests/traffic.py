"""Concurrent clients sending one inference request in a loop until stopped, every answer
recorded: the load under which hot loads and runner faults are tested."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import httpx

IRIS_ROW = {
    "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]
}


class Traffic:
    """``with Traffic(url, path) as traffic:`` ... then read ``statuses``, ``versions`` (of the
    200s), ``failures`` (status and text of the others) and ``slowest`` (seconds). An exception
    in a client thread is recorded in ``errors`` (by thread) and fails the ``with`` block."""

    def __init__(self, url: str, path: str, body: Any = IRIS_ROW, *, clients: int = 4) -> None:
        self.url, self.path, self.body = url, path, body
        self.stop = threading.Event()
        self.statuses: list[int] = []
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []
        self.slowest = 0.0
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self.run) for _ in range(clients)]

    def run(self) -> None:
        try:
            self.send()
        except Exception as exc:
            self.errors.append(f"{threading.current_thread().name}: {exc!r}")

    def send(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as c:
            while not self.stop.is_set():
                start = time.monotonic()
                r = c.post(self.path, json=self.body)
                self.slowest = max(self.slowest, time.monotonic() - start)
                self.statuses.append(r.status_code)
                if r.status_code == 200:
                    self.versions[r.json()["model_version"]] += 1
                else:
                    self.failures.append(f"{r.status_code} {r.text}")

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
        stuck = [t.name for t in self.threads if t.is_alive()]
        if exc[0] is None:
            assert not self.errors and not stuck, (self.errors, stuck)
