"""Runner execution: calls sent to the runner service (a BentoML dependency whose batchable
``run`` API merges concurrent calls and executes them with
:func:`~adapters.runtime.predict_batch`).

A call of more than ``chunk_rows`` rows (8,192: each chunk costs a hop, so chunks are larger
than in process) is sent as consecutive chunks, so other models' calls are batched between them
instead of waiting behind the whole of it. A runner that cannot be
reached, or that readiness found down, is a 503 with ``Retry-After``; a call already on its way
to a runner that dies or hangs ends at the request deadline (504); a runner over its batching
latency budget is a 503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

import anyio
from bentoml.exceptions import BentoMLException

from .codecs import Array
from .errors import NotReady, Overloaded
from .registry import ModelVersion
from .runtime import Result, join_outputs, row_chunks, unwrap


class RunnerClient:
    """Calls to the runner service (its ``bentoml.depends`` client).

    Readiness asks the runner, bounded by ``ready_timeout_s``, at most every ``ready_ttl_s``:
    the answer is the last one known while a fresh one is fetched in the background, so a health
    probe never waits on a busy runner, and a runner that dies or hangs stops being ready within
    ``ready_ttl_s + ready_timeout_s``. A runner not (or no longer) ready is asked more often and
    waited for less (``retry_s``, ``retry_timeout_s``): one still starting answers as soon as its
    worker is up (its socket accepts before then, so a long check would only wait), and the
    gateway turns ready within a fraction of a second of it.
    """

    def __init__(
        self,
        runner: Any,
        *,
        apis: Mapping[str, str] | None = None,
        ready_ttl_s: float = 1.0,
        ready_timeout_s: float = 2.0,
        retry_s: float = 0.1,
        retry_timeout_s: float = 0.25,
        chunk_rows: int = 8192,
        clock: Callable[[], float] = time.monotonic,
    ):
        import aiohttp  # here, not at module level: only a gateway with a runner pays for it

        self.runner = runner
        self.apis = dict(apis or {})  # model name -> its own batchable API; others: "run"
        self._disconnected: type[Exception] = aiohttp.ClientConnectionError
        self.ready_ttl_s = ready_ttl_s
        self.ready_timeout_s = ready_timeout_s
        self.retry_s = retry_s
        self.retry_timeout_s = retry_timeout_s
        self.chunk_rows = chunk_rows
        self.clock = clock  # when readiness was last asked; a test's own clock
        self._known: bool | None = None  # the last answer; None before the first
        self._checked_at = float("-inf")
        self._checking: asyncio.Task[None] | None = None

    def preload_sync(self, tags: Sequence[str]) -> None:
        """Nothing to do here: each runner worker loads a version it lacks on first use."""

    async def preload(self, tags: Sequence[str]) -> None:
        """Nothing to do here: each runner worker loads a version it lacks on first use."""

    def forget(self, tags: Sequence[str]) -> None:
        """The runner keeps what it loaded (a call may still be on its way)."""

    async def predict(
        self, version: ModelVersion, methods: tuple[str, ...], rows: Array
    ) -> dict[str, Array]:
        if len(rows) <= self.chunk_rows:
            return unwrap(await self._call(version, methods, rows))
        chunks = row_chunks(rows, self.chunk_rows)  # one after another: others batch in between
        return join_outputs([unwrap(await self._call(version, methods, c)) for c in chunks])

    async def _call(self, version: ModelVersion, methods: tuple[str, ...], rows: Array) -> Result:
        if self._known is False and not await self.ready():
            # NOTE: BentoML's arbiter keeps a dead runner's socket open until it restarts it, so a
            # call would wait for the restart; once readiness says down, fail fast instead.
            raise NotReady(
                f"the runner of model '{version.name}' is not ready, retry later",
                headers={"Retry-After": "1"},
            )
        call = [(version.tag, methods, rows)]
        run = getattr(self.runner.to_async, self.apis.get(version.name, "run"))
        try:
            try:
                (result,) = await run(call)
            except self._disconnected:
                # NOTE: the runner's server closes idle keep-alive connections; a call racing
                # that close fails before it is read, so it is sent once more (predict has no
                # side effects).
                (result,) = await run(call)
        except self._disconnected:
            self._known = False
            raise NotReady(
                f"the runner of model '{version.name}' cannot be reached, retry later",
                headers={"Retry-After": "1"},
            ) from None
        except BentoMLException as exc:
            if exc.error_code == HTTPStatus.SERVICE_UNAVAILABLE:
                raise Overloaded(
                    f"the runner of model '{version.name}' is overloaded, retry later"
                ) from None
            raise
        return result  # type: ignore[no-any-return]

    async def ready(self) -> bool:
        ttl = self.ready_ttl_s if self._known else self.retry_s
        stale = self.clock() - self._checked_at >= ttl
        if stale and self._checking is None:
            self._checking = asyncio.get_running_loop().create_task(self._check())
        if self._known is None and self._checking is not None:
            await asyncio.shield(self._checking)  # nothing known yet: wait for the first answer
        return bool(self._known)

    async def _check(self) -> None:
        timeout = self.ready_timeout_s if self._known else self.retry_timeout_s
        try:
            with anyio.fail_after(timeout):
                self._known = bool(await self.runner.to_async.ready())
        except Exception:  # not up, gone or hung: connection refused, timeout, 503
            self._known = False
        finally:
            self._checked_at = self.clock()
            self._checking = None
