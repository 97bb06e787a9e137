"""The memory budget (``OIP_MAX_LOADED_VERSIONS``): which served versions keep their estimators
loaded, in one process's executor.

Past the budget, the least recently used versions are evicted: still served, their estimators
freed, loaded again (with their warm-up) by their next call. A version with calls in flight or
queued is never evicted: each call holds its version from before it looks for the estimator
until its answer, queue included (:meth:`Residency.begin`, :meth:`Residency.end`). Eviction is
decided on the event loop; the executors apply it (:mod:`adapters.execution.inprocess` frees
estimators, :mod:`adapters.execution.runner` sends the runner a view without them).
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

from adapters.execution.runtime import Describe, load_estimators
from adapters.protocol.errors import NotReady


class Residency:
    """Recency and calls in flight per tag, and the choice of what to evict.

    Args:
        budget: the most versions to keep loaded; ``0``, no limit (nothing is ever evicted).
    """

    def __init__(self, budget: int = 0) -> None:
        self.budget = budget
        self.busy: Counter[str] = Counter()  # calls in flight or queued, by tag
        self.recency: OrderedDict[str, None] = OrderedDict()  # least recently used first

    def touch(self, tag: str) -> None:
        """``tag`` was used (or loaded) just now."""
        self.recency[tag] = None
        self.recency.move_to_end(tag)

    def begin(self, tag: str) -> None:
        """A call of ``tag`` starts: it is not evicted until :meth:`end`."""
        self.busy[tag] += 1
        self.touch(tag)

    def end(self, tag: str) -> None:
        self.busy[tag] -= 1
        if self.busy[tag] <= 0:
            del self.busy[tag]

    def forget(self, tag: str) -> None:
        """``tag`` is no longer served."""
        self.recency.pop(tag, None)

    def over(self, held: Collection[str]) -> bool:
        return bool(self.budget) and len(held) > self.budget

    def surplus(self, held: Collection[str]) -> list[str]:
        """The least recently used idle tags of ``held`` to evict so that at most ``budget``
        stay (fewer when busy ones are in the way: they stay, over budget, until they end)."""
        if not self.over(held):
            return []
        unused = [tag for tag in held if tag not in self.recency]
        candidates = unused + [tag for tag in self.recency if tag in held]
        idle = [tag for tag in candidates if not self.busy[tag]]
        return idle[: len(held) - self.budget]


class Reloads:
    """Evicted versions being loaded again: one load per tag, shared by the calls that need it,
    each waiting at most its bound; a load outlives the calls that stopped waiting for it."""

    def __init__(self) -> None:
        self.pending: dict[str, asyncio.Future[Any]] = {}

    async def wait(self, tag: str, load: Callable[[], Awaitable[Any]], wait_s: float) -> Any:
        """What ``load`` returns for ``tag``, started unless it is under way.

        Raises:
            NotReady: not done within ``wait_s`` (503, ``Retry-After``); or what ``load`` raised.
        """
        future = self.pending.get(tag)
        if future is None:
            future = self.pending[tag] = asyncio.ensure_future(load())
            future.add_done_callback(lambda done: self._done(tag, done))
        try:
            return await asyncio.wait_for(asyncio.shield(future), wait_s)
        except TimeoutError:
            raise NotReady(
                f"version '{tag}' is being loaded again (evicted under OIP_MAX_LOADED_VERSIONS)"
                f" and was not ready within {wait_s:g} s (OIP_MAX_LATENCY_MS), retry later",
                headers={"Retry-After": "1"},
            ) from None

    def _done(self, tag: str, done: asyncio.Future[Any]) -> None:
        self.pending.pop(tag, None)
        if not done.cancelled():
            done.exception()  # retrieved: every caller may have stopped waiting


def newest_warmed(tags: Sequence[str], budget: int, describe: Describe | None) -> dict[str, Any]:
    """Load and warm up each of ``tags`` (oldest first) one at a time, keeping the newest
    ``budget`` of those that could be: every version is tried once, and no more than
    ``budget + 1`` estimators are held at any moment (a runner worker's start-up)."""
    kept: dict[str, Any] = {}
    for tag in tags:
        loaded, _ = load_estimators([tag], describe)  # a failure is logged by the views' sync
        kept.update(loaded)
        for evicted in list(kept)[: max(len(kept) - budget, 0)]:
            del kept[evicted]
    return kept
