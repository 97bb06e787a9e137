"""The model repository: what the BentoML store holds for the servable names, loading it into the
:class:`~adapters.registry.Registry`, and the repository extension (index, load, unload).

A (re)load reads every stored version of one name, keeps those that can be served (a version
whose signature cannot be derived is UNAVAILABLE with its reason, never fatal to the others),
preloads the in-process estimators, and only then swaps the model's whole
:class:`~adapters.registry.ServedModel` into the registry: a request resolves either the old set
of versions or the new one, and never a version whose estimator is not there yet. Polling
(``OIP_POLL_INTERVAL_S``) runs the same load for every loaded name.

Served from a Bento, only the versions the Bento carries are considered (``only``): a Bento
serves what it was built with, and a load re-reads that set.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any

import anyio

from .errors import BadRequest, ModelNotFound
from .registry import ModelVersion, Registry, ServedModel
from .runtime import Executor
from .signature import Signature

logger = logging.getLogger(__name__)
READY, UNAVAILABLE, UNLOADED = "READY", "UNAVAILABLE", "UNLOADED"


def stored_versions(name: str) -> list[Any]:
    """Every version of ``name`` in the current BentoML store (none is not an error here)."""
    import bentoml
    from bentoml.exceptions import NotFound as StoreNotFound

    try:
        return list(bentoml.models.list(name))
    except StoreNotFound:
        return []


class Repository:
    """The servable model names and their stored versions, loaded into ``registry``.

    Args:
        names: the names the server may serve (``OIP_MODELS``).
        default_version: the version or alias of a model's unversioned routes, by name.
        executors: each name's executor, told which versions to have ready.
        only: the tags to consider (a Bento's), or ``None`` for the whole store.
        signatures: per model name, a signature overriding the stored or derived one.
    """

    def __init__(
        self,
        names: Collection[str],
        default_version: Callable[[str], str],
        executors: Mapping[str, Executor],
        *,
        only: Collection[str] | None = None,
        signatures: Mapping[str, Signature] | None = None,
    ) -> None:
        self.names = tuple(names)
        self.default_version = default_version
        self.executors = executors
        self.only = only
        self.signatures = signatures or {}
        self.registry = Registry()
        self.unavailable: dict[str, dict[str, str]] = {}  # name -> version -> reason
        self._read: dict[str, ModelVersion | str] = {}  # tag -> version, or why it failed
        self._lock = asyncio.Lock()

    def scan(self, name: str) -> list[ModelVersion]:
        """The servable versions of ``name`` in the store; the others go to ``unavailable``.

        Each tag is read once (a stored version never changes), so polling costs a listing.
        """
        good, bad = [], {}
        for stored in self._stored(name):
            tag = str(stored.tag)
            if tag not in self._read:
                try:
                    override = self.signatures.get(name)
                    self._read[tag] = ModelVersion.from_stored(stored, signature=override)
                except Exception as exc:  # a user's model we cannot describe: say why
                    logger.warning("%s cannot be served: %s", tag, exc)
                    self._read[tag] = f"{type(exc).__name__}: {exc}"
            read = self._read[tag]
            if isinstance(read, ModelVersion):
                good.append(read)
            else:
                bad[stored.tag.version] = read
        self.unavailable[name] = bad
        return good

    def open(self, name: str) -> ServedModel:
        """A :class:`ServedModel` of every servable stored version of ``name``.

        Raises:
            ValueError: no servable version, or the configured default version does not exist.
        """
        versions = self.scan(name)
        if not versions:
            reasons = "; ".join(f"{v}: {r}" for v, r in self.unavailable[name].items())
            raise ValueError(
                f"model '{name}' has no servable version in the BentoML store"
                + (f" ({reasons})" if reasons else "; train it first (python train.py)")
            )
        return ServedModel(name, versions, default=self.default_version(name))

    def start(self) -> None:
        """Load every servable name at start-up, failing on the first that cannot be served."""
        for name in self.names:
            model = self.open(name)
            self.executors[name].preload_sync(_tags(model))
            self.registry.models[name] = model

    async def load(self, name: str) -> ServedModel:
        """(Re)load ``name`` from the store: new versions become servable, aliases move."""
        self._check(name)
        async with self._lock:
            try:
                model = await anyio.to_thread.run_sync(self.open, name)
            except Exception as exc:  # VersionNotFound of the default too: the old model stays
                raise BadRequest(f"model '{name}' could not be loaded: {_text(exc)}") from None
            tags = _tags(model)
            executor = self.executors[name]
            await executor.preload(tags)
            previous = self.registry.models.get(name)
            self.registry.models[name] = model
            self.registry.unloaded.discard(name)
            if previous is not None:
                executor.forget([t for t in _tags(previous) if t not in tags])
        return model

    async def unload(self, name: str) -> None:
        """Stop serving ``name``: its routes answer 404 until it is loaded again."""
        self._check(name)
        async with self._lock:
            previous = self.registry.models.pop(name, None)
            self.registry.unloaded.add(name)
            if previous is not None:
                self.executors[name].forget(_tags(previous))

    def start_polling(self, interval_s: float) -> asyncio.Task[None]:
        """Reload every loaded model every ``interval_s`` seconds, on the running event loop."""
        self._poller = asyncio.get_running_loop().create_task(self.poll(interval_s))
        return self._poller

    async def poll(self, interval_s: float) -> None:
        """Reload every loaded model every ``interval_s`` seconds (new versions, moved aliases)."""
        while True:
            await asyncio.sleep(interval_s)
            for name in list(self.registry.models):
                try:
                    await self.load(name)
                except Exception:
                    logger.exception("polling the store for '%s' failed", name)

    def index(self, *, ready_only: bool = False) -> list[dict[str, str]]:
        """Every servable name x stored version: READY, UNAVAILABLE (with why) or UNLOADED."""
        entries = []
        for name in self.names:
            loaded = self.registry.models.get(name)
            if loaded is not None:
                entries += [_entry(name, v, READY, "") for v in loaded.versions]
                reasons = self.unavailable.get(name, {})
                entries += [_entry(name, v, UNAVAILABLE, r) for v, r in reasons.items()]
            else:
                why = "unloaded" if name in self.registry.unloaded else "not loaded"
                entries += [_entry(name, m.tag.version, UNLOADED, why) for m in self._stored(name)]
        return [e for e in entries if e["state"] == READY] if ready_only else entries

    def _stored(self, name: str) -> list[Any]:
        """The stored versions of ``name`` this repository considers (a Bento's only)."""
        return [m for m in stored_versions(name) if self.only is None or str(m.tag) in self.only]

    def _check(self, name: str) -> None:
        if name not in self.names:
            raise ModelNotFound(name, served=self.names, why="not in OIP_MODELS")


def _entry(name: str, version: str, state: str, reason: str) -> dict[str, str]:
    return {"name": name, "version": version, "state": state, "reason": reason}


def _tags(model: ServedModel) -> list[str]:
    return [v.tag for v in model.versions.values()]


def _text(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc)
