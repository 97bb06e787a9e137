"""The runner's direct lane: a gateway's calls reach a runner worker over a Unix socket of that
worker's own, into the very batching of its BentoML API, without BentoML's HTTP client and
server in between.

Why: BentoML's client and server (aiohttp; uvicorn, Starlette, four middlewares, request
parsing) cost more than a small predict, twice over (``docs/performance.md``). The lane keeps the
worker's dispatcher (batches, the 503 past ``max_latency_ms``), its metric and its thread.

Wire: every frame is a header (the pickle's length and the call's id) and a pickle: a gateway
sends ``(api, calls)``, the worker answers ``("ok", results)``, ``("overloaded", message)`` or
``("error", message)``. Calls are answered as their batches end, in any order, matched by id;
one connection per gateway process and runner worker carries them all, and a frame that cannot
be read fails its own call only. Sockets are opened and looked for only in the runner's shared
directory (:func:`~adapters.bento.runners.shared_directory`) when it is this user's and closed
to everyone else (:func:`private`): whatever answers there is unpickled.

A gateway (:class:`Lanes`) finds the sockets of the live workers in that directory, at most
every ``rescan_s``, and sends each call to the one with the fewest calls in flight. When no lane
is open (not opened yet, ``OIP_RUNNER_LANE=0``, only stale sockets of dead workers) the caller
takes BentoML's HTTP path, which knows a runner's start, death and restart. A lane closed while
calls were in flight fails them with :class:`LaneLost`: the runner worker died under them (the
caller sends such a call once more to another worker's lane, if one is open).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import pickle
import stat
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from adapters.execution.metrics import lane_calls

logger = logging.getLogger(__name__)
HEADER = struct.Struct(">IQ")  # the pickle's length, the call's id
MAX_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS
CONNECT_S = 1.0  # a worker's socket that does not accept in this long is skipped until next look
Handle = Callable[[str, list[Any]], Awaitable[list[Any]]]  # (api, calls) -> results
Clock = Callable[[], float]


class LaneLost(ConnectionError):
    """The lane closed with this call in flight: the runner worker went away."""


class LaneOverloaded(Exception):
    """The runner worker's batching refused the call (queued past ``max_latency_ms``)."""


class LaneFailed(RuntimeError):
    """The runner worker failed the call (its message says why)."""


def socket_path(directory: Path, index: int) -> Path:
    return directory / f"lane-{index}.sock"


def private(directory: Path, *, make: bool = False) -> bool:
    """Whether ``directory`` is a real directory of this user that no one else can enter (made
    so first, with ``make``, if missing): the only place a lane is opened or looked for (a
    pickle is run by whoever reads it)."""
    try:
        if make:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(directory)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077


def _frame(ident: int, message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body), ident) + body


