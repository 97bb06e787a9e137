"""The runner service's class, the cost of each call to it, and where its workers meet: BentoML
starts every worker of a ``bentoml serve`` as a child of that one process (its circus arbiter),
so they share a directory named by their parent (:mod:`adapters.execution.worker` keeps each
worker to the gateways' views through it)."""

from __future__ import annotations

import ast
import atexit
import functools
import inspect
import os
import shutil
import tempfile
import textwrap
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
    batchable APIs send a batch as soon as they are idle (:mod:`adapters.bento.dispatch`), and
    the direct lane (:mod:`adapters.execution.lane`) feeds the same batching."""

    def to_asgi(self, is_main: bool = True) -> Any:
        from _bentoml_impl.server.app import ServiceAppFactory

        from adapters.bento import dispatch

        dispatch.install()  # before BentoML's app factory builds the dispatchers
        mime_types_cached()
        # NOTE: what `Service.to_asgi` does (BentoML 1.4), keeping the factory: its
        # `batch_infer` is the batching entry the lane calls (a seam: adapters/bento/seams.py)
        self.inject_config()
        factory = ServiceAppFactory(self, is_main=is_main)
        _FACTORIES[self.name] = factory
        return factory()


_FACTORIES: dict[str, Any] = {}  # service name -> its app factory, in this worker process


async def open_lane(service: Any) -> Any:
    """In a runner worker, once BentoML's app has started: the direct lane's server, answering
    each call with the service's own batching (``batch_infer``: its dispatcher, its 503 on a
    call queued too long, its batch-size metric). ``None`` if it could not be opened."""
    from bentoml import server_context
    from bentoml.exceptions import ServiceUnavailable

    from adapters.execution.lane import LaneServer, socket_path

    factory = _FACTORIES[service.name]

    async def handle(api: str, calls: list[Any]) -> list[Any]:
        return await factory.batch_infer(api, (calls,), {})  # type: ignore[no-any-return]

    server = LaneServer(handle, overloaded=(ServiceUnavailable,))
    path = socket_path(shared_directory(), server_context.worker_index or 0)
    return server if await server.open(path) else None


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


TO_ASGI = """
def to_asgi(self, is_main: bool = True) -> ext.ASGIApp:
    from _bentoml_impl.server.app import ServiceAppFactory

    self.inject_config()
    factory = ServiceAppFactory(self, is_main=is_main)
    return factory()
"""
"""BentoML 1.4.39's ``Service.to_asgi``, which :class:`RunnerService` repeats to keep the app
factory: any other body fails the start-up check (:mod:`adapters.bento.seams`)."""


def _statements(source: str) -> list[str]:
    """A function's statements, as syntax (formatting and comments left out)."""
    (function,) = ast.parse(textwrap.dedent(source)).body
    assert isinstance(function, ast.FunctionDef)
    return [ast.dump(statement) for statement in function.body]


def check() -> list[str]:
    """What is missing of the seam: BentoML's ``Service.to_asgi`` as :class:`RunnerService`
    repeats it (to keep the app factory), and the factory's batching entry the direct lane
    calls (:func:`open_lane`)."""
    from _bentoml_impl.server.app import ServiceAppFactory

    problems = []
    if _statements(inspect.getsource(bentoml.Service.to_asgi)) != _statements(TO_ASGI):
        problems.append("bentoml.Service.to_asgi is no longer what RunnerService.to_asgi repeats")
    if list(inspect.signature(ServiceAppFactory).parameters)[:2] != ["service", "is_main"]:
        problems.append("ServiceAppFactory no longer takes (service, is_main)")
    batch_infer = getattr(ServiceAppFactory, "batch_infer", None)
    if batch_infer is None or not inspect.iscoroutinefunction(batch_infer):
        problems.append("ServiceAppFactory.batch_infer is gone")
    elif list(inspect.signature(batch_infer).parameters) != [
        "self",
        "name",
        "input_args",
        "input_kwargs",
    ]:
        problems.append("ServiceAppFactory.batch_infer no longer takes (name, args, kwargs)")
    return problems
