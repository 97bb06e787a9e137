"""The model repository: what the BentoML store holds for the servable names, loading it into the
:class:`~adapters.models.registry.Registry`, and the repository extension (index, load, unload).

A (re)load reads every stored version of one name, has its executor load their estimators
(in process, or in every runner worker), and only then swaps the model's whole
:class:`~adapters.models.registry.ServedModel` into the registry: a request resolves either the
old set of versions or the new one, and never a version whose estimator is not there yet. The
versions that left the set are then forgotten (their estimators freed). A version whose signature
cannot be derived, or whose estimator cannot be loaded, is UNAVAILABLE with its reason, never fatal
to the others, and is tried again by the next load (only successes are remembered; a failure is
logged once, not on every poll). Unload forgets every version of the model. Polling
(``OIP_POLL_INTERVAL_S``) runs the same load for every loaded name.

Served from a Bento, only the versions the Bento carries are considered (``only``): a Bento
serves what it was built with, and a load re-reads that set.

Making a version ready is the executor's (:class:`Holder`): it loads the estimator and answers a
warm-up request with it, in its placement, before the version is swapped in; a warm-up that fails
makes the version UNAVAILABLE with the error. Each load also reads the model's
:class:`~adapters.models.routing.Rollout` again (default, weighted aliases, shadow, logging).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

import anyio

from adapters.models.registry import ModelVersion, Registry, ServedModel
from adapters.models.routing import Rollout
from adapters.models.signature import Signature
from adapters.protocol.errors import BadRequest, ModelNotFound, VersionNotFound

logger = logging.getLogger(__name__)
READY, UNAVAILABLE, UNLOADED = "READY", "UNAVAILABLE", "UNLOADED"
EVICTED = "evicted (OIP_MAX_LOADED_VERSIONS): loaded again on its next call"


def stored_versions(name: str) -> list[Any]:
    """Every version of ``name`` in the current BentoML store (none is not an error here)."""
    import bentoml
    from bentoml.exceptions import NotFound as StoreNotFound

    try:
        return list(bentoml.models.list(name))
    except StoreNotFound:
        return []


class Holder(Protocol):
    """What the repository asks of a model's executor: hold the estimators of exactly the
    versions it is told to (every executor of :mod:`adapters.execution` is one; declared here so
    that the store's side never depends on where predict runs)."""

    def preload_sync(self, tags: Sequence[str]) -> dict[str, str]:
        """Make these versions ready (at start-up): load and warm up each (oldest first: under
        a memory budget the newest stay loaded); returns those that could not be, with why."""
        ...

    async def preload(self, tags: Sequence[str]) -> dict[str, str]:
        """The same, off the event loop (repository load, polling)."""
        ...

    async def forget(self, tags: Sequence[str]) -> None:
        """These versions are no longer served: free their estimators."""
        ...

    def resident(self) -> Collection[str]:
        """The served versions whose estimators are held now (the others were evicted under a
        memory budget: still served, loaded again on their next call)."""
        ...


H = TypeVar("H", bound=Holder)


class Repository(Generic[H]):
    """The servable model names and their stored versions, loaded into ``registry``.

    Args:
        names: the names the server may serve (``OIP_MODELS``).
        rollout: by name, the model's :class:`Rollout` (read again on every load), or just the
            version or alias of its unversioned routes.
        executors: each name's executor, told which versions to have ready.
        only: the tags to consider (a Bento's), or ``None`` for the whole store.
        signatures: per model name, a signature overriding the stored or derived one.
    """

    def __init__(
        self,
        names: Collection[str],
        rollout: Callable[[str], Rollout | str],
        executors: Mapping[str, H],
        *,
        only: Collection[str] | None = None,
        signatures: Mapping[str, Signature] | None = None,
    ) -> None:
        self.names = tuple(names)
        self.rollout = rollout
        self.executors = executors
        self.only = only
        self.signatures = signatures or {}
        self.registry = Registry()
        self.unavailable: dict[str, dict[str, str]] = {}  # name -> version -> reason
        self._read: dict[str, ModelVersion] = {}  # tag -> version: successes only
        self._logged: dict[str, str] = {}  # tag (or polled name) -> the failure last logged
        self._lock = asyncio.Lock()
        self.warmed: Callable[[ModelVersion], None] = lambda version: None  # each new ready one

    def scan(self, name: str) -> list[ModelVersion]:
        """The describable versions of ``name`` in the store; the others go to ``unavailable``.

        A version read once is kept (a stored version never changes), so polling costs a
        listing; one that failed is read again next time (its file may have been fixed).
        """
        good, self.unavailable[name] = [], {}
        stored = self._stored(name)
        for entry in stored:
            tag = str(entry.tag)
            if tag not in self._read:
                try:
                    override = self.signatures.get(name)
                    self._read[tag] = ModelVersion.from_stored(entry, signature=override)
                except Exception as exc:  # a user's model we cannot describe: say why
                    self._fail(name, tag, f"{type(exc).__name__}: {exc}")
                    continue
            good.append(self._read[tag])
        tags = {str(entry.tag) for entry in stored}
        for gone in [t for t in self._read if t.split(":")[0] == name and t not in tags]:
            del self._read[gone]  # deleted from the store
        return good

    def _fail(self, name: str, tag: str, reason: str) -> None:
        """``tag`` is UNAVAILABLE for ``reason``; logged when the reason is new."""
        self.unavailable.setdefault(name, {})[tag.split(":")[1]] = reason
        if self._logged.get(tag) != reason:
            logger.warning("%s cannot be served: %s", tag, reason)
            self._logged[tag] = reason

    def _served(
        self, name: str, versions: list[ModelVersion], failed: dict[str, str]
    ) -> ServedModel:
        """A :class:`ServedModel` of the versions whose estimators could be loaded.

        Raises:
            ValueError: no servable version, or the configured default version is not one.
        """
        for tag, reason in failed.items():
            self._fail(name, tag, reason)
        ready = [v for v in versions if v.tag not in failed]
        for version in ready:
            self._logged.pop(version.tag, None)
        if not ready:
            reasons = "; ".join(f"{v}: {r}" for v, r in self.unavailable[name].items())
            raise ValueError(
                f"model '{name}' has no servable version in the BentoML store"
                + (f" ({reasons})" if reasons else "; train it first (python train.py)")
            )
        rollout = self.rollout(name)
        if isinstance(rollout, str):
            rollout = Rollout(default=rollout)
        return ServedModel(name, ready, rollout=rollout)

    def open(self, name: str) -> ServedModel:
        """A :class:`ServedModel` of every describable stored version of ``name`` (no estimator
        is loaded: what ``python -m adapters.bento.describe`` shows).

        Raises:
            ValueError: no servable version, or the configured default version does not exist.
        """
        return self._served(name, self.scan(name), {})

    def start(self) -> None:
        """Load every servable name at start-up, failing on the first that cannot be served."""
        for name in self.names:
            versions = self.scan(name)
            failed = self.executors[name].preload_sync(_oldest_first(versions))
            model = self.registry.models[name] = self._served(name, versions, failed)
            for version in model.versions.values():
                self.warmed(version)

    async def load(self, name: str) -> ServedModel:
        """(Re)load ``name`` from the store: new versions become servable, aliases move, and
        versions no longer in the store are freed."""
        self._check(name)
        async with self._lock:
            executor = self.executors[name]
            previous = self.registry.models.get(name)
            kept = _tags(previous) if previous is not None else []
            try:
                versions = await anyio.to_thread.run_sync(self.scan, name)
            except Exception as exc:
                raise BadRequest(f"model '{name}' could not be loaded: {_text(exc)}") from None
            failed = await executor.preload(_oldest_first(versions))
            try:
                model = self._served(name, versions, failed)
            except (ValueError, VersionNotFound) as exc:  # the old model stays
                await executor.forget([v.tag for v in versions if v.tag not in kept])
                raise BadRequest(f"model '{name}' could not be loaded: {_text(exc)}") from None
            self.registry.models[name] = model
            self.registry.unloaded.discard(name)
            await executor.forget([t for t in kept if t not in _tags(model)])
            for version in model.versions.values():
                if version.tag not in kept:
                    self.warmed(version)
        return model

    async def unload(self, name: str) -> None:
        """Stop serving ``name`` and free its estimators: its routes answer 404 (and calls still
        queued for it, too) until it is loaded again."""
        self._check(name)
        async with self._lock:
            previous = self.registry.models.pop(name, None)
            self.registry.unloaded.add(name)
            if previous is not None:
                await self.executors[name].forget(_tags(previous))

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
                    self._logged.pop(name, None)
                except Exception as exc:  # logged once per distinct failure, not every poll
                    if self._logged.get(name) != repr(exc):
                        self._logged[name] = repr(exc)
                        logger.exception("polling the store for '%s' failed", name)

    def index(self, *, ready_only: bool = False) -> list[dict[str, Any]]:
        """Every servable name x stored version: READY, UNAVAILABLE (with why) or UNLOADED, and
        whether its estimator is ``loaded`` (a READY version evicted under a memory budget is
        not, and says so in ``reason``)."""
        entries = []
        for name in self.names:
            loaded = self.registry.models.get(name)
            if loaded is not None:
                held = self.executors[name].resident()
                entries += [
                    _entry(name, v.version, READY, "" if v.tag in held else EVICTED)
                    for v in loaded.versions.values()
                ]
                reasons = self.unavailable.get(name, {})
                entries += [_entry(name, v, UNAVAILABLE, r) for v, r in reasons.items()]
            else:
                why = "unloaded" if name in self.registry.unloaded else "not loaded"
                entries += [_entry(name, m.tag.version, UNLOADED, why) for m in self._stored(name)]
        return [e for e in entries if e["state"] == READY] if ready_only else entries

    def describe(self, tag: str) -> ModelVersion | None:
        """The stored version ``tag`` as this repository reads it (with a configured signature),
        ``None`` if it cannot be described: what its warm-up request is built from."""
        known = self._read.get(tag)
        if known is not None:
            return known
        import bentoml

        name = tag.split(":")[0]
        try:
            stored = bentoml.models.get(tag)
            return ModelVersion.from_stored(stored, signature=self.signatures.get(name))
        except Exception:  # gone or unreadable: the load that needs it says why
            return None

    def _stored(self, name: str) -> list[Any]:
        """The stored versions of ``name`` this repository considers (a Bento's only)."""
        return [m for m in stored_versions(name) if self.only is None or str(m.tag) in self.only]

    def _check(self, name: str) -> None:
        if name not in self.names:
            raise ModelNotFound(name, served=self.names, why="not in OIP_MODELS")


def _entry(name: str, version: str, state: str, reason: str) -> dict[str, Any]:
    loaded = state == READY and reason != EVICTED
    return {"name": name, "version": version, "state": state, "reason": reason, "loaded": loaded}


def _oldest_first(versions: Sequence[ModelVersion]) -> list[str]:
    return [v.tag for v in sorted(versions, key=lambda v: v.created)]


def _tags(model: ServedModel) -> list[str]:
    return [v.tag for v in model.versions.values()]


def _text(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc)
