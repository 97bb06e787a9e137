"""BentoML services: the V2 gateway and, for models placed there, the batching runner.

What is served and where each model's predict runs is configuration (``adapters.config``:
``OIP_MODELS``, ``OIP_PLACEMENT``, ...), never code. Every stored version of every served model is
referenced on the gateway, so ``bentoml build`` packs exactly the versions the server answers for.
"""

from __future__ import annotations

from typing import Any

import bentoml

from adapters import (
    DataPlane,
    InProcess,
    Placement,
    Registry,
    RunnerClient,
    Settings,
    __version__,
    build_app,
    load_estimators,
    predict_batch,
)

settings = Settings.from_env()
app = build_app()
SERVICE_CONFIG: dict[str, Any] = {
    "traffic": {"timeout": 60},
    "logging": {"access": {"enabled": settings.access_log}},
}


def _load_registry(placement: Placement | None = None) -> Registry:
    names = settings.models if placement is None else settings.models_in(placement)
    return Registry.from_store(names, settings.default_versions)


@bentoml.service(name="oip-runner", workers=settings.runner_workers, **SERVICE_CONFIG)
class ModelRunner:
    """Runs predict for the models placed on the runner; concurrent calls merge into batches."""

    def __init__(self) -> None:
        registry = _load_registry(Placement.RUNNER)
        self.estimators = load_estimators(v.tag for v in registry.all_versions())

    @bentoml.api(
        batchable=True,
        batch_dim=0,
        max_batch_size=settings.max_batch_size,
        max_latency_ms=settings.max_latency_ms,
    )
    def run(self, calls: list[Any]) -> list[Any]:
        return predict_batch(self.estimators, calls)

    @bentoml.api
    def ready(self) -> bool:
        return True


@bentoml.service(name="oip-gateway", description=__doc__, **SERVICE_CONFIG)
@bentoml.asgi_app(app, path="/")
class Gateway:
    """Serves the Open Inference Protocol; in-process models run here."""

    runner = bentoml.depends(ModelRunner) if settings.models_in(Placement.RUNNER) else None

    def __init__(self) -> None:
        registry = _load_registry()
        inprocess = InProcess(
            load_estimators(
                v.tag
                for v in registry.all_versions()
                if settings.placement(v.name) is Placement.INPROCESS
            )
        )
        remote = RunnerClient(self.runner) if self.runner is not None else None
        executors = {
            name: inprocess if settings.placement(name) is Placement.INPROCESS else remote
            for name in registry.models
        }
        app.state.dataplane = DataPlane(
            registry, executors, server_name=settings.server_name, server_version=__version__
        )


Gateway.models.extend(
    bentoml.models.BentoModel(m.tag) for name in settings.models for m in bentoml.models.list(name)
)
