"""Request and response bodies over HTTP: a size limit enforced while reading, ``Content-Encoding``
(gzip, deflate) for requests and ``Accept-Encoding`` for responses, as tritonclient's
``request_compression_algorithm`` / ``response_compression_algorithm`` send them.

A body is refused (413) as soon as its ``Content-Length`` or the bytes received pass the limit,
and a compressed body as soon as its *decompressed* size does: a decompression bomb never grows
past the limit in memory.
"""

from __future__ import annotations

import gzip
import zlib

from starlette.requests import Request

from adapters.config.settings import Limits
from adapters.dataplane.deadlines import sweep
from adapters.protocol.errors import (
    BadRequest,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)

MIN_COMPRESSED_RESPONSE = 1024
"""Smaller responses are sent as they are: compressing them costs more than it saves."""

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


async def read_body(request: Request, limits: Limits) -> bytes:
    """The request body, decompressed, refused past ``limits.max_body_bytes`` before or after
    that; a client that sends nothing for ``limits.read_timeout_s`` is answered 408."""
    limit = limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", *_WBITS):
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding[:40]!r} is not supported; use gzip, deflate or none"
        )
    chunks, size = [], 0
    silence = limits.read_timeout_s
    # one watch for the whole body, pushed back after every chunk: silence is what it bounds
    watches = sweep()
    watch = watches.watch(silence)
    kind: type[BaseException] | None = None
    try:
        async for chunk in request.stream():
            watch.due = watches.loop.time() + silence
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except BaseException as exc:
        kind = type(exc)
        raise
    finally:
        if watches.leave(watch, kind):
            raise RequestTimeout(f"no body data for {silence:g} s (OIP_READ_TIMEOUT_S)") from None
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return body if encoding == "identity" else _decompress(body, encoding, limit)


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    inflater = zlib.decompressobj(_WBITS[encoding])
    try:
        data = inflater.decompress(body, limit + 1)  # at most limit + 1 bytes, whatever the ratio
    except zlib.error as exc:
        raise BadRequest(f"the body is not valid {encoding} data ({exc})") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise _too_large(limit, decompressed=True)
    return data


def _too_large(limit: int, *, decompressed: bool = False) -> PayloadTooLarge:
    what = "decompressed body" if decompressed else "body"
    return PayloadTooLarge(
        f"the {what} is larger than the limit of {limit} bytes (OIP_MAX_BODY_BYTES)"
    )


def choose_encoding(accept_encoding: str | None) -> str | None:
    """``gzip`` or ``deflate`` when the client accepts it (gzip first), else ``None``."""
    if not accept_encoding:
        return None
    accepted = set()
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.strip().partition(";")
        if params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000"):
            accepted.add(coding.strip())
    return next((c for c in ("gzip", "deflate") if c in accepted), None)


def compress(body: bytes, encoding: str) -> bytes:
    """``body`` in ``encoding`` (level 1: fast, and most of the gain for tensor data)."""
    if encoding == "gzip":
        return gzip.compress(body, compresslevel=1, mtime=0)
    return zlib.compress(body, 1)
