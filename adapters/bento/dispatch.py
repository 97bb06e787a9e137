"""The runner's batching decision: a call that finds its API idle leaves at once; calls that arrive
while a batch runs are merged into the next one.

BentoML 1.4's ``CorkDispatcher`` (one per batchable API in each runner worker) decides when a
batch leaves from an estimate of how long batches have waited: the mean wait of the last 50,
refreshed at most every 5 s, and decayed by 5 % per refresh. After a burst of load that estimate
stays high for minutes, and a lone call waits for company that never comes: on this machine a
single client over gRPC got 54 answers a second from iris, ~18 ms each for a sub-millisecond
predict (``docs/performance.md``). Its first calls are also held back to train the estimate.

:class:`EagerDispatcher` keeps everything else of BentoML's: the queue, the batch assembly
(``_get_inputs``: up to ``max_batch_size`` rows, a call split across two batches when it does not
fit), the outbound call and its metrics, one batch at a time per API, and the overload answer (a
call queued for ``max_latency_ms`` is cancelled, which BentoML answers 503). Only the decision is
replaced: send whatever is queued whenever no batch of the API is running. Under load the calls
queue while a batch runs, so batches still fill, as the in-process executor's do
(:mod:`adapters.execution.inprocess`), and nothing ever waits on a timer.

:func:`install` makes BentoML's app factory build these dispatchers (its module global), in the
runner worker only (:class:`~adapters.bento.runners.RunnerService`); :func:`check` is the
start-up check of that seam (:mod:`adapters.bento.seams`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bentoml._internal.marshal.dispatcher import CorkDispatcher

logger = logging.getLogger(__name__)
METHODS = ("controller", "_wake_event", "_loop", "_get_inputs", "outbound_call")
STATE = ("_queue", "_sema", "max_latency")
"""The ``CorkDispatcher`` members :class:`EagerDispatcher` relies on (checked at start-up): those
of the class, and those each instance sets."""


class EagerDispatcher(CorkDispatcher[Any, Any]):
    """BentoML's dispatcher with a batch sent as soon as the API is idle (module docstring)."""

    async def controller(self) -> None:
        while True:
            try:
                async with self._wake_event:  # a call arrived, or a batch ended
                    await self._wake_event.wait_for(self._sendable)
                self._refuse_late()
                if not self._queue or not self._sema.acquire():  # type: ignore[no-untyped-call]
                    continue
                jobs = tuple(self._get_inputs())
                self._loop.create_task(self._send(jobs))
            except Exception:  # as BentoML's own loop: one bad round must not stop the API
                logger.exception("error dispatching a batch")

    def _sendable(self) -> bool:
        return bool(self._queue) and not self._sema.is_locked()  # type: ignore[no-untyped-call]

    def _refuse_late(self) -> None:
        """Calls queued for ``max_latency_ms`` are cancelled: BentoML answers them 503."""
        now = time.time()
        while self._queue and now - self._queue[0].enqueue_time >= self.max_latency:
            self._queue.popleft().future.cancel()

    async def _send(self, jobs: tuple[Any, ...]) -> None:
        try:
            await self.outbound_call(jobs)  # releases the semaphore when the batch ends
        finally:
            async with self._wake_event:
                self._wake_event.notify_all()


def install() -> None:
    """BentoML's app factory builds :class:`EagerDispatcher` for every batchable API of the
    services it builds from now on in this process."""
    from _bentoml_impl.server import app

    app.CorkDispatcher = EagerDispatcher


def check() -> list[str]:
    """What is missing of the seam: the factory's global and the members used."""
    from _bentoml_impl.server import app

    problems = []
    if not isinstance(getattr(app, "CorkDispatcher", None), type):
        problems.append("_bentoml_impl.server.app.CorkDispatcher is gone")
    problems += [f"CorkDispatcher.{m} is gone" for m in METHODS if not hasattr(CorkDispatcher, m)]
    try:  # no event loop needed: the loop and the condition are made on first use
        probe = vars(CorkDispatcher(max_latency_in_ms=1000, max_batch_size=2, fallback=dict))
    except Exception as exc:
        return [*problems, f"CorkDispatcher cannot be made as BentoML makes it ({exc!r})"]
    return problems + [f"CorkDispatcher().{name} is gone" for name in STATE if name not in probe]
