"""The data plane: what every V2 operation means, whatever the transport (the HTTP and gRPC
edges decode their wire format, call it, and encode its answer).

:mod:`~adapters.dataplane.plane` (metadata, readiness, inference, repository, statistics, the
request deadline), :mod:`~adapters.dataplane.answers` (the answer-size limit),
:mod:`~adapters.dataplane.statistics` (per-version statistics) and
:mod:`~adapters.dataplane.auth` (bearer tokens, the same for both edges).

May import :mod:`adapters.batch`, :mod:`adapters.execution`, :mod:`adapters.config`,
:mod:`adapters.models` and :mod:`adapters.protocol`; never an edge.
"""

from __future__ import annotations

from adapters.dataplane.plane import EXTENSIONS, DataPlane, Deadline

__all__ = ["EXTENSIONS", "DataPlane", "Deadline"]
