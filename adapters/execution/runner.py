"""Runner execution: calls sent to the runner service (a BentoML dependency whose batchable
``run`` API merges concurrent calls and executes them with
:func:`~adapters.execution.runtime.predict_batch`).

What the runner holds follows what this gateway serves on it (:mod:`adapters.execution.worker`):
every change is sent at once as this process's :class:`~adapters.execution.worker.View` (load:
the runner's workers load the new versions before they are served, and say which could not be;
unload and delete: they free the versions no longer served), and every call carries the view,
so a runner worker that missed a change catches up on its next call.

Under a memory budget (:mod:`adapters.execution.residency`) the view holds the versions this
gateway keeps loaded there: evicting is sending a view without the least recently used idle
ones, and a call of an evicted version first sends a view with it again (every worker loads and
warms it up), waiting at most the model's batching latency budget (then 503, ``Retry-After``).

A call of more than ``chunk_rows`` rows (8,192: each chunk costs a hop) is sent as consecutive
chunks, so other models' calls are batched between them. A runner that cannot be reached, or
that readiness found down, is a 503 with ``Retry-After``. A call on its way to a worker that
dies is sent once more: over the direct lane (:mod:`adapters.execution.lane`) to another
worker's, else 503; over BentoML's HTTP path to whichever worker accepts, waiting for a restart
at most until the deadline (504). A hung runner: the deadline; one over its batching latency
budget: 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

import anyio
from bentoml.exceptions import BentoMLException

from adapters.config.settings import Batching
from adapters.execution.lane import Lane, LaneLost, LaneOverloaded, Lanes
from adapters.execution.residency import Reloads, Residency
from adapters.execution.runtime import Result, join_outputs, row_chunks, unwrap
from adapters.execution.worker import View
from adapters.models.registry import ModelVersion
from adapters.protocol.codecs import Array
from adapters.protocol.errors import NotReady, Overloaded

logger = logging.getLogger(__name__)


class RunnerClient:
    """Calls to the runner service (its ``bentoml.depends`` client).

    Readiness asks the runner, bounded by ``ready_timeout_s``, at most every ``ready_ttl_s``:
    the answer is the last one known while a fresh one is fetched in the background, so a health
    probe never waits on a busy runner, and a runner that dies or hangs stops being ready within
    ``ready_ttl_s + ready_timeout_s``. A runner not (or no longer) ready is asked more often and
    waited for less (``retry_s``, ``retry_timeout_s``): the gateway turns ready within a fraction
    of a second of a starting worker (its socket accepts before it is up).
    """

    placement = "runner"

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
        gateway: int | None = None,
        budget: int = 0,
        batching: Callable[[str], Batching] = lambda name: Batching(),
        lanes: Lanes | None = None,
    ):
        import aiohttp  # here, not at module level: only a gateway with a runner pays for it

        self.runner = runner
        self.apis = dict(apis or {})  # model name -> its own batchable API; others: "run"
        # a connection refused or closed, or an answer cut short (a runner that died while it
        # answered): the runner is not there, whatever aiohttp calls it
        self._disconnected: tuple[type[Exception], ...] = (
            aiohttp.ClientConnectionError,
            aiohttp.ClientPayloadError,
        )
        self.ready_ttl_s = ready_ttl_s
        self.ready_timeout_s = ready_timeout_s
        self.retry_s = retry_s
        self.retry_timeout_s = retry_timeout_s
        self.chunk_rows = chunk_rows
        self.clock = clock  # when readiness was last asked; a test's own clock
        self._known: bool | None = None  # the last answer; None before the first
        self._checked_at = float("-inf")
        self._checking: asyncio.Task[None] | None = None
        if gateway is None:
            from bentoml import server_context

            gateway = server_context.worker_index or 0
        self.view = View(gateway, time.time_ns(), frozenset())  # what it keeps loaded there
        self.served: set[str] = set()  # in the view, or evicted from it under the budget
        self.residency = Residency(budget)
        self.reloads = Reloads()
        self.batching = batching
        self.lanes = lanes  # straight to the runner workers' batching (adapters/execution/lane)
        self._trimming: asyncio.Task[None] | None = None

    def preload_sync(self, tags: Sequence[str]) -> dict[str, str]:
        """At start-up: the runner's workers load the store's servable versions themselves (the
        same set, the newest within the budget), so this is only noted; the first call carries
        it."""
        self._note(tags)
        kept = self.view.tags | set(tags)
        self.view = self._next(kept - set(self.residency.surplus(kept)))
        return {}

    async def preload(self, tags: Sequence[str]) -> dict[str, str]:
        """Every runner worker loads and warms up these versions; returns those some worker
        could not (they are not served, and the workers drop them). Past the budget, the least
        recently used are then evicted."""
        before = self.view.tags
        new = [t for t in tags if t not in self.served]
        wanted = before | set(new)
        if wanted == before:
            return {}
        try:
            failed: dict[str, str] = await self._send(wanted)
            if failed:
                await self._send(wanted - failed.keys())
        except BaseException:
            self.view = self._next(before)  # not served: the next call says so
            raise
        self._note([t for t in new if t not in failed])
        await self._trim()
        return failed

    def _note(self, tags: Sequence[str]) -> None:
        self.served.update(tags)
        for tag in tags:
            self.residency.touch(tag)

    async def forget(self, tags: Sequence[str]) -> None:
        """Every runner worker frees these versions. If the runner cannot be reached now, the
        view without them goes with the next call (and a restarted worker reads it)."""
        self.served.difference_update(tags)
        for tag in tags:
            self.residency.forget(tag)
        remaining = self.view.tags - set(tags)
        if remaining == self.view.tags:
            return
        try:
            await self._send(remaining)
        except Exception as exc:
            logger.warning("the runner could not be told to free %s now: %s", list(tags), exc)

    def resident(self) -> set[str]:
        return set(self.view.tags)

    async def _trim(self) -> None:
        """A view without the least recently used idle versions past the budget, if any."""
        evicted = self.residency.surplus(self.view.tags)
        if evicted:
            try:
                await self._send(self.view.tags - set(evicted))
            except Exception as exc:  # the next change, or the next call, carries it
                logger.warning("the runner could not be told to evict %s now: %s", evicted, exc)

    async def _restore(self, version: ModelVersion) -> None:
        """An evicted version back in the view (every worker loads and warms it up), making
        room for it; waited for at most the model's batching latency budget."""

        async def load() -> None:
            wanted = self.view.tags | {version.tag}
            failed = await self._send(wanted - set(self.residency.surplus(wanted)))
            if version.tag in failed:
                raise NotReady(f"'{version.tag}' could not be loaded again: {failed[version.tag]}")

        wait_s = self.batching(version.name).max_latency_ms / 1000
        await self.reloads.wait(version.tag, load, wait_s)

    def _trim_later(self) -> None:
        """After a call: evict what busy calls kept past the budget, off the answer's path."""
        if self._trimming is None and self.residency.over(self.view.tags):
            self._trimming = asyncio.get_running_loop().create_task(self._trim())
            self._trimming.add_done_callback(self._trimmed)

    def _trimmed(self, task: asyncio.Task[None]) -> None:
        self._trimming = None

    async def loaded(self) -> dict[str, list[str]]:
        """The tags each runner worker holds, by its worker index."""
        workers = await self.runner.to_async.loaded()
        return {str(index): tags for index, tags in sorted(workers.items())}

    def _next(self, tags: set[str] | frozenset[str]) -> View:
        generation = max(self.view.generation + 1, time.time_ns())
        return View(self.view.gateway, generation, frozenset(tags))

    async def _send(self, tags: set[str] | frozenset[str]) -> dict[str, str]:
        """A new view to the runner: one worker applies it and waits for its siblings."""
        self.view = self._next(tags)
        try:
            failed: dict[str, str] = await self.runner.to_async.served(self.view)
        except self._disconnected:
            self._known = False
            raise NotReady(
                "the runner cannot be reached, retry later", headers={"Retry-After": "1"}
            ) from None
        return failed

    async def predict(
        self, version: ModelVersion, methods: tuple[str, ...], rows: Array, *, shadow: bool = False
    ) -> dict[str, Array]:
        self.residency.begin(version.tag)  # not evicted while in flight
        try:
            if version.tag not in self.view.tags and version.tag in self.served:
                await self._restore(version)
            if len(rows) <= self.chunk_rows:
                return unwrap(await self._call(version, methods, rows))
            chunks = row_chunks(rows, self.chunk_rows)  # one after another: others batch between
            return join_outputs([unwrap(await self._call(version, methods, c)) for c in chunks])
        finally:
            self.residency.end(version.tag)
            self._trim_later()

    async def _call(self, version: ModelVersion, methods: tuple[str, ...], rows: Array) -> Result:
        if self._known is False and not await self.ready():
            # NOTE: BentoML's arbiter keeps a dead runner's socket open until it restarts it, so a
            # call would wait for the restart; once readiness says down, fail fast instead.
            raise NotReady(
                f"the runner of model '{version.name}' is not ready, retry later",
                headers={"Retry-After": "1"},
            )
        call = [(version.tag, methods, rows, self.view)]
        api = self.apis.get(version.name, "run")
        lane = await self.lanes.pick() if self.lanes is not None else None
        if lane is not None:
            return await self._over_lanes(lane, api, call, version.name)
        run = getattr(self.runner.to_async, api)
        try:
            try:
                (result,) = await run(call)
            except self._disconnected:
                # NOTE: the runner's server closes idle keep-alive connections; a call racing
                # that close fails before it is read, so it is sent once more (predict has no
                # side effects).
                (result,) = await run(call)
        except self._disconnected:
            raise self._unreachable(version.name) from None
        except BentoMLException as exc:
            if exc.error_code == HTTPStatus.SERVICE_UNAVAILABLE:
                raise Overloaded(
                    f"the runner of model '{version.name}' is overloaded, retry later"
                ) from None
            raise
        return result  # type: ignore[no-any-return]

    async def _over_lanes(self, lane: Lane, api: str, call: list[Any], name: str) -> Result:
        """The call over the direct lane; if its worker dies under it, once more over another
        worker's (predict has no side effects), else a 503 (a restart reopens the lane)."""
        assert self.lanes is not None
        try:
            try:
                (result,) = await lane.call(api, call)
            except LaneLost:
                other = await self.lanes.pick(besides=lane)
                if other is None:
                    raise
                (result,) = await other.call(api, call)
        except LaneLost:
            raise self._unreachable(name) from None
        except LaneOverloaded:
            raise Overloaded(f"the runner of model '{name}' is overloaded, retry later") from None
        return result  # type: ignore[no-any-return]

    def _unreachable(self, name: str) -> NotReady:  # gone under a call: ask readiness again
        self._known = False
        message = f"the runner of model '{name}' cannot be reached, retry later"
        return NotReady(message, headers={"Retry-After": "1"})

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
