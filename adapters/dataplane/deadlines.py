"""Deadlines of requests without a timer each: one periodic sweep per event loop.

``asyncio.timeout`` schedules a timer handle per use and moves it with each ``reschedule``; for a
small request the request deadline and the body's read timeout cost more than the model's
predict. A :class:`Watch` is a due time on a task instead: :meth:`Sweep.watch` registers it
(a set insertion), the work pushes it back by assigning ``due``, and one sweep of the loop,
every :data:`TICK_S` or sooner, cancels the task of each watch past its due time. Leaving a watch
says whether it expired; the cancellation then is the watch's, turned into the caller's own
error, exactly as ``asyncio.timeout`` turns it into :class:`TimeoutError` (nested watches and
timeouts of one task behave as nested ``asyncio.timeout`` blocks do).

A watch expires between its due time and one tick later: a tick is an eighth of the shortest
watched duration, at most :data:`TICK_S`. The sweep runs only while some watch is registered.
"""

from __future__ import annotations

import asyncio

TICK_S = 0.1


class Watch:
    """A task's due time (``loop.time()`` clock): move ``due`` to push it back."""

    __slots__ = ("cancelling", "due", "expired", "task")

    def __init__(self, task: asyncio.Task[object], due: float) -> None:
        self.task = task
        self.due = due
        self.cancelling = task.cancelling()
        self.expired = False


class Sweep:
    """The watches of one event loop and the timer that checks them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.watches: set[Watch] = set()
        self.tick_s = TICK_S
        self.handle: asyncio.TimerHandle | None = None

    def watch(self, seconds: float) -> Watch:
        """A watch on the current task, due in ``seconds``."""
        task = asyncio.current_task(self.loop)
        if task is None:
            raise RuntimeError("a deadline needs a task")
        watch = Watch(task, self.loop.time() + seconds)
        self.watches.add(watch)
        if seconds / 8 < self.tick_s:
            self.tick_s = max(seconds / 8, 0.001)
            self._restart()
        elif self.handle is None:
            self.handle = self.loop.call_later(self.tick_s, self._tick)
        return watch

    def leave(self, watch: Watch, kind: type[BaseException] | None) -> bool:
        """Unregister ``watch``; True when it expired and the ``kind`` of exception leaving the
        block is its cancellation (the caller raises its own error in its place)."""
        self.watches.discard(watch)
        if not watch.expired:
            return False
        return watch.task.uncancel() <= watch.cancelling and kind is asyncio.CancelledError

    def _restart(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.handle = self.loop.call_later(self.tick_s, self._tick)

    def _tick(self) -> None:
        self.handle = None
        if not self.watches:
            self.tick_s = TICK_S  # the next watch sets it again
            return
        now = self.loop.time()
        for watch in self.watches:
            if not watch.expired and watch.due <= now:
                watch.expired = True
                watch.task.cancel()
        self.handle = self.loop.call_later(self.tick_s, self._tick)


_sweeps: dict[asyncio.AbstractEventLoop, Sweep] = {}


def sweep() -> Sweep:
    """The running loop's sweep (created on first use; a closed loop's is dropped)."""
    loop = asyncio.get_running_loop()
    found = _sweeps.get(loop)
    if found is None:
        for old in [other for other in _sweeps if other.is_closed()]:
            del _sweeps[old]
        found = _sweeps[loop] = Sweep(loop)
    return found
