"""Everything that knows BentoML's, uvicorn's or PyYAML's internals, and nothing else does.

:mod:`~adapters.bento.gateway` (the gateway's ``Service`` class), :mod:`~adapters.bento.connections`
(uvicorn's protocol with a header deadline and a connection cap), :mod:`~adapters.bento.startup`
(BentoML's store reads through libyaml, GC paused while loading),
:mod:`~adapters.bento.runners` (the runner's service class, its direct lane's server, the directory
its workers share),
:mod:`~adapters.bento.dispatch` (the runner's batches sent as soon as an API is idle),
:mod:`~adapters.bento.drain` (SIGTERM drains: not ready, then stop, the runner last),
:mod:`~adapters.bento.seams`: which upstream internals are relied on, pinned and checked, and
:mod:`~adapters.bento.build` (``make bento``: a Bento of chosen versions).
The uvicorn protocol module is imported only where it is used (the gateway worker, the check).
"""

from __future__ import annotations

from adapters.bento import drain
from adapters.bento.gateway import GatewayService
from adapters.bento.runners import RunnerService, open_lane, removed_at_exit, shared_directory
from adapters.bento.seams import RUNNER_CONNECTION, require
from adapters.bento.startup import collections_paused, read_yaml_with_libyaml

__all__ = [
    "RUNNER_CONNECTION",
    "GatewayService",
    "RunnerService",
    "collections_paused",
    "drain",
    "open_lane",
    "read_yaml_with_libyaml",
    "removed_at_exit",
    "require",
    "shared_directory",
]
