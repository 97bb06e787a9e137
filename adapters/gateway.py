"""The gateway's BentoML ``Service`` class: a fast lane for V2 requests, Bentos that serve in
any placement.

**Fast lane.** A direct lane from the HTTP server to the V2 app, past BentoML's per-request
middlewares.

BentoML 1.4 wraps every request of an entry service in its own ASGI middlewares (request
metrics, OpenTelemetry, access log, timeout, context) before our mounted app sees it. For a
tiny model that stack, not the model, is the cost: measured on the 2-core development machine
(iris 1x4, wrk 64 connections, access log off), BentoML's default stack gave ~320 req/s and
excluding V2 routes from tracing ~680 req/s (README "Performance" has the full table).

:class:`GatewayService` is the ``service_class`` of the gateway (a documented argument of
``@bentoml.service``): its ``to_asgi`` returns BentoML's app wrapped by :class:`V2FastLane`, which
hands ``/v2`` requests straight to the V2 app and everything else (``/metrics``, ``/livez``,
``/readyz``, lifespan) to BentoML. The lane keeps an access log (BentoML's logger) and a
request-latency histogram (``oip_request_duration_seconds`` on ``/metrics``).
``OIP_FAST_LANE=0`` restores BentoML's stack for every request.

**Any placement from one Bento.** The runner service exists only when some model is placed on
it, so the service graph depends on ``OIP_PLACEMENT``. A Bento records the graph it was built
with, and BentoML's ``Service.on_load_bento`` looks each service of the graph being served up in
that record, failing (``StopIteration``) on one it does not have: a Bento built in-process could
not be served with ``OIP_PLACEMENT=runner``. :meth:`GatewayService.on_load_bento` does the same
work but passes over services the record lacks.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import prometheus_client
from _bentoml_sdk.service.factory import Service
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("bentoml.access")  # BentoML's own access logger and handlers
V2_PREFIX = "/v2"


def is_v2(path: str) -> bool:
    return path == V2_PREFIX or path.startswith(V2_PREFIX + "/")


def route_of(path: str) -> tuple[str, str]:
    """``(endpoint, model)`` labels for a V2 path, bounded by the served model names."""
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[1] == "models":
        last = parts[-1] if len(parts) in (4, 6) else "metadata"
        return (last if last in ("infer", "ready") else "metadata"), parts[2]
    return ("health" if len(parts) > 1 and parts[1] == "health" else "server"), ""


class RequestMetrics:
    """Request count and latency of V2 routes on ``/metrics``.

    BentoML serves ``/metrics`` from the prometheus_client multiprocess directory it sets up for
    its workers, so a plain prometheus_client metric shows up there.
    """

    _histogram: Any = None  # one per process: prometheus_client refuses a second registration

    def __init__(self) -> None:
        if RequestMetrics._histogram is None:
            RequestMetrics._histogram = prometheus_client.Histogram(
                name="oip_request_duration_seconds",
                documentation="V2 request latency, by endpoint, model and status",
                labelnames=["endpoint", "model", "status"],
                buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            )
        self.duration = RequestMetrics._histogram
        self.children: dict[tuple[str, int], Any] = {}  # labelled series, by (path, status)

    def observe(self, path: str, status: int, seconds: float) -> None:
        child = self.children.get((path, status))
        if child is None:
            endpoint, model = route_of(path)
            if status == 404:  # model names come from clients: unknown ones share one series
                model = ""
            child = self.duration.labels(endpoint=endpoint, model=model, status=str(status))
            if len(self.children) < 10_000:  # bound the cache too
                self.children[(path, status)] = child
        child.observe(seconds)


class V2FastLane:
    """Route ``/v2`` HTTP requests to ``v2_app`` and the rest to ``fallback``."""

    def __init__(
        self,
        v2_app: ASGIApp,
        fallback: ASGIApp,
        *,
        log_access: bool,
        metrics: RequestMetrics | None = None,
    ) -> None:
        self.v2_app = v2_app
        # NOTE: the lane calls the V2 app's router, past Starlette's app-level error middlewares
        # (a measurable share of a small request); the routes answer their own errors.
        self.v2_router: ASGIApp = getattr(v2_app, "router", v2_app)
        self.fallback = fallback
        self.log_access = log_access
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_v2(scope["path"]):
            await self.fallback(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        scope["app"] = self.v2_app
        try:
            await self.v2_router(scope, receive, sending)
        finally:
            elapsed = time.perf_counter() - start
            if self.metrics is not None:
                self.metrics.observe(scope["path"], status, elapsed)
            if self.log_access and access_log.isEnabledFor(logging.INFO):
                client = scope.get("client") or ("-", 0)
                # a record made directly: Logger.info would also look up the caller's frame
                access_log.handle(
                    access_log.makeRecord(
                        access_log.name,
                        logging.INFO,
                        __file__,
                        0,
                        "%s:%s (scheme=http,method=%s,path=%s) (status=%s) %.3fms",
                        (
                            client[0],
                            client[1],
                            scope["method"],
                            scope["path"],
                            status,
                            elapsed * 1000,
                        ),
                        None,
                    )
                )


class GatewayService(Service[Any]):  # type: ignore[misc]  # bentoml ships no type stubs
    """The gateway's service class (``@bentoml.service(service_class=GatewayService)``).

    The V2 app is the one mounted with ``@bentoml.asgi_app(app, path="/")``; it still is mounted
    in BentoML's app too, which is the path every request takes when the lane is off.
    """

    fast_lane: bool = True
    log_access: bool = False

    def to_asgi(self, is_main: bool = True) -> Any:
        app = super().to_asgi(is_main=is_main)
        if not (is_main and self.fast_lane and self.mount_apps):
            return app
        v2_app = self.mount_apps[0][0]
        return V2FastLane(v2_app, app, log_access=self.log_access, metrics=RequestMetrics())

    def on_load_bento(self, bento: Any) -> None:
        recorded = {info.name for info in bento.info.services}
        for svc in self.all_services().values():
            if svc.name in recorded:
                Service.on_load_bento(_Only(svc), bento)
            else:
                svc.bento = bento


class _Only:
    """A view of one service as if it were the whole graph, for BentoML's ``on_load_bento``."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def all_services(self) -> dict[str, Any]:
        return {self.service.name: self.service}
