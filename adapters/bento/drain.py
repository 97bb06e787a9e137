"""Stopping without dropping a request: on SIGTERM, ``bentoml serve`` drains before it stops.

BentoML runs a server as a circus arbiter (``bentoml serve`` itself) that binds the listening
socket and hands it to its workers. Stock, a SIGTERM makes the arbiter SIGTERM every worker at
once, and three things go wrong behind a load balancer: each gateway stops accepting while the
balancer, which has not noticed yet, still sends it requests; the arbiter's own copy of the
socket keeps the kernel accepting connections that no worker will ever accept (reset when the
arbiter exits); and the runner stops under the gateway's last calls (503s).

:func:`install`, called in the arbiter's process before it starts, makes SIGTERM drain instead:

1. circus stops watching its workers (as its own stop does: none is restarted now), every
   gateway worker is told to report not ready (:data:`SIGNAL`: ``/v2/health/ready``
   answers 503, gRPC health NOT_SERVING; requests are still served), and the arbiter closes its
   copy of the listening socket: the workers' copies keep accepting, and the socket closes (new
   connections are refused, none is left waiting) when the last worker stops accepting;
2. the server keeps serving for ``OIP_DRAIN_DELAY_S``, time for the balancer's health checks to
   take the replica out;
3. the gateway workers are stopped (SIGTERM: uvicorn stops accepting, finishes every request it
   holds, and exits); the runner's workers inherited the socket too, and closed it at their
   start (:func:`close_inherited_listeners`);
4. then everything else, the runner included, as circus's own quit does.

SIGINT (Ctrl-C) still stops at once; a second SIGTERM during the drain changes nothing. The
circus and BentoML internals this relies on are checked at start-up (:func:`check`, from
:func:`adapters.bento.seams.check`).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging
import os
import signal
import socket
import stat
import sys
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("bentoml.oip.drain")  # BentoML's handlers: the server's log
SIGNAL = signal.SIGUSR1
"""Sent by the draining arbiter to each gateway worker: report not ready from now on."""
GATEWAY_WATCHER = "service"
"""The name BentoML gives the watcher of the entry service's workers (``serve_http``)."""


class DrainUnavailable(RuntimeError):
    """circus or BentoML no longer has what the drain relies on; the message says what."""


def install(delay_s: float) -> None:
    """Make SIGTERM drain this ``bentoml serve`` (its arbiter, once started) for ``delay_s``."""
    from circus.sighandler import SysHandler

    draining = threading.Event()

    def handle_term(handler: Any) -> None:
        if draining.is_set():
            logger.info("already draining: SIGTERM ignored (SIGINT stops at once)")
            return
        draining.set()
        controller = handler.controller
        # NOTE: from a signal handler the loop may be asleep in select(): the thread-safe call
        # wakes it (tornado's add_callback_from_signal does the same, and is deprecated)
        controller.loop.asyncio_loop.call_soon_threadsafe(
            lambda: asyncio.ensure_future(_drain(controller, delay_s))
        )

    SysHandler.handle_term = handle_term


async def _drain(controller: Any, delay_s: float) -> None:
    """Steps 1 to 4 of the module's docstring, on the arbiter's event loop; circus quits at the
    end whatever happened."""
    from _bentoml_impl.server.serving import API_SERVER_NAME
    from circus.client import make_json

    arbiter = controller.arbiter
    try:
        if controller.caller is not None:  # as circus's own stop: no restart of a worker now
            controller.caller.stop()
        gateway = arbiter.get_watcher(GATEWAY_WATCHER)
        for process in gateway.get_active_processes():
            gateway.send_signal(process.pid, SIGNAL)
        listener = arbiter.get_socket(API_SERVER_NAME)
        if listener is not None:
            listener.close()
        logger.info("draining: not ready, still serving for %g s (OIP_DRAIN_DELAY_S)", delay_s)
        await asyncio.sleep(delay_s)
        logger.info("draining: the gateway finishes what it holds and stops")
        await gateway.stop()
    except Exception:
        logger.exception("draining failed; stopping the usual way")
    finally:
        controller.dispatch((None, make_json("quit")))


