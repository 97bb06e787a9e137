"""Every upstream internal this server relies on: pinned in ``requirements.txt`` (which the Bento
installs, ``lock_packages: false``), and checked where it protects the server.

A public API that changes fails loudly (an import or a call raises). An internal that changes
can fail silently: the server starts and serves, and a protection is simply not there. Each
such seam, what would go missing, and what catches it:

=====================  ============================================  ==========================
upstream internal      if it changed silently                        caught by
=====================  ============================================  ==========================
uvicorn                no header deadline, no connection cap         :func:`check` at start-up;
``HTTP_PROTOCOLS``,                                                  ``tests/test_bento.py``
``HttpToolsProtocol``                                                (the guard acts in a real
hooks (httptools                                                     uvicorn);
beneath)                                                             ``tests/test_hostile.py``
BentoML's worker:      no auth, no CORS, no fast lane, no            :func:`check` at start-up;
``Service.to_asgi``,   connection guard (:class:`GatewayService`     ``tests/test_gateway.py``,
``uvicorn.Config``     is bypassed), or a uvicorn protocol picked    ``tests/test_hostile.py``
without ``http=``      past the guard
BentoML's runner       its session replaced every 100 calls under    ``tests/test_bento.py``
client reads           calls in flight ("Server disconnected")       (the session is kept)
``runner_connection``
BentoML's              a second server shares the gRPC port          ``tests/test_grpc_port.py``
``on_deployment``      (:mod:`adapters.grpc.port`)
hooks run once, in
``bentoml serve``
BentoML's store reads  slower start-up only                          ``tests/test_startup.py``
``yaml.safe_load``
(PyYAML)
Starlette's            errors past the routes' one error path;       ``tests/test_gateway.py``,
``Starlette.router``,  the lane's speed                              ``tests/test_routes.py``
``Route.path_regex``
grpcio's               the gateway workers cannot share the gRPC     ``tests/test_grpc_port.py``
``grpc.so_reuseport``  port (OIP_WORKERS > 1)
aiohttp's errors from  a runner restart answers 500, not 503         ``tests/test_hostile.py``
BentoML's client
BentoML starts every   a runner worker that gets no call keeps an    ``tests/test_unload_live``
worker as a child of   unloaded version; load and unload answer      ``.py`` (every worker
``bentoml serve``      before the other workers follow               frees)
(:mod:`.runners`)
BentoML's client       a gateway's view (a plain class) arrives as   ``tests/test_unload_live``
dumps a call's         a dict: load and unload on the runner fail    ``.py``
arguments
(``model_dump``)
BentoML's ``threads``  load and unload on the runner wait behind a   ``tests/test_unload_live``
limits sync APIs only  running batch (``served`` is async)           ``.py`` (queued calls)
BentoML's batching     a lone runner call waits for company (ms      :func:`check` at start-up;
``CorkDispatcher``     for a sub-ms predict) or fails, if the         ``tests/test_dispatch.py``
(its app factory's     members :mod:`.dispatch` uses are gone
global, queue,
semaphore, batch
assembly)
BentoML's IO models     every runner call builds a JSON schema twice  :func:`check` at start-up;
``mime_type``          (slower only)                                 ``tests/test_dispatch.py``
(a classmethod)
BentoML's              the runner skips a step BentoML added to      :func:`check` at start-up
``Service.to_asgi``    ``to_asgi``; every call over the direct lane  (the body repeated, the
body and its app       fails (500) if ``batch_infer`` changed        factory's signatures);
factory's                                                            ``tests/test_e2e.py`` (calls
``batch_infer``                                                      counted by the lane's
(:mod:`.runners`)                                                    counter)
circus (kantoku) and   SIGTERM stops at once: requests dropped in a  :func:`check` at start-up
tornado: the arbiter's rolling restart (:mod:`.drain`)               (``drain.check``);
SIGTERM handler, its                                                 ``tests/test_drain.py``,
watchers and sockets;                                                ``tests/test_cluster.py``
BentoML's watcher and                                                (a rolling restart under
socket names                                                         load drops nothing)
=====================  ============================================  ==========================

:data:`TOUCHED` names these packages; ``tests/test_bento.py`` checks that each is pinned exactly
in ``requirements.txt`` and installed at that version. :func:`check` runs once, in the process
that plans the server (``bentoml serve`` itself, before any worker: a failing worker is only
restarted), and refuses to start if a protection would not be installed.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

from adapters.bento import drain, runners

TOUCHED = (
    "bentoml",
    "uvicorn",
    "httptools",
    "PyYAML",
    "starlette",
    "grpcio",
    "aiohttp",
    "kantoku",  # circus, as BentoML installs it
    "tornado",
)
"""The packages whose internals this server relies on: each pinned exactly in requirements.txt."""

BENTOML_WORKER = "_bentoml_impl.worker.service"
"""The module BentoML runs as each HTTP worker: it builds the app and the uvicorn server."""

# NOTE: BentoML's client to a dependency replaces its HTTP session every `max_requests` calls
# (default 100) and closes the old one under calls still in flight, which fail with "Server
# disconnected" under concurrency; the session is kept for the life of the process instead.
RUNNER_CONNECTION = {"max_requests": 2**62, "max_age": 10.0**9}
"""``runner_connection`` of the runner service (read by BentoML's client to it)."""


class SeamBroken(RuntimeError):
    """An upstream internal is not what this server relies on; the message says which, and what
    would go missing."""


def require() -> None:
    """:func:`check`, as the one-line refusal ``bentoml serve`` exits with."""
    try:
        check()
    except SeamBroken as exc:
        raise SystemExit(f"oip-sklearn: cannot start safely: {exc}") from None


def check() -> None:
    """The protections the gateway installs in its workers would be installed.

    Raises:
        SeamBroken: naming the seam, what would go missing and the versions involved.
    """
    _check_worker(worker_source())
    _check_protocol()
    _check_dispatcher()
    try:
        drain.check()
    except drain.DrainUnavailable as exc:
        raise SeamBroken(f"{exc}: SIGTERM would not drain{_versions()}") from None


def worker_source() -> str:
    """The source of BentoML's HTTP worker, read (not imported)."""
    spec = importlib.util.find_spec(BENTOML_WORKER)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise SeamBroken(f"BentoML's worker ({BENTOML_WORKER}) cannot be read{_versions()}")
    return Path(spec.origin).read_text(encoding="utf-8")


def _check_worker(source: str) -> None:
    """BentoML's worker builds its app with ``Service.to_asgi`` (where :class:`GatewayService`
    installs the lane, auth, CORS and the connection guard) and its uvicorn server without an
    ``http`` choice (so that ``http="auto"``, the guard, is used)."""
    tree = ast.parse(source)
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    if not any(_callee(call) == "to_asgi" for call in calls):
        raise SeamBroken(
            "BentoML's worker no longer builds its app with Service.to_asgi: auth, CORS, the "
            f"fast lane and the connection guard would not be installed{_versions()}"
        )
    configs = [call for call in calls if _callee(call) == "Config"]
    if len(configs) != 1:
        raise SeamBroken(
            f"BentoML's worker builds {len(configs)} uvicorn.Config, not one: the connection "
            f"guard cannot be checked{_versions()}"
        )
    options = set()
    for keyword in configs[0].keywords:
        if keyword.arg is not None:
            options.add(keyword.arg)
        elif isinstance(keyword.value, ast.Name):  # **extra: the keys the module stores in it
            options |= _keys_stored_in(tree, keyword.value.id)
        else:
            options.add("?")
    chosen = sorted(options & {"http", "http2"})
    if "?" in options:
        chosen.append("options this check cannot read")
    if chosen:
        raise SeamBroken(
            f"BentoML's worker passes uvicorn {', '.join(chosen)}: the HTTP protocol may not be "
            f"the connection guard (no header deadline, no connection cap){_versions()}"
        )


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _keys_stored_in(tree: ast.AST, name: str) -> set[str]:
    keys = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id == name
        ):
            key = node.slice
            keys.add(key.value if isinstance(key, ast.Constant) else "?")
    return {str(k) for k in keys}


