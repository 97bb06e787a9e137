"""The runner's side of load, unload and delete: every runner worker holds the estimators of
exactly the versions the gateways serve on the runner, and frees the others.

BentoML's client to a dependency sends each call to one runner worker (whichever accepted its
connection) and cannot address a given one, so whatever the gateway tells the runner reaches
one worker. This is how all of them follow:

* **Views.** Each gateway process describes what it serves on the runner as a :class:`View`: its
  worker index, a generation that only grows (wall-clock nanoseconds of the change) and the
  tags. A worker serves the union of the newest view of each gateway and holds exactly those
  estimators. A view older than the one applied changes nothing, so a call sent before an
  unload and run after it cannot bring the version back.
* **Sync.** A change (repository load, unload, a poll that found new versions) is sent at once
  (:meth:`RunnerWorker.sync`). The worker that receives it loads and frees, writes the view into
  a directory its sibling workers share (one per ``bentoml serve``:
  :func:`~adapters.bento.runners.shared_directory`), and waits, at most ``wait_s``, until every
  live sibling has applied it: a load answers once every worker holds the new versions (with
  the reasons of those that could not be loaded), an unload once every worker has freed them.
* **Watching.** With several workers, each lists that directory every ``watch_s`` (0.1 s) and
  applies a newer view, so a worker that receives no call at all frees an unloaded version as
  soon as a busy one: stale estimators of an idle worker are bounded in time, not only in
  number. Chosen over freeing estimators a worker has not used for a while (that evicts served
  versions, and the next call pays a load) and over the gateway repeating its sync until every
  worker has answered (it cannot pick a worker, so nothing bounds how long that takes). Listing
  a handful of small files ten times a second costs nothing measurable.
* **Every call** carries its gateway's view too, so a worker that missed a sync (it was
  restarting, or the runner could not be reached) is brought up to date by its next call.

With several gateway processes (``OIP_WORKERS``), each has its view, kept per worker index: a
restarted gateway worker replaces its predecessor's (what is held stays bounded).

A call for a version no view serves is answered alone with 404; one for a served version this
worker could not load, 503 with why (:class:`~adapters.execution.runtime.NotServed`). A worker loads
only what a view adds (and, at start-up, what the gateways serve: the store's servable versions, or
the views in the directory when it is a restarted worker), never what a call asks for.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from adapters.execution.lane import private
from adapters.execution.residency import newest_warmed
from adapters.execution.runtime import (
    Describe,
    NotServed,
    Result,
    load_estimators,
    not_served,
    predict_batch,
    release_memory,
)
from adapters.protocol.codecs import Array

logger = logging.getLogger(__name__)
_VIEW_FILE = re.compile(r"view-(\d+)-(\d+)\.json")


class View:
    """What one gateway process serves on the runner, as of ``generation``.

    NOTE: a plain class, not a dataclass: BentoML's client ``model_dump``s a call's arguments
    before pickling them, which would turn a dataclass into a dict.
    """

    __slots__ = ("gateway", "generation", "tags")

    def __init__(self, gateway: int, generation: int, tags: frozenset[str]) -> None:
        self.gateway = gateway  # the gateway's worker index
        self.generation = generation  # grows with every change, across restarts of it too
        self.tags = tags

    def __repr__(self) -> str:
        return f"View({self.gateway}, {self.generation}, {sorted(self.tags)})"


RunnerCall = tuple[str, tuple[str, ...], Array, View]
"""One inference on the runner's wire: model tag, methods, input rows, its gateway's view."""


class RunnerWorker:
    """The estimators of one runner worker, kept to the gateways' views (module docstring).

    Args:
        tags: what to load at start-up when the directory holds no view yet (oldest first:
            under a memory budget, only the newest ``budget`` of them).
        index: this worker's index (``bentoml.server_context.worker_index``).
        workers: how many workers the runner has; with more than one, the directory is watched.
        directory: shared with the sibling workers.
    """

    def __init__(
        self,
        tags: Iterable[str],
        *,
        index: int,
        workers: int,
        directory: Path,
        watch_s: float = 0.1,
        wait_s: float = 10.0,
        budget: int = 0,
        describe: Describe | None = None,
    ) -> None:
        self.index, self.directory, self.wait_s = index, directory, wait_s
        self.describe = describe  # a tag's version: its warm-up input
        if not private(directory, make=True):
            raise RuntimeError(f"{directory} cannot be made this user's alone: no views kept")
        self.views: dict[int, View] = {}
        self.estimators: dict[str, Any] = {}  # replaced whole, never mutated: batches read it
        self.failed: dict[str, str] = {}  # served tags this worker could not load, and why
        self._startup = frozenset(tags)
        self._lock = threading.Lock()
        self._listed: frozenset[str] = frozenset()
        self._logged: dict[str, str] = {}  # tag -> the load failure last logged
        self._stop = threading.Event()
        with self._lock:
            self.views = self._read_views()  # a restarted worker: what is served now
            if budget and not self.views:  # each tried once, the newest kept
                self.estimators = newest_warmed(list(tags), budget, describe)
                self._startup = frozenset(self.estimators)
            self._reconcile()
        if workers > 1:
            threading.Thread(target=self._watch, args=(watch_s,), daemon=True).start()

    def run(self, calls: Sequence[RunnerCall]) -> list[Result]:
        """A batch: apply the newest view it carries, then predict; calls for versions that are
        not served (or could not be loaded here) are answered alone."""
        newest: dict[int, View] = {}
        for call in calls:
            view = call[3]
            if view.gateway not in newest or view.generation > newest[view.gateway].generation:
                newest[view.gateway] = view
        if self.apply(newest.values()):
            self._write_views(newest.values())
        estimators, failed = self.estimators, self.failed
        if any(c[0] not in estimators and c[0] not in failed for c in calls):
            with self._lock:  # a view applied by another thread may be loading it still
                estimators, failed = self.estimators, self.failed

        def unserved(tag: str) -> Result:
            if tag in failed:
                return NotServed(
                    f"'{tag}' could not be loaded on the runner: {failed[tag]}", retry=True
                )
            return not_served(tag)

        return predict_batch(estimators, [call[:3] for call in calls], unserved=unserved)

    def sync(self, view: View) -> dict[str, str]:
        """Apply a gateway's changed view here and wait (at most ``wait_s``) for every live
        sibling to apply it; returns the tags of the view some worker could not load, and why."""
        if self.apply([view]):
            self._write_views([view])
        failed = {t: r for t, r in self.failed.items() if t in view.tags}
        deadline = time.monotonic() + self.wait_s
        waiting = self._siblings()
        while waiting:
            for index, state in list(waiting.items()):
                applied = state.get("applied", {}).get(str(view.gateway), 0)
                if applied >= view.generation:
                    failed.update((t, r) for t, r in state["failed"].items() if t in view.tags)
                    del waiting[index]
            if not waiting:
                break
            if time.monotonic() >= deadline:
                logger.warning(
                    "runner workers %s did not apply the gateway's change in %g s; they will on "
                    "their next call",
                    sorted(waiting),
                    self.wait_s,
                )
                break
            time.sleep(0.02)
            waiting = {i: s for i, s in self._siblings().items() if i in waiting}
        return failed

    def loaded(self) -> dict[int, list[str]]:
        """The tags whose estimators each live worker holds, by worker index."""
        states = {i: s["loaded"] for i, s in self._siblings().items()}
        return {self.index: sorted(self.estimators), **states}

    def apply(self, views: Iterable[View]) -> bool:
        """Take the views newer than those applied; load and free accordingly. True if any."""
        fresh = [v for v in views if v.generation > self._generation(v.gateway)]
        if not fresh:
            return False
        with self._lock:
            fresh = [v for v in fresh if v.generation > self._generation(v.gateway)]
            for view in fresh:
                self.views[view.gateway] = view
            if fresh:
                self._reconcile()
        return bool(fresh)

    def stop(self) -> None:
        """Stop watching the directory (tests; a worker's thread dies with its process)."""
        self._stop.set()

    def _generation(self, gateway: int) -> int:
        view = self.views.get(gateway)
        return -1 if view is None else view.generation

    def _reconcile(self) -> None:
        """Under the lock: hold exactly the served versions (loading what is missing, retrying
        what failed), then publish this worker's state for its siblings."""
        served = (
            set().union(*(v.tags for v in self.views.values())) if self.views else self._startup
        )
        kept = {tag: e for tag, e in self.estimators.items() if tag in served}
        loaded, failed = load_estimators(sorted(served - kept.keys()), self.describe)
        for tag, reason in failed.items():
            if self._logged.get(tag) != reason:  # once, not on every retry
                logger.warning("runner worker %d cannot load %s: %s", self.index, tag, reason)
        self._logged.update(failed)
        for tag in loaded:
            self._logged.pop(tag, None)  # a later failure of it is news again
        freed = len(kept) < len(self.estimators)
        self.estimators, self.failed = {**kept, **loaded}, failed
        if freed:
            release_memory()
        self._publish()

    def _publish(self) -> None:
        state = {
            "pid": os.getpid(),
            "applied": {str(g): v.generation for g, v in self.views.items()},
            "loaded": sorted(self.estimators),
            "failed": self.failed,
        }
        _write(self.directory / f"worker-{self.index}.json", state)

    def _siblings(self) -> dict[int, dict[str, Any]]:
        """The published state of every other live worker."""
        import psutil

        states = {}
        for path in self.directory.glob("worker-*.json"):
            index = int(path.stem.split("-")[1])
            state = _read(path)
            if index != self.index and state is not None and psutil.pid_exists(state["pid"]):
                states[index] = state
        return states

    def _write_views(self, views: Iterable[View]) -> None:
        for view in views:
            name = f"view-{view.gateway}-{view.generation}.json"
            _write(self.directory / name, {"tags": sorted(view.tags)})

    def _read_views(self) -> dict[int, View]:
        """The newest view of each gateway in the directory; older ones are removed."""
        found: dict[int, list[tuple[int, Path]]] = {}
        for path in self.directory.glob("view-*.json"):
            match = _VIEW_FILE.fullmatch(path.name)
            if match is not None:
                found.setdefault(int(match[1]), []).append((int(match[2]), path))
        views = {}
        for gateway, files in found.items():
            files.sort()
            for _, stale in files[:-1]:
                stale.unlink(missing_ok=True)
            generation, path = files[-1]
            content = _read(path)
            if content is not None:  # replaced meanwhile: the next listing finds the newer one
                views[gateway] = View(gateway, generation, frozenset(content["tags"]))
        return views

    def _watch(self, interval_s: float) -> None:
        """Apply the views siblings write, whether or not this worker receives calls."""
        while not self._stop.wait(interval_s):
            try:
                listed = frozenset(p.name for p in self.directory.glob("view-*.json"))
                if listed != self._listed:
                    self._listed = listed
                    self.apply(self._read_views().values())
            except Exception:  # never let the watcher die: log, and look again
                logger.exception("runner worker %d could not read %s", self.index, self.directory)


def _write(path: Path, content: Mapping[str, Any]) -> None:
    """Atomically: a reader sees the old file or the whole new one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    temporary.write_text(json.dumps(content))
    os.replace(temporary, path)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        content: dict[str, Any] = json.loads(path.read_text())
        return content
    except (FileNotFoundError, json.JSONDecodeError):
        return None
