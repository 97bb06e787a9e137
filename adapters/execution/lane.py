"""The runner's direct lane: a gateway's calls reach a runner worker over a Unix socket of that
worker's own, into the very batching of its BentoML API, without BentoML's HTTP client and
server in between.

Why: at one connection a call to the runner cost ~0.9 ms of the gateway's CPU and ~1.2 ms of the
runner worker's (py-spy, iris): aiohttp and BentoML's client on one side, uvicorn, Starlette,
BentoML's middlewares and its request parsing on the other, for a sub-millisecond predict
(``docs/performance.md``). The lane keeps what matters of that path: the runner worker's
dispatcher (calls merged into batches, a call queued past the model's ``max_latency_ms``
answered overloaded), its batch-size metric, the thread a batch runs on. What it leaves out is
only transport.

Wire: every frame is a 4-byte big-endian length and a pickle. A gateway sends
``(id, api, calls)`` and gets ``(id, outcome, payload)``: ``"ok"`` and the results, or
``"overloaded"`` / ``"error"`` and a message. Calls are answered as their batches end, in any
order, matched by id; one connection per gateway process and runner worker carries them all.
The socket is the worker's alone (mode 0600, in the runner's shared directory:
:func:`~adapters.bento.runners.shared_directory`), as the pickles BentoML's own runner calls
carry are.

A gateway (:class:`Lanes`) finds the sockets of the live workers in that directory, at most
every ``rescan_s``, and sends each call to the one with the fewest calls in flight. When no lane
can be used (not opened yet, ``OIP_RUNNER_LANE=0``, a stale socket of a dead worker) the caller
takes BentoML's HTTP path, which knows a runner's start, death and restart. A lane closed while
calls were in flight fails them with :class:`LaneLost`: the runner worker died under them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import pickle
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from adapters.execution.metrics import lane_calls

logger = logging.getLogger(__name__)
HEADER = struct.Struct(">I")
MAX_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS
Handle = Callable[[str, list[Any]], Awaitable[list[Any]]]
"""A runner worker's side of a call: the API's name and the calls, to their results."""


class LaneLost(ConnectionError):
    """The lane closed with this call in flight: the runner worker went away."""


class LaneOverloaded(Exception):
    """The runner worker's batching refused the call (queued past ``max_latency_ms``)."""


class LaneFailed(RuntimeError):
    """The runner worker failed the call (its message says why)."""


def socket_path(directory: Path, index: int) -> Path:
    return directory / f"lane-{index}.sock"


def _frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


async def _read(reader: asyncio.StreamReader) -> Any:
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    return pickle.loads(await reader.readexactly(size))


class LaneServer:
    """A runner worker's end: answers each call with ``handle``; ``overloaded`` says which of
    its exceptions mean "queued too long" (BentoML's ``ServiceUnavailable``)."""

    def __init__(self, handle: Handle, overloaded: tuple[type[BaseException], ...]) -> None:
        self.handle, self.overloaded = handle, overloaded
        self.server: asyncio.AbstractServer | None = None
        self.path: Path | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self, path: Path) -> bool:
        """Listen on ``path`` (replacing a predecessor's socket); False, with a warning, where no
        Unix socket can be opened there (a path too long for one, no Unix sockets, no room): the
        gateways then use the HTTP path."""
        if len(os.fsencode(path)) > MAX_PATH:
            logger.warning("no direct lane to the runner: %s is too long for a Unix socket", path)
            return False
        try:
            path.unlink(missing_ok=True)
            self.server = await asyncio.start_unix_server(self._serve, path=str(path))
            os.chmod(path, 0o600)
        except (OSError, AttributeError) as exc:  # AttributeError: no Unix sockets (Windows)
            logger.warning("no direct lane to the runner at %s: %s", path, exc)
            return False
        self.path = path
        return True

    async def close(self) -> None:
        """Stop listening, remove the socket, close every gateway's connection (their calls in
        flight fail with :class:`LaneLost`, as when the worker dies)."""
        if self.server is not None:
            self.server.close()
            if self.path is not None:
                self.path.unlink(missing_ok=True)
        for task in list(self._tasks):
            task.cancel()
        for writer in list(self._writers):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        self._writers.add(writer)
        try:
            while True:
                ident, api, calls = await _read(reader)
                task = loop.create_task(self._answer(writer, ident, api, calls))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the gateway went away, close(), or the worker stops
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, ident: int, api: str, calls: Any) -> None:
        total, in_progress = lane_calls()
        total.inc()
        in_progress.inc()
        try:
            reply: tuple[Any, ...] = (ident, "ok", await self.handle(api, calls))
        except self.overloaded as exc:
            reply = (ident, "overloaded", str(exc))
        except Exception as exc:
            logger.exception("runner call failed")
            reply = (ident, "error", f"{type(exc).__name__}: {exc}")
        finally:
            in_progress.dec()
        if writer.is_closing():
            return
        try:
            writer.write(_frame(reply))
        except Exception as exc:  # an answer that cannot be pickled: say so instead
            writer.write(_frame((ident, "error", f"the answer could not be sent: {exc!r}")))
        with contextlib.suppress(ConnectionError):
            await writer.drain()


