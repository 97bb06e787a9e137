"""Connection-level limits the HTTP server lacks: a deadline for request headers and a cap on open
connections, for the gateway's uvicorn server.

uvicorn (as BentoML 1.4 runs it) closes idle keep-alive connections but has no deadline for a
request's headers, nor a cap on connections: a client that opens connections and sends headers
byte by byte holds them forever, until file descriptors run out. :class:`GuardedHttpTools` is
uvicorn's own httptools protocol with both added; :func:`install` makes it the one uvicorn's
``http="auto"`` resolves to (its ``HTTP_PROTOCOLS`` table), in the gateway worker only, before
BentoML builds the server. A body that stalls is the request deadline's and the read timeout's
job (:func:`adapters.http.bodies.read_body`): those answer 408/504.

The protocol also sends a response's status line and headers in one write with its body
(:class:`CoalescedWrites`): uvicorn writes them apart, two ``send`` calls and two TCP segments
for every small answer, which costs the server and the client a wake-up each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import uvicorn.config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)
PROTOCOL = f"{__name__}:GuardedHttpTools"
SWEEP_S = 0.5
"""Longest interval between two sweeps of the header deadlines."""
_SWEEPING: set[asyncio.AbstractEventLoop] = set()  # the loops whose sweep is scheduled
HOOKS = (
    "connection_made",
    "on_message_begin",
    "on_headers_complete",
    "on_response_complete",
    "connection_lost",
)
"""uvicorn's protocol methods the guard extends (:mod:`adapters.bento.seams` checks they exist)."""


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline and a connection cap.

    NOTE: the deadline is a due time on the connection, not a timer: one sweep per event loop
    (:func:`_sweep`, every eighth of the deadline, at most :data:`SWEEP_S`) closes the
    connections past theirs, so a request costs an attribute write, not a timer handle made and
    cancelled.
    """

    header_timeout_s: float = 10.0
    max_connections: int = 1000
    _last_refusal_log = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.headers_due: float | None = None
        self.writes = CoalescedWrites(transport)
        # NOTE: uvicorn formats each access line's arguments whenever its logger has a handler
        # anywhere up the tree (BentoML's root handler), even when the logger drops INFO
        self.access_log = self.access_log and self.access_logger.isEnabledFor(logging.INFO)
        if len(self.connections) > self.max_connections:
            self._log_refusal()
            transport.close()
            return
        self.headers_due = self.loop.time() + self.header_timeout_s
        if self.loop not in _SWEEPING:
            _SWEEPING.add(self.loop)
            self.loop.call_later(self._tick_s(), _sweep, self.loop, self.connections)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.headers_due is None:  # the next request on a kept-alive connection
            self.headers_due = self.loop.time() + self.header_timeout_s

    def on_headers_complete(self) -> None:
        self.headers_due = None
        super().on_headers_complete()
        cycle = getattr(self, "cycle", None)
        # NOTE: only a cycle that writes to this connection's transport (uvicorn's, as pinned):
        # anything else keeps uvicorn's own writes, slower but whole
        if cycle is not None and cycle.transport is self.transport:
            cycle.transport = self.writes
            self.writes.hold_next = True

    def on_response_complete(self) -> None:
        self.writes.flush()  # a response with no body write (HEAD, 204, 304)
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.headers_due = None
        super().connection_lost(exc)

    @classmethod
    def _tick_s(cls) -> float:
        return min(cls.header_timeout_s / 8, SWEEP_S)

    def headers_late(self) -> None:
        self.headers_due = None
        logger.info(
            "closing a connection from %s: no complete request headers in %g s "
            "(OIP_READ_TIMEOUT_S)",
            self.client,
            self.header_timeout_s,
        )
        self.transport.close()

    def _log_refusal(self) -> None:
        now = time.monotonic()
        if now - GuardedHttpTools._last_refusal_log >= 1.0:  # at most one line a second
            GuardedHttpTools._last_refusal_log = now
            logger.warning(
                "refusing connections: %d open, the limit is %d (OIP_MAX_CONNECTIONS)",
                len(self.connections) - 1,
                self.max_connections,
            )


class CoalescedWrites:
    """A connection's transport, as a response cycle sees it: the write of a response's status
    line and headers is held and sent with the next write (the body, or its first chunk).

    An interim ``100 Continue`` is never held (the client waits for it before sending the
    body); whatever is held is sent before the transport closes and when the response ends
    without a body write.
    """

    __slots__ = ("held", "hold_next", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.held: bytes | None = None
        self.hold_next = False  # set for each new response: its first write is the headers

    def write(self, data: bytes) -> None:
        if self.held is not None:
            data, self.held = self.held + data, None
        elif self.hold_next and not data.startswith(b"HTTP/1.1 1"):
            self.hold_next = False
            self.held = data
            return
        self.transport.write(data)

    def flush(self) -> None:
        self.hold_next = False  # the response ended: nothing more of it to hold
        if self.held is not None:
            data, self.held = self.held, None
            self.transport.write(data)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, ...
        return getattr(self.transport, name)


def _sweep(loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
    """Close the connections past their header deadline; again in a tick while any is open."""
    now = loop.time()
    for protocol in [p for p in connections if isinstance(p, GuardedHttpTools)]:
        if protocol.headers_due is not None and protocol.headers_due <= now:
            protocol.headers_late()
    if connections:
        loop.call_later(GuardedHttpTools._tick_s(), _sweep, loop, connections)
    else:  # the next connection starts it again
        _SWEEPING.discard(loop)


def install(*, header_timeout_s: float, max_connections: int) -> None:
    """Make uvicorn's ``http="auto"`` resolve to :class:`GuardedHttpTools` in this process."""
    GuardedHttpTools.header_timeout_s = header_timeout_s
    GuardedHttpTools.max_connections = max_connections
    protocols: dict[str, Any] = uvicorn.config.HTTP_PROTOCOLS
    protocols["auto"] = PROTOCOL