def close_inherited_listeners() -> None:
    """In a runner worker: close the gateway's listening socket, which circus hands to every
    worker it starts (it spawns them all with the arbiter's sockets). Held here, it would keep
    the kernel accepting connections for a gateway that has stopped, until the runner stops
    (and then reset them): a draining replica must refuse them instead, so that a balancer
    that has not noticed yet tries another replica.

    The runner serves on a Unix socket of its own (BentoML's for a dependency on POSIX), so
    every TCP socket it listens on is inherited; the one BentoML gave it (``--fd``) is kept
    whatever its kind.
    """
    own = {int(v) for k, v in zip(sys.argv, sys.argv[1:], strict=False) if k == "--fd"}
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:  # not Linux: nothing to find the sockets with
        return
    for fd in set(fds) - own:
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            with socket.socket(fileno=os.dup(fd)) as sock:  # the copy, closed on leaving
                listening = (
                    sock.family in (socket.AF_INET, socket.AF_INET6)
                    and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
                )
        except OSError:  # gone meanwhile (the listing's own descriptor), or not a socket
            continue
        if listening:
            os.close(fd)


def ignore_signal() -> None:
    """In a gateway worker, before its models load: :data:`SIGNAL` is ignored until
    :func:`on_signal` (a worker that is not ready yet has nothing to report; the default
    action would kill it)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(SIGNAL, signal.SIG_IGN)


def on_signal(drain: Callable[[], None]) -> None:
    """In a gateway worker's event loop, once it serves: :data:`SIGNAL` calls ``drain``."""

    def draining() -> None:
        logger.info("draining: this worker reports not ready")
        drain()

    try:
        asyncio.get_running_loop().add_signal_handler(SIGNAL, draining)
    except (ValueError, RuntimeError):  # a loop outside the main thread (a test's app): no signals
        logger.debug("the drain signal is not handled outside the main thread")


def check() -> None:
    """What :func:`install` and :func:`_drain` call exists, and BentoML still names the gateway's
    watcher and socket as :func:`_drain` finds them.

    Raises:
        DrainUnavailable: naming what is missing.
    """
    from _bentoml_impl.server import serving
    from circus import arbiter, client, controller, sighandler, watcher

    needed = {
        sighandler.SysHandler: ("signal", "handle_term"),
        controller.Controller: ("dispatch",),
        arbiter.Arbiter: ("get_watcher", "get_socket"),
        watcher.Watcher: ("get_active_processes", "send_signal", "stop"),
    }
    for cls, names in needed.items():
        for name in names:
            if not callable(getattr(cls, name, None)):
                raise DrainUnavailable(f"circus's {cls.__name__} has no {name}")
    if "handle_%s" not in inspect.getsource(sighandler.SysHandler.signal):
        raise DrainUnavailable("circus no longer dispatches signals to handle_<name>")
    if not callable(getattr(client, "make_json", None)):
        raise DrainUnavailable("circus's client has no make_json")
    from tornado.platform.asyncio import BaseAsyncIOLoop

    if "self.asyncio_loop = " not in inspect.getsource(BaseAsyncIOLoop.initialize):
        raise DrainUnavailable("tornado's loop no longer exposes its asyncio_loop")
    source = inspect.getsource(controller.Controller)
    if any(f"self.{name} = " not in source for name in ("arbiter", "loop", "caller")):
        raise DrainUnavailable("circus's Controller keeps no arbiter, loop or caller")
    if not isinstance(getattr(serving, "API_SERVER_NAME", None), str):
        raise DrainUnavailable("BentoML no longer names its API socket API_SERVER_NAME")
    watchers = {
        keyword.value.value
        for node in ast.walk(ast.parse(inspect.getsource(serving.serve_http)))
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "create_watcher"
        for keyword in node.keywords
        if keyword.arg == "name" and isinstance(keyword.value, ast.Constant)
    }
    if GATEWAY_WATCHER not in watchers:
        raise DrainUnavailable(f"BentoML no longer names the gateway's watcher {GATEWAY_WATCHER!r}")