def _check_protocol() -> None:
    """uvicorn, configured as BentoML's worker configures it, runs :class:`GuardedHttpTools`
    once it is installed, and every hook the guard overrides is one uvicorn still calls."""
    import uvicorn.config

    from adapters.bento import connections

    guard = connections.GuardedHttpTools
    for hook in connections.HOOKS:
        if not any(hook in vars(base) for base in guard.__mro__[1:]):
            raise SeamBroken(
                f"uvicorn's {guard.__mro__[1].__name__} has no {hook}: the connection guard "
                f"would not act{_versions()}"
            )
    protocols: dict[str, Any] = uvicorn.config.HTTP_PROTOCOLS
    saved = dict(protocols)
    try:  # installed as the gateway worker installs it (nothing else), then put back
        protocols.pop("auto", None)
        connections.install(
            header_timeout_s=guard.header_timeout_s, max_connections=guard.max_connections
        )
        config = uvicorn.config.Config(
            app=_app, log_config=None, workers=1, server_header=False, ws="none", lifespan="off"
        )
        config.load()
        resolved = config.http_protocol_class
    except Exception as exc:
        raise SeamBroken(
            f"uvicorn cannot run the connection guard for http='auto' ({exc!r}){_versions()}"
        ) from None
    finally:
        protocols.clear()
        protocols.update(saved)
    if not (isinstance(resolved, type) and issubclass(resolved, guard)):
        name = getattr(resolved, "__name__", repr(resolved))
        raise SeamBroken(
            f"uvicorn runs {name}, not the connection guard, for http='auto': no header "
            f"deadline, no connection cap{_versions()}"
        )


def _check_dispatcher() -> None:
    """The runner's batching decision can be replaced (:mod:`adapters.bento.dispatch`), and
    its IO models' media types cached (:func:`adapters.bento.runners.mime_types_cached`)."""
    from _bentoml_sdk.io_models import IOMixin

    from adapters.bento import dispatch

    problems = dispatch.check()
    if not isinstance(vars(IOMixin).get("mime_type"), classmethod):
        problems.append("_bentoml_sdk.io_models.IOMixin.mime_type is not a classmethod")
    problems += runners.check()
    if problems:
        raise SeamBroken(
            f"{problems[0]}: the runner's calls would wait for company, fail, build a JSON "
            f"schema each, or find no direct lane{_versions()}"
        )


async def _app(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app for the probe ``uvicorn.Config`` (never called)."""


def _versions() -> str:
    """`` (installed: uvicorn 0.55.0, ...; pinned in requirements.txt)``, for the messages."""
    installed = []
    for name in TOUCHED[:3]:
        try:
            installed.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            installed.append(f"{name} missing")
    return f" (installed: {', '.join(installed)}; requirements.txt pins the tested versions)"