async def _read(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    size, ident = HEADER.unpack(await reader.readexactly(HEADER.size))
    return ident, await reader.readexactly(size)


def _loads(body: bytes) -> Any:
    return pickle.loads(body)  # from a socket in this user's private directory: see private()


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
        """Listen on ``path`` (replacing a predecessor's socket) in its private directory (made
        so if missing); False, with a warning, where no lane can be opened there (a directory
        another user could enter, a path too long for a Unix socket, no Unix sockets, no room):
        the gateways then use the HTTP path."""
        if len(os.fsencode(path)) > MAX_PATH:
            logger.warning("no direct lane to the runner: %s is too long for a Unix socket", path)
            return False
        mask = os.umask(0o077)  # the socket is never open to others, not even before a chmod
        try:
            if not private(path.parent, make=True):
                logger.warning("no direct lane to the runner: %s is not private", path.parent)
                return False
            path.unlink(missing_ok=True)
            self.server = await asyncio.start_unix_server(self._serve, path=str(path))
        except (OSError, AttributeError) as exc:  # AttributeError: no Unix sockets (Windows)
            logger.warning("no direct lane to the runner at %s: %s", path, exc)
            return False
        finally:
            os.umask(mask)
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
                ident, body = await _read(reader)
                task = loop.create_task(self._answer(writer, ident, body))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the gateway went away, close(), or the worker stops
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, ident: int, body: bytes) -> None:
        total, in_progress = lane_calls()
        total.inc()
        in_progress.inc()
        try:
            api, calls = _loads(body)
            reply: tuple[str, Any] = ("ok", await self.handle(api, calls))
        except self.overloaded as exc:
            reply = ("overloaded", str(exc))
        except Exception as exc:  # this call's alone: the others on the connection go on
            logger.exception("runner call failed")
            reply = ("error", f"{type(exc).__name__}: {exc}")
        finally:
            in_progress.dec()
        try:
            frame = _frame(ident, reply)
        except Exception as exc:  # an answer that cannot be pickled: say so instead
            frame = _frame(ident, ("error", f"the answer could not be sent: {exc!r}"))
        if writer.is_closing():
            return
        with contextlib.suppress(ConnectionError, RuntimeError):  # the gateway went away
            writer.write(frame)
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
        """The results of ``calls`` by the worker's ``api``; :class:`LaneLost`,
        :class:`LaneOverloaded` or :class:`LaneFailed` otherwise."""
        if self.closed or self.writer.is_closing():
            self._lost()
            raise LaneLost(f"the lane {self.path} is closed")
        ident = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        frame = _frame(ident, (api, calls))
        self.pending[ident] = future
        try:
            # NOTE: a transport closed under the write raises ConnectionError on asyncio's loop,
            # RuntimeError on uvloop's (which BentoML's workers run)
            try:
                self.writer.write(frame)
                await self.writer.drain()
            except (ConnectionError, RuntimeError) as exc:
                self.pending.pop(ident, None)  # its own: _lost() would fail it, unawaited
                self._lost()
                raise LaneLost(f"the lane {self.path} closed: {exc}") from None
            outcome, payload = await future
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
                ident, body = await _read(reader)
                future = self.pending.pop(ident, None)
                if future is None or future.done():
                    continue  # its caller gave up (deadline, client gone)
                try:
                    future.set_result(_loads(body))
                except Exception as exc:  # this answer's alone
                    future.set_exception(LaneFailed(f"an answer that cannot be read: {exc!r}"))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
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

    def __init__(self, directory: Path, *, rescan_s: float = 1.0, clock: Clock = time.monotonic):
        self.directory, self.rescan_s, self.clock = directory, rescan_s, clock
        self.lanes: dict[Path, Lane] = {}
        self._scanned = float("-inf")
        self._scanning: asyncio.Task[None] | None = None

    async def pick(self, besides: Lane | None = None) -> Lane | None:
        """The open lane (other than ``besides``) with the fewest calls in flight; None if
        there is none."""
        if self.clock() - self._scanned >= self.rescan_s and self._scanning is None:
            self._scanning = asyncio.get_running_loop().create_task(self._scan())
            if not self._open():  # nothing to use meanwhile: wait for this look
                await asyncio.shield(self._scanning)
        open_lanes = [lane for lane in self._open() if lane is not besides]
        return min(open_lanes, key=lambda lane: len(lane.pending)) if open_lanes else None

    def _open(self) -> list[Lane]:
        return [lane for lane in self.lanes.values() if not lane.closed]

    async def _scan(self) -> None:
        """Connect to every worker's socket not connected yet; forget closed lanes."""
        try:
            for path, lane in list(self.lanes.items()):
                if lane.closed:
                    del self.lanes[path]
            if not private(self.directory):  # not there yet, or not to be trusted
                return
            with contextlib.suppress(OSError):
                for path in sorted(self.directory.glob("lane-*.sock")):
                    if path in self.lanes:
                        continue
                    try:
                        connecting = asyncio.open_unix_connection(str(path))
                        reader, writer = await asyncio.wait_for(connecting, CONNECT_S)
                    except (OSError, TimeoutError):  # a dead worker's socket, not replaced yet
                        continue
                    self.lanes[path] = Lane(path, reader, writer)
        finally:
            self._scanned = self.clock()
            self._scanning = None

    def close(self) -> None:
        for lane in self.lanes.values():
            lane.close()
        self.lanes.clear()
