"""BentoML services: the V2 gateway and, for models placed there, the batching runner.

What is served and where each model's predict runs is configuration (``adapters/config``:
``OIP_MODELS``, ``OIP_PLACEMENT``, ...), never code. Every stored version of every served model is
referenced on the gateway, so ``bentoml build`` packs exactly the versions the server answers for.
"""

from __future__ import annotations

from typing import Any

import anyio
import bentoml

from adapters.bento import (
    RUNNER_CONNECTION,
    GatewayService,
    RunnerService,
    collections_paused,
    drain,
    open_lane,
    read_yaml_with_libyaml,
    removed_at_exit,
    require,
)
from adapters.bento.wiring import build_dataplane, check_store, runner_worker, with_runner_apis
from adapters.config.fields import ConfigError
from adapters.config.settings import Placement, Settings
from adapters.http.routes import build_app

read_yaml_with_libyaml()  # BentoML's store reads, ~8x faster (adapters/bento/startup.py)
# `bentoml serve` (or `bentoml build`) itself, before any worker; the workers start from a
# checked store and do not need the list of stored versions, which only a Bento records.
PLANNING = bentoml.server_context.worker_index is None
try:  # a bad value is one line and a non-zero exit, never a restart loop
    settings = Settings.from_env()
    stored_tags = check_store(settings) if PLANNING else []
except ConfigError as exc:
    raise SystemExit(f"oip-sklearn: configuration error: {exc}") from None
if PLANNING:
    require()  # the upstream internals the protections rely on (adapters/bento/seams.py)
    removed_at_exit()  # the runner workers' shared directory (adapters/bento/runners.py)
    drain.install(settings.drain_delay_s)  # SIGTERM: not ready, serve, then stop (bento/drain.py)
app = build_app()
# BentoML's own timeout is a backstop one second past the V2 deadline, so that the V2 routes
# answer their own 504 (with their metric) whether or not the fast lane is on.
SERVICE_CONFIG: dict[str, Any] = {
    "traffic": {"timeout": settings.limits.request_timeout_s + 1},
    "logging": {"access": {"enabled": settings.access_log}},
}


def service_of(decorated: object) -> Any:
    """The ``bentoml.Service`` a decorated class became (type checkers still see the class)."""
    return decorated


def untraced(paths: str) -> dict[str, Any]:
    """Leave these routes out of OpenTelemetry unless OIP_TRACING=1 (spans cost more than a
    small predict, and no exporter is configured by default)."""
    return {} if settings.tracing else {"tracing": {"excluded_urls": paths}}


@bentoml.service(
    name="oip-runner",
    service_class=RunnerService,  # a batch leaves as soon as the runner is idle (bento/dispatch)
    workers=settings.runner_workers,
    runner_connection=RUNNER_CONNECTION,  # one session for the process's life
    **SERVICE_CONFIG,
    **untraced("/run,/ready,/served,/loaded"),
)
@with_runner_apis(settings)  # run_<model>: models with batching of their own (OIP_CONFIG)
class ModelRunner:
    """Runs predict for the models placed on the runner; concurrent calls merge into batches."""

    def __init__(self) -> None:
        drain.close_inherited_listeners()  # the gateway's socket: refused once it stops
        with collections_paused():
            self.worker = runner_worker(settings, bento=service_of(ModelRunner).bento)

    @bentoml.api(
        batchable=True,
        batch_dim=0,
        max_batch_size=settings.max_batch_size,
        max_latency_ms=settings.max_latency_ms,
    )
    def run(self, calls: list[Any]) -> list[Any]:
        return self.worker.run(calls)

    # NOTE: async, on threads of their own: BentoML runs a service's sync APIs one at a time
    # (`threads`, 1), so a long batch would hold a load or an unload back until it ends.
    @bentoml.api
    async def served(self, view: Any) -> dict[str, str]:
        """A gateway's changed view: load and free in every worker (adapters.execution.worker)."""
        return await anyio.to_thread.run_sync(self.worker.sync, view)

    @bentoml.api
    async def loaded(self) -> dict[int, list[str]]:
        """The tags each runner worker holds, by worker index."""
        return await anyio.to_thread.run_sync(self.worker.loaded)

    @bentoml.api
    def ready(self) -> bool:
        return True

    @bentoml.on_startup
    async def start_lane(self) -> None:
        """The gateways' direct lane into this worker's batching (adapters/execution/lane.py)."""
        self.lane = await open_lane(service_of(ModelRunner)) if settings.runner_lane else None

    @bentoml.on_shutdown
    async def stop_lane(self) -> None:
        lane = getattr(self, "lane", None)  # None: not opened
        if lane is not None:
            await lane.close()


@bentoml.service(
    name="oip-gateway",
    description=__doc__,
    service_class=GatewayService,
    workers=settings.workers,
    **SERVICE_CONFIG,
    **untraced("/v2"),
)
@bentoml.asgi_app(app, path="/")
class Gateway:
    """Serves the Open Inference Protocol; in-process models run here."""

    runner = bentoml.depends(ModelRunner) if settings.models_in(Placement.RUNNER) else None

    def __init__(self) -> None:
        bento = service_of(Gateway).bento
        with collections_paused():  # what start-up loads is never garbage (bento/startup.py)
            self.dataplane = build_dataplane(settings, self.runner, bento=bento)
        app.state.dataplane = self.dataplane

    @bentoml.on_deployment
    def own_grpc_port() -> None:
        """In `bentoml serve` itself, once, before any worker: the gRPC port is this server's
        for its life (its workers share it; another server on it stops here)."""
        if settings.grpc_port:
            from adapters.grpc.port import PortUnavailable, own

            try:
                own(settings.grpc_host, settings.grpc_port)
            except PortUnavailable as exc:
                raise SystemExit(f"oip-sklearn: {exc}") from None

    @bentoml.on_startup
    async def start_beside_http(self) -> None:
        """gRPC on OIP_GRPC_PORT; OIP_POLL_INTERVAL_S: new versions in the store load by
        themselves."""
        self.grpc = None
        if settings.grpc_port:
            from adapters.grpc.service import serve

            self.grpc = await serve(
                self.dataplane,
                host=settings.grpc_host,
                port=settings.grpc_port,
                tokens=settings.auth_tokens,
            )
        if settings.poll_interval_s:
            self.dataplane.repository.start_polling(settings.poll_interval_s)
        drain.on_signal(self.dataplane.drain)

    @bentoml.on_shutdown
    async def stop_grpc(self) -> None:
        if self.grpc is not None:
            await self.grpc.stop(grace=settings.limits.request_timeout_s)  # what it holds
        await self.dataplane.close()  # shadow runs under way, the inference log written out


if settings.fast_lane:
    service_of(Gateway).use_fast_lane(app, log_access=settings.access_log)
service_of(Gateway).use_limits(settings.limits)
service_of(Gateway).use_security(tokens=settings.auth_tokens, cors_origins=settings.cors_origins)
service_of(Gateway).models.extend(bentoml.models.BentoModel(tag) for tag in stored_tags)
