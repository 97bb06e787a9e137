"""The runner service's class, the cost of each call to it, and where its workers meet: BentoML
starts every worker of a ``bentoml serve`` as a child of that one process (its circus arbiter),
so they share a directory named by their parent (:mod:`adapters.execution.worker` keeps each
worker to the gateways' views through it)."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import bentoml


def mime_types_cached() -> None:
    """Each of BentoML's IO models works out its media type once, not on every call.

    NOTE: BentoML 1.4 asks an API's input model for its media type on every call its client
    sends, and the output model on every answer its server writes; for a root model that is a
    JSON schema built afresh (a pydantic ``TypeAdapter`` each time): 12 % of the runner worker's
    main thread at one connection (py-spy, iris). The answer depends on the class alone (its
    ``media_type`` and its annotation, fixed when the API is declared).
    """
    from _bentoml_sdk.io_models import IOMixin

    upstream = vars(IOMixin)["mime_type"].__func__
    if not hasattr(upstream, "__wrapped__"):  # not cached yet in this process
        IOMixin.mime_type = classmethod(functools.cache(upstream))  # type: ignore[arg-type]


class RunnerService(bentoml.Service[Any]):  # type: ignore[misc]  # bentoml ships no stubs
    """The runner's service class (``@bentoml.service(service_class=RunnerService)``): its
    batchable APIs send a batch as soon as they are idle (:mod:`adapters.bento.dispatch`)."""

    def to_asgi(self, is_main: bool = True) -> Any:
        from adapters.bento import dispatch

        dispatch.install()  # before BentoML's app factory builds the dispatchers
        mime_types_cached()
        return super().to_asgi(is_main=is_main)


def shared_directory(parent: int | None = None) -> Path:
    """The directory the runner workers of one ``bentoml serve`` share, named by their parent
    (``os.getppid()``) and its start time, so that the leftovers of a killed server whose pid
    was reused are never read."""
    import psutil

    pid = os.getppid() if parent is None else parent
    try:
        started = int(psutil.Process(pid).create_time() * 1000)
    except psutil.Error:
        started = 0
    return Path(tempfile.gettempdir()) / f"oip-runner-{pid}-{started}"


def removed_at_exit() -> None:
    """Called in the ``bentoml serve`` process itself: its runner workers' shared directory goes
    when it exits."""
    atexit.register(shutil.rmtree, shared_directory(os.getpid()), ignore_errors=True)
