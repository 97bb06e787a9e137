"""Concurrent clients sending one inference request in a loop until stopped, every answer
recorded: the load under which hot loads and runner faults are tested.

Every thread a test starts is a :class:`Recorded` thread: an exception ends that thread but is
kept, and :func:`join_all` raises it (with every other one) in the test, so a client that died
can never leave the test to pass on what the other clients saw. (``filterwarnings`` in
pyproject.toml also turns pytest's unhandled-thread-exception warning into an error, for any
thread started some other way.)
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import httpx

IRIS_ROW = {
    "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]
}


class Recorded(threading.Thread):
    """A thread that keeps the exception that ended it (``error``, with its traceback)."""

    def __init__(self, target: Callable[[], Any], name: str | None = None) -> None:
        super().__init__(target=target, name=name, daemon=True)
        self.error: str | None = None

    def run(self) -> None:
        try:
            super().run()
        except BaseException:
            self.error = traceback.format_exc()


def join_all(threads: Sequence[Recorded], timeout_s: float = 60.0) -> None:
    """Join every thread; fail if any raised or is still running after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(timeout=max(deadline - time.monotonic(), 0.0))
    problems = [f"{t.name} raised:\n{t.error}" for t in threads if t.error is not None]
    problems += [f"{t.name} still running after {timeout_s:g} s" for t in threads if t.is_alive()]
    if problems:
        raise AssertionError("\n".join(problems))


class Traffic:
    """``with Traffic(url, path) as traffic:`` ... then read ``statuses``, ``versions`` (of the
    200s), ``failures`` (status and text of the others) and ``slowest`` (seconds). Leaving the
    block fails the test if any client thread raised (a connection error, a non-JSON 200)."""

    def __init__(self, url: str, path: str, body: Any = IRIS_ROW, *, clients: int = 4) -> None:
        self.url, self.path, self.body = url, path, body
        self.stop = threading.Event()
        self.statuses: list[int] = []
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []
        self.slowest = 0.0
        self.threads = [Recorded(self.run, name=f"client-{i}") for i in range(clients)]

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30, trust_env=False) as c:
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
        join_all(self.threads)
