"""Model steps the tests control: a deliberately slow, CPU-bound one (the concurrency tests), one
held on a file (calls queued across an unload or a delete), one made heavy (memory under churn).

Pickled by reference into a real scikit-learn pipeline saved in the test store, and imported by
the server processes (they run from the repository root), so the server runs real Python code
that holds the GIL for as long as a heavy model would.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

SECONDS_PER_ROW = 0.002


def burn(X: Any) -> Any:
    """Spin the CPU for ``SECONDS_PER_ROW`` per input row, then pass the rows through."""
    deadline = time.perf_counter() + SECONDS_PER_ROW * len(X)
    spins = 0
    while time.perf_counter() < deadline:
        spins += 1
    return X


def held(X: Any, gate: str) -> Any:
    """Pass the rows through, but while the file ``gate`` exists: create ``<gate>.entered``,
    then wait until the test removes ``gate`` (at most 60 s). The test thereby holds one predict
    running for as long as it needs to queue other calls behind it.

    Every call also burns 2 ms of CPU, so the in-process executor (which times a call by its CPU
    time) never judges this model quick enough to run inline on the event loop, where a held
    predict would stop the whole server.
    """
    cpu_spent = time.thread_time() + 0.002
    while time.thread_time() < cpu_spent:
        pass
    hold = Path(gate)
    if hold.exists():
        Path(f"{gate}.entered").touch()
        deadline = time.monotonic() + 60
        while hold.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    return X


def ballast(X: Any, weight: Any) -> Any:
    """Pass the rows through; ``weight`` (a large array in the step's ``kw_args``) only makes
    the estimator big, so that keeping a copy too many shows in the server's memory."""
    return X


def picky(X: Any) -> Any:
    """Pass the rows through, but refuse a row of zeros: the input a warm-up derives from a
    numeric signature, so a version of it saved without a sample fails its warm-up."""
    import numpy as np

    if len(X) and not np.asarray(X).any(axis=1).all():
        raise ValueError("a row of zeros is refused")
    return X


def tally(X: Any, path: str) -> Any:
    """Pass the rows through and append one line per call to ``path``: the calls it answered,
    whichever process ran them."""
    with open(path, "a", encoding="utf-8") as file:
        file.write(f"{len(X)}\n")
    return X