class Lane:
    """A gateway's connection to one runner worker; many calls in flight at once."""

    def __init__(self, path: Path, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.path, self.writer = path, writer
        self.pending: dict[int, asyncio.Future[tuple[str, Any]]] = {}
        self._ids = itertools.count()
        self.closed = False
        self._reading = asyncio.get_running_loop().create_task(self._read_answers(reader))

    async def call(self, api: str, calls: list[Any]) -> list[Any]:
        if self.closed:
            raise LaneLost(f"the lane {self.path} is closed")
        ident = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[ident] = future
        try:
            self.writer.write(_frame((ident, api, calls)))
            await self.writer.drain()
            outcome, payload = await future
        except ConnectionError as exc:
            self._lost()
            raise LaneLost(str(exc)) from None
        finally:
            self.pending.pop(ident, None)
        if outcome == "ok":
            return payload  # type: ignore[no-any-return]
        if outcome == "overloaded":
            raise LaneOverloaded(payload)
        raise LaneFailed(payload)

    async def _read_answers(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                ident, outcome, payload = await _read(reader)
                future = self.pending.pop(ident, None)
                if future is not None and not future.done():
                    future.set_result((outcome, payload))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            logger.exception("the lane %s sent an answer that could not be read", self.path)
        finally:
            self._lost()

    def _lost(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.writer.close()
        for future in self.pending.values():
            if not future.done():
                future.set_exception(LaneLost(f"the runner worker behind {self.path} went away"))
        self.pending.clear()

    def close(self) -> None:
        self._reading.cancel()
        self._lost()


class Lanes:
    """A gateway process's lanes to the runner's workers (module docstring)."""

    def __init__(
        self,
        directory: Path,
        *,
        rescan_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory, self.rescan_s, self.clock = directory, rescan_s, clock
        self.lanes: dict[Path, Lane] = {}
        self._scanned = float("-inf")
        self._scanning: asyncio.Task[None] | None = None

    async def pick(self) -> Lane | None:
        """The open lane with the fewest calls in flight; None if there is none."""
        if self.clock() - self._scanned >= self.rescan_s and self._scanning is None:
            self._scanning = asyncio.get_running_loop().create_task(self._scan())
            if not self._open():  # nothing to use meanwhile: wait for this look
                await asyncio.shield(self._scanning)
        open_lanes = self._open()
        return min(open_lanes, key=lambda lane: len(lane.pending)) if open_lanes else None

    def _open(self) -> list[Lane]:
        return [lane for lane in self.lanes.values() if not lane.closed]

    async def _scan(self) -> None:
        """Connect to every worker's socket not connected yet; forget closed lanes."""
        try:
            for path, lane in list(self.lanes.items()):
                if lane.closed:
                    del self.lanes[path]
            with contextlib.suppress(OSError):
                for path in sorted(self.directory.glob("lane-*.sock")):
                    if path in self.lanes:
                        continue
                    try:
                        reader, writer = await asyncio.open_unix_connection(str(path))
                    except OSError:  # a dead worker's socket, not replaced yet
                        continue
                    self.lanes[path] = Lane(path, reader, writer)
        finally:
            self._scanned = self.clock()
            self._scanning = None

    def close(self) -> None:
        for lane in self.lanes.values():
            lane.close()
        self.lanes.clear()
