"""A deliberately slow, CPU-bound model step for the concurrency tests.

Pickled by reference into a real scikit-learn pipeline saved in the test store, and imported by
the server processes (they run from the repository root), so the server runs real Python code
that holds the GIL for as long as a heavy model would.
"""

from __future__ import annotations

import time
from typing import Any

SECONDS_PER_ROW = 0.002


def burn(X: Any) -> Any:
    """Spin the CPU for ``SECONDS_PER_ROW`` per input row, then pass the rows through."""
    deadline = time.perf_counter() + SECONDS_PER_ROW * len(X)
    spins = 0
    while time.perf_counter() < deadline:
        spins += 1
    return X
