"""Wiring: configuration -> registry, executors and data plane, so ``service.py`` stays
declarative.

Each function answers one question a service asks at start-up: which stored versions does the
Bento carry, which estimators does this process load, how is the data plane wired.
"""

from __future__ import annotations

from typing import Any

from . import __version__
from .config import Placement, Settings
from .dataplane import DataPlane
from .registry import Registry, stored_versions
from .runtime import Executor, InProcess, RunnerClient, load_estimators


def stored_tags(settings: Settings) -> list[str]:
    """Every stored version of every served model: what the Bento must carry."""
    return [str(m.tag) for name in settings.models for m in stored_versions(name)]


def bento_tags(bento: Any) -> set[str] | None:
    """The model tags a Bento was built with, or ``None`` when serving from the source tree."""
    if bento is None:
        return None
    return {str(model.tag) for model in bento.info.all_models}


def load_registry(
    settings: Settings, placement: Placement | None = None, *, bento: Any = None
) -> Registry:
    """The registry of the served models, or of those with the given placement.

    Served from a Bento, only the versions the Bento references are served, even if the store
    beside it has newer ones.
    """
    names = settings.models if placement is None else settings.models_in(placement)
    return Registry.from_store(names, settings.default_version, only=bento_tags(bento))


def runner_estimators(settings: Settings, *, bento: Any = None) -> dict[str, Any]:
    """The estimators of every version of the models placed on the runner."""
    registry = load_registry(settings, Placement.RUNNER, bento=bento)
    return load_estimators(v.tag for v in registry.all_versions())


def build_dataplane(settings: Settings, runner: Any = None, *, bento: Any = None) -> DataPlane:
    """The gateway's data plane: in-process models loaded here, the others sent to ``runner``.

    Args:
        settings: what is served and where.
        runner: the runner service's client (``bentoml.depends``), needed only when some model
            is placed on the runner.
        bento: the Bento being served (``Service.bento``), if any.
    """
    registry = load_registry(settings, bento=bento)
    local = [
        v.tag for v in registry.all_versions() if settings.placement(v.name) is Placement.INPROCESS
    ]
    inprocess = InProcess(load_estimators(local), max_batch_size=settings.max_batch_size)
    remote = RunnerClient(runner) if runner is not None else None
    executors: dict[str, Executor] = {}
    for name in registry.models:
        if settings.placement(name) is Placement.INPROCESS:
            executors[name] = inprocess
        elif remote is None:
            raise ValueError(f"model '{name}' is placed on the runner but no runner is running")
        else:
            executors[name] = remote
    return DataPlane(
        registry,
        executors,
        server_name=settings.server_name,
        server_version=__version__,
        request_timeout_s=settings.request_timeout_s,
        max_body_bytes=settings.max_body_bytes,
    )
