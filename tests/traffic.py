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
    200s), ``failures`` (status and text of the others) and ``slowest`` (seconds)."""

    def __init__(self, url: str, path: str, body: Any = IRIS_ROW, *, clients: int = 4) -> None:
        self.url, self.path, self.body = url, path, body
        self.stop = threading.Event()
        self.statuses: list[int] = []
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []
        self.slowest = 0.0
        self.threads = [threading.Thread(target=self.run) for _ in range(clients)]

    def run(self) -> None:
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
