"""The data plane: what every V2 operation means, whatever the transport (the HTTP and gRPC
edges decode their wire format, call it, and encode its answer).

:mod:`~adapters.dataplane.plane` (metadata, readiness, inference, repository, statistics, the
request deadline), :mod:`~adapters.dataplane.answers` (the answer-size limit),
:mod:`~adapters.dataplane.statistics` (per-version statistics),
:mod:`~adapters.dataplane.auth` (bearer tokens, the same for both edges), and what happens after
an answer, off the request path: :mod:`~adapters.dataplane.shadow` (shadow runs),
:mod:`~adapters.dataplane.journal` (the inference log), :mod:`~adapters.dataplane.metrics`.

May import :mod:`adapters.batch`, :mod:`adapters.execution`, :mod:`adapters.config`,
:mod:`adapters.models` and :mod:`adapters.protocol`; never an edge.
"""

from __future__ import annotations

from adapters.dataplane.plane import EXTENSIONS, DataPlane, Deadline

__all__ = ["EXTENSIONS", "DataPlane", "Deadline"]
