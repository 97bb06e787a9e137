"""The gateway's BentoML ``Service`` class: the fast lane in front of BentoML's app, and Bentos
that serve in any placement.

**What the fast lane bypasses, in one place.** With the lane on (``OIP_FAST_LANE=1``, the
default), a ``/v2`` request goes from the HTTP server straight to the V2 router
(:class:`~adapters.http.lane.V2FastLane`), past BentoML 1.4's per-request middlewares and past the
V2 Starlette app's own error middlewares. Each one, and what stands in for it:

==============================  ================================================================
bypassed                        for ``/v2`` requests, instead
==============================  ================================================================
request metrics middleware      ``oip_request_duration_seconds`` (:mod:`adapters.http.metrics`),
(``bentoml_api_server_*``)      labelled by endpoint, model, resolved version and status
OpenTelemetry middleware        none: V2 routes are untraced unless ``OIP_TRACING=1``, which
                                needs ``OIP_FAST_LANE=0``
access log middleware           the lane's own line on BentoML's ``bentoml.access`` logger
                                (``OIP_ACCESS_LOG=1``), same format
TimeoutMiddleware               the per-request deadline of the infer route
(``traffic.timeout``)           (``OIP_REQUEST_TIMEOUT_S``, 504 ``{"error"}``); other V2 routes
                                do no unbounded work
MaxConcurrencyMiddleware        none (``traffic.max_concurrency`` is not set by this project);
(``traffic.max_concurrency``)   the runner refuses calls over its latency budget (503)
``add_asgi_middleware``         not applied to ``/v2`` (this project adds none)
CORS (``http.cors``)            ``OIP_CORS_ORIGINS`` (:mod:`adapters.http.security`), in front of
                                every route, lane or not
ContextMiddleware               ``bentoml.context.request`` is unset in V2 routes (unused here)
Starlette error middlewares     :func:`adapters.http.routes.guarded` answers every error itself
==============================  ================================================================

In front of everything, lane or not: optional bearer-token auth and CORS
(:mod:`adapters.http.security`); in the HTTP server itself, a deadline for request headers and a cap
on open connections (:mod:`adapters.bento.connections`), which uvicorn as BentoML runs it lacks.

``OIP_FAST_LANE=0`` serves every request through BentoML's full stack (and the V2 app's
middlewares); the V2 routes, their errors, deadline and metrics behave the same.

**Any placement from one Bento.** The runner service exists only when some model is placed on
it (no idle process otherwise), so the service graph depends on ``OIP_PLACEMENT``, and a Bento
records the graph it was built with. BentoML's own ``Service.on_load_bento`` looks every
service of the graph being served up in that record and fails (``StopIteration``) on one it
lacks, so a Bento built in-process could not be served with ``OIP_PLACEMENT=runner``.
:meth:`GatewayService.on_load_bento` does what the upstream method does for this project's
models, which are all ``BentoModel`` references (the upstream only rewrites ``HuggingFaceModel``
revisions): it attaches the Bento to every service of the graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import bentoml
from starlette.types import ASGIApp

from adapters.bento import drain
from adapters.bento.runners import mime_types_cached
from adapters.config.settings import Limits
from adapters.http.lane import V2FastLane
from adapters.http.security import secure


class GatewayService(bentoml.Service[Any]):  # type: ignore[misc]  # bentoml ships no stubs
    """The gateway's service class (``@bentoml.service(service_class=GatewayService)``, an
    argument of ``bentoml.service`` in BentoML 1.4)."""

    v2_app: ASGIApp | None = None
    log_access: bool = False
    auth_tokens: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    limits: Limits | None = None

    def use_fast_lane(self, v2_app: ASGIApp, *, log_access: bool) -> None:
        """Send ``/v2`` requests of the main app straight to ``v2_app``'s router."""
        self.v2_app = v2_app
        self.log_access = log_access

    def use_security(self, *, tokens: Sequence[str], cors_origins: Sequence[str]) -> None:
        """Bearer-token auth and CORS in front of every route (:mod:`adapters.http.security`)."""
        self.auth_tokens, self.cors_origins = tuple(tokens), tuple(cors_origins)

    def use_limits(self, limits: Limits) -> None:
        """Header deadline and connection cap for the gateway's HTTP server."""
        self.limits = limits

    def to_asgi(self, is_main: bool = True) -> Any:
        app = super().to_asgi(is_main=is_main)
        if not is_main:
            return app
        drain.ignore_signal()  # until the worker serves (service.py: on_signal)
        mime_types_cached()  # the client to the runner asks on every call (bento/runners.py)
        if self.limits is not None:  # before BentoML builds the uvicorn server of this worker
            from adapters.bento import connections  # uvicorn: the worker's import, not the CLI's

            connections.install(
                header_timeout_s=self.limits.read_timeout_s,
                max_connections=self.limits.max_connections,
            )
        if self.v2_app is not None:
            app = V2FastLane(self.v2_app, app, log_access=self.log_access)
        return secure(app, tokens=self.auth_tokens, cors_origins=self.cors_origins)

    def on_load_bento(self, bento: Any) -> None:
        for svc in self.all_services().values():
            svc.bento = bento
