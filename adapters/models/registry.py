"""The model registry: model name + version or alias -> one stored version and its signature.

Every stored version of a served model is addressable by its BentoML version string. Two
aliases are computed from the store, never configured by hand:

* ``latest``: the newest version (creation time);
* ``best``: the version with the best value of the model's declared selection metric
  (``metadata["selection_metric"] = {"name": "accuracy", "goal": "max"}``; ``"min"`` for
  metrics where lower is better, e.g. rmse). Without one, ``best`` is ``latest``.

Unversioned routes use the model's default (``OIP_DEFAULT_VERSION``, ``latest`` unless set).
Configured weighted aliases (:mod:`adapters.models.routing`) pick a version per request.
Reading the store is :mod:`adapters.models.repository`'s job; this module only resolves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adapters.models.introspect import derive_signature, final_estimator
from adapters.models.libraries import library_properties, load_stored
from adapters.models.routing import Rollout, Split, draw, splits
from adapters.models.signature import Signature
from adapters.protocol.errors import ModelNotFound, VersionNotFound


@dataclass(frozen=True)
class ModelVersion:
    """One stored version: what the V2 metadata route describes and inference resolves to."""

    name: str
    version: str
    signature: Signature
    platform: str
    created: datetime
    score: float | None = None  # the selection metric, oriented so that higher is better
    properties: dict[str, str] = field(default_factory=dict)
    classes: tuple[str, ...] = ()  # class labels, by index (classification extension)
    features: tuple[str, ...] = ()  # feature names of a model whose input is one array
    sample: dict[str, Any] | None = None  # stored input rows by input name: the warm-up's

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"

    @classmethod
    def from_stored(cls, stored: Any, *, signature: Signature | None = None) -> ModelVersion:
        """Read a version from a ``bentoml.models`` entry (metadata only, unless it lacks a
        signature, in which case the estimator is loaded to derive one); ``signature``, when
        given (``OIP_CONFIG``), overrides both."""
        info = stored.info
        metadata: dict[str, Any] = dict(info.metadata)
        classes = tuple(str(metadata["classes"]).split(",")) if "classes" in metadata else ()
        estimator = metadata.get("estimator")
        libraries = library_properties(str(stored.tag), info, metadata)
        if signature is None and "signature" in metadata:
            signature = Signature.from_dict(metadata["signature"])
        if signature is None:  # a plain save_model: derive what the metadata does not say
            loaded = load_stored(stored)
            signature = derive_signature(loaded)
            final = final_estimator(loaded)
            classes = classes or tuple(str(c) for c in getattr(final, "classes_", ()))
            estimator = estimator or type(final).__name__
        if classes:
            metadata.setdefault("classes", ",".join(classes))
        sample = metadata.get("sample")
        estimator = estimator or info.module.rsplit(".", 1)[-1]
        return cls(
            name=stored.tag.name,
            version=stored.tag.version,
            signature=signature,
            platform=f"sklearn_{str(estimator).lower()}",
            created=info.creation_time,
            score=_score(metadata),
            properties=_properties(str(stored.tag), info.creation_time, metadata, info.labels)
            | libraries,
            classes=classes,
            features=tuple(str(f) for f in metadata.get("feature_names") or ()),
            sample=sample if isinstance(sample, dict) else None,
        )


def _score(metadata: Mapping[str, Any]) -> float | None:
    selection = metadata.get("selection_metric") or {}
    value = (metadata.get("metrics") or {}).get(selection.get("name"))
    if value is None:
        return None
    return -float(value) if selection.get("goal") == "min" else float(value)


def _properties(
    tag: str, created: datetime, metadata: Mapping[str, Any], labels: Mapping[str, str]
) -> dict[str, str]:
    """Flatten metadata (metrics, params, dataset, ...) into the string->string ``properties``."""
    props = {"bentoml_tag": tag, "created": created.isoformat()}
    props.update(_flatten({k: v for k, v in metadata.items() if k not in ("signature", "sample")}))
    props.update({f"label.{k}": str(v) for k, v in labels.items()})
    return props


def _flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, Mapping):
            flat.update(_flatten(item, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(item)
    return flat


class ServedModel:
    """All served versions of one model name, with the aliases resolved.

    Raises:
        ValueError: no version, a weighted alias named like a version, or one reaching itself.
        VersionNotFound: the default, the shadow or an alias target is no served version.
    """

    def __init__(
        self,
        name: str,
        versions: Iterable[ModelVersion],
        *,
        default: str = "latest",
        rollout: Rollout | None = None,
    ):
        ordered = sorted(versions, key=lambda v: v.created, reverse=True)
        if not ordered:
            raise ValueError(f"model '{name}' has no version in the BentoML store")
        self.name = name
        self.versions: dict[str, ModelVersion] = {v.version: v for v in ordered}
        scored = [v for v in ordered if v.score is not None]
        best = max(scored, key=lambda v: v.score or 0.0) if scored else ordered[0]
        self.aliases: dict[str, ModelVersion] = {"latest": ordered[0], "best": best}
        self.rollout = rollout or Rollout(default=default)
        self.splits: dict[str, Split] = splits(self.rollout.aliases)
        clash = [alias for alias in self.splits if alias in self.versions]
        if clash:
            raise ValueError(f"alias '{clash[0]}' of model '{name}' is also one of its versions")
        for alias in self.splits:
            self.targets(alias)
        self.default = self.heaviest(self.rollout.default)
        if self.rollout.shadow is not None:
            self.targets(self.rollout.shadow)

    def resolve(self, version: str | None, key: str | None = None) -> ModelVersion:
        """A concrete version, an alias, or ``None`` for the default; a weighted alias picks by
        ``key`` (a routing key), or at random without one."""
        name = self.rollout.default if version is None else version
        if name in self.splits:
            point = draw(key)
            while name in self.splits:
                name, point = self.splits[name].pick(point)
        return self._found(name)

    def heaviest(self, version: str | None) -> ModelVersion:
        """What a name stands for when no request picks: a weighted alias's heaviest target
        (its metadata, readiness and stored predictions)."""
        name = self.rollout.default if version is None else version
        while name in self.splits:
            name = self.splits[name].heaviest
        return self._found(name)

    def targets(self, version: str) -> list[ModelVersion]:
        """Every version a name may resolve to (statistics of a weighted alias)."""
        if version not in self.splits:
            return [self._found(version)]
        reached = [v for t in self.splits[version].targets for v in self.targets(t)]
        return list({v.version: v for v in reached}.values())

    def _found(self, name: str) -> ModelVersion:
        found = self.find(name)
        if found is None:
            known = [*self.aliases, *self.splits, *self.versions]
            raise VersionNotFound(self.name, name, served=known)
        return found

    def find(self, version: str) -> ModelVersion | None:
        """A concrete version or a computed alias, ``None`` if there is no such one."""
        return self.aliases.get(version) or self.versions.get(version)

    def label(self, version: str | None) -> str:
        """The metric label of what a request named: its version, a weighted alias's own name
        (configured, so bounded), ``""`` for what does not exist."""
        name = self.rollout.default if version is None else version
        if name in self.splits:
            return name
        found = self.find(name)
        return "" if found is None else found.version

    def aliases_of(self, version: ModelVersion) -> list[str]:
        return [alias for alias, target in self.aliases.items() if target is version]


class Registry:
    """The loaded models, by name: what requests resolve against.

    :class:`~adapters.models.repository.Repository` fills it from the store and replaces a model's
    :class:`ServedModel` whole when it is (re)loaded, so a request resolves against one
    consistent set of versions and aliases.
    """

    def __init__(self, models: Iterable[ServedModel] = ()):
        self.models = {m.name: m for m in models}
        self.unloaded: set[str] = set()  # servable names unloaded through the repository API

    def model(self, name: str) -> ServedModel:
        try:
            return self.models[name]
        except KeyError:
            if name in self.unloaded:
                raise ModelNotFound(
                    name, served=sorted(self.models), why="it is unloaded"
                ) from None
            raise ModelNotFound(name, served=sorted(self.models)) from None

    def resolve(self, name: str, version: str | None, key: str | None = None) -> ModelVersion:
        return self.model(name).resolve(version, key)

    def labels(self, name: str, version: str | None) -> tuple[str, str]:
        """``(model, version)`` metric labels: the served name and the version it resolves to,
        ``""`` for what does not exist, so clients cannot invent series."""
        model = self.models.get(name)
        if model is None:
            return "", ""
        return name, model.label(version)

    def all_versions(self) -> list[ModelVersion]:
        return [v for m in self.models.values() for v in m.versions.values()]
