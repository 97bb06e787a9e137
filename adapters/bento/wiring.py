"""Wiring: configuration -> registry, executors and data plane, so ``service.py`` stays
declarative.

Each function answers one question a service asks at start-up: which stored versions does the
Bento carry, which estimators does this process load, how is the data plane wired.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from adapters import __version__
from adapters.config.fields import ConfigError
from adapters.config.settings import Placement, Settings
from adapters.dataplane.plane import DataPlane
from adapters.execution.inprocess import InProcess
from adapters.execution.lane import Lanes
from adapters.execution.runner import RunnerClient
from adapters.execution.runtime import Executor
from adapters.execution.worker import RunnerWorker
from adapters.models.registry import ModelVersion, ServedModel
from adapters.models.repository import Holder, Repository, stored_versions

Cls = TypeVar("Cls", bound=type)


def bento_tags(bento: Any) -> set[str] | None:
    """The model tags a Bento was built with, or ``None`` when serving from the source tree."""
    if bento is None:
        return None
    return {str(model.tag) for model in bento.info.all_models}


def runner_worker(settings: Settings, *, bento: Any = None) -> RunnerWorker:
    """This runner worker's estimators: at first every servable version of the models placed
    on the runner (what the gateway serves at start-up), then whatever the gateways' views say
    (:mod:`adapters.execution.worker`)."""
    from bentoml import server_context

    from adapters.bento import shared_directory

    names = settings.models_in(Placement.RUNNER)
    repository: Repository[Holder] = Repository(
        names, settings.default_version, {}, only=bento_tags(bento), signatures=settings.signatures
    )
    versions = sorted((v for name in names for v in repository.scan(name)), key=lambda v: v.created)
    return RunnerWorker(
        [v.tag for v in versions],
        index=server_context.worker_index or 0,
        workers=settings.runner_workers,
        directory=shared_directory(),
        budget=settings.max_loaded_versions,
        describe=repository.describe,
    )


def with_runner_apis(settings: Settings) -> Callable[[Cls], Cls]:
    """A class decorator for the runner service: one batchable API per runner-placed model with
    batching of its own (``[model.<name>]`` in ``OIP_CONFIG``), named by
    :meth:`Settings.runner_apis`. BentoML batches per API; the other models share ``run``.

    It runs before ``@bentoml.service`` sees the class, which then serves the APIs like any
    declared one; each predicts with the class's ``worker`` (a :class:`RunnerWorker`).
    """
    import bentoml

    def add(cls: Cls) -> Cls:
        for name, api in settings.runner_apis().items():
            batching = settings.batching(name)

            def run(self: Any, calls: list[Any]) -> list[Any]:
                return self.worker.run(calls)  # type: ignore[no-any-return]

            run.__name__ = run.__qualname__ = api
            decorate = bentoml.api(
                batchable=True,
                batch_dim=0,
                max_batch_size=batching.max_batch_size,
                max_latency_ms=batching.max_latency_ms,
            )
            setattr(cls, api, decorate(run))
        return cls

    return add


def build_dataplane(settings: Settings, runner: Any = None, *, bento: Any = None) -> DataPlane:
    """The gateway's data plane: in-process models loaded here, the others sent to ``runner``.

    Args:
        settings: what is served and where.
        runner: the runner service's client (``bentoml.depends``), needed only when some model
            is placed on the runner.
        bento: the Bento being served (``Service.bento``), if any; only the versions it
            references are served, even if the store beside it has newer ones.

    Raises:
        ValueError: a served model has no servable version, or no runner runs for it.
    """
    budget = settings.max_loaded_versions
    inprocess = InProcess(
        batching=settings.batching, budget=budget, describe=lambda tag: repository.describe(tag)
    )
    remote = None
    if runner is not None:
        apis = settings.runner_apis()
        lanes = None
        if settings.runner_lane:
            from adapters.bento import shared_directory

            lanes = Lanes(shared_directory())
        remote = RunnerClient(
            runner, apis=apis, budget=budget, batching=settings.batching, lanes=lanes
        )
    executors: dict[str, Executor] = {}
    for name in settings.models:
        if settings.placement(name) is Placement.INPROCESS:
            executors[name] = inprocess
        elif remote is None:
            raise ValueError(f"model '{name}' is placed on the runner but no runner is running")
        else:
            executors[name] = remote
    repository = Repository(
        settings.models,
        lambda name: settings.reread().rollout(name),  # each load reads the section again
        executors,
        only=bento_tags(bento),
        signatures=settings.signatures,
    )
    dataplane = DataPlane(
        repository,
        server_name=settings.server_name,
        server_version=__version__,
        limits=settings.limits,
        predictions_db=settings.predictions_db,
    )
    repository.start()  # after the data plane: its statistics count each version's warm-up
    return dataplane


def check_store(settings: Settings) -> list[str]:
    """What can be checked against the store before any worker starts: each served model has a
    version, each default version exists, and some version of each model can be served.

    Returns:
        the tag of every stored version of every served model, or of the versions
        ``OIP_BENTO_MODELS`` selects: what a Bento must carry (one read of the store serves
        both questions).

    Raises:
        ConfigError: naming the variable and the value.
    """
    tags = []
    chosen = selection(settings)
    for name in settings.models:
        stored = stored_versions(name)
        tags += _chosen(name, stored, chosen[name]) if chosen else [str(m.tag) for m in stored]
        if not stored:
            raise ConfigError(
                f"OIP_MODELS: {name!r} has no version in the BentoML store; train it "
                "(python train.py) or save it (python -m adapters.register), or remove it"
            )
        rollout = settings.rollout(name)
        versions = [m.tag.version for m in stored]
        known = ("latest", "best", *rollout.aliases, *versions)
        listed = ", ".join(versions[:5]) + (", ..." if len(versions) > 5 else "")
        if rollout.default not in known:
            raise ConfigError(
                f"OIP_DEFAULT_VERSION: {rollout.default!r} for model {name!r} is not latest, "
                f"best, one of its aliases or one of its versions ({listed})"
            )
        named = [(f"[model.{name}.aliases] {a}", t) for a, w in rollout.aliases.items() for t in w]
        for where, target in [*named, (f"[model.{name}] shadow", rollout.shadow)]:
            if target is not None and target not in known:
                raise ConfigError(
                    f"OIP_CONFIG {where}: {target!r} is not latest, best, an alias or one of "
                    f"its versions ({listed})"
                )
        _check_servable(name, stored, settings)
    return tags


def selection(settings: Settings) -> dict[str, list[str]]:
    """``OIP_BENTO_MODELS`` by model name: the versions (or aliases) a Bento is to pack; empty
    when it is not set (every stored version).

    Raises:
        ConfigError: an entry that is not ``name:version``, a name not in ``OIP_MODELS``, or a
            served model with no version selected.
    """
    chosen: dict[str, list[str]] = {}
    for entry in settings.bento_models.replace(",", " ").split():
        name, sep, version = entry.partition(":")
        if not (sep and name and version):
            raise ConfigError(f"OIP_BENTO_MODELS: {entry!r} is not name:version")
        if name not in settings.models:
            raise ConfigError(
                f"OIP_BENTO_MODELS: {name!r} is not served (OIP_MODELS: "
                f"{', '.join(settings.models)})"
            )
        chosen.setdefault(name, []).append(version)
    missing = [name for name in settings.models if chosen and name not in chosen]
    if missing:
        raise ConfigError(f"OIP_BENTO_MODELS: no version of {missing[0]!r}, which is served")
    return chosen


def _chosen(name: str, stored: list[Any], versions: list[str]) -> list[str]:
    """The tags of the selected versions of ``name``; ``latest`` and ``best`` resolved as the
    server resolves them, over the versions it could describe."""
    tags = []
    aliases: dict[str, ModelVersion] = {}
    for version in versions:
        if version in ("latest", "best"):
            if not aliases:
                described = []
                for entry in stored:
                    try:
                        described.append(ModelVersion.from_stored(entry))
                    except Exception:  # not servable: never what an alias means
                        continue
                aliases = ServedModel(name, described).aliases if described else {}
            if version not in aliases:
                raise ConfigError(f"OIP_BENTO_MODELS: {name} has no servable version")
            tags.append(aliases[version].tag)
        elif version in {m.tag.version for m in stored}:
            tags.append(f"{name}:{version}")
        else:
            raise ConfigError(f"OIP_BENTO_MODELS: {name}:{version} is not in the store")
    return list(dict.fromkeys(tags))


def _check_servable(name: str, stored: list[Any], settings: Settings) -> None:
    """Some version has a signature: stored, configured, or derivable (newest first)."""
    if name in settings.signatures or any("signature" in m.info.metadata for m in stored):
        return
    problems = []
    for version in sorted(stored, key=lambda m: m.info.creation_time, reverse=True):
        try:
            ModelVersion.from_stored(version)
            return
        except Exception as exc:
            problems.append(f"{version.tag.version}: {exc}")
    raise ConfigError(
        f"OIP_MODELS: {name!r} has no version that can be served ({'; '.join(problems)[:500]}); "
        "give it a signature in OIP_CONFIG or save it with a sample (python -m adapters.register)"
    )
