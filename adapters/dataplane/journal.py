"""The inference log: every inference of the models that log theirs (``OIP_LOG_INFERENCES``,
``log_inferences`` in a model's section), written into the predictions database's
``inferences`` table (:mod:`adapters.batch.inferences`), off the request path.

A request only puts its :class:`Entry` on a bounded queue (references to its tensors: nothing is
encoded on the event loop); when the queue is full the entry is dropped and counted
(``oip_inference_log_rows_total{outcome="dropped"}``), so a slow database never slows or fails
an answer. One thread per process encodes the entries as JSON and inserts them in batches, one
transaction each. Several gateway workers (and ``score.py``) may write at once: SQLite in WAL
mode waits for the lock (a busy timeout), PostgreSQL takes concurrent writers as they come and is
the one to use past one worker under load.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from adapters.dataplane.metrics import logged_rows
from adapters.protocol.errors import OIPError
from adapters.protocol.messages import Tensor

logger = logging.getLogger(__name__)
MAX_LOGGED_ELEMENTS = 65536
"""A tensor of more elements is logged with its name, datatype and shape, ``"data": null`` and
``"truncated": true``: the log records what was asked, not a copy of every large body."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One inference as the log keeps it; tensors are encoded by the writer thread."""

    request_id: str
    model: str
    version: str
    status: int
    latency_ms: float
    inputs: Sequence[Tensor]
    outputs: Sequence[Tensor]
    error: str | None = None
    shadow: bool = False
    created_at: datetime | None = None

    def row(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "model": self.model,
            "version": self.version,
            "status": self.status,
            "latency_ms": self.latency_ms,
            "inputs": tensors_json(self.inputs),
            "outputs": tensors_json(self.outputs),
            "error": self.error,
            "created_at": self.created_at or datetime.now(UTC),
            "shadow": self.shadow,
        }


def failure(exc: BaseException) -> tuple[int, str]:
    """The status and message an inference that raised ``exc`` is logged with."""
    if isinstance(exc, OIPError):
        return exc.status_code, exc.message
    if isinstance(exc, asyncio.CancelledError):
        return 499, "abandoned: the request deadline passed or the client went away"
    return 500, f"internal error ({type(exc).__name__})"


def tensors_json(tensors: Sequence[Tensor]) -> str:
    """V2 tensors as JSON text: ``[{"name", "datatype", "shape", "data"}]``, data flat."""
    return orjson.dumps([_tensor(t) for t in tensors], default=_plain).decode()


def _tensor(tensor: Tensor) -> dict[str, Any]:
    data = np.asarray(tensor.data)
    item: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype.value}
    item["shape"] = list(data.shape)
    if data.size > MAX_LOGGED_ELEMENTS:
        item.update(data=None, truncated=True)
    else:
        item["data"] = data.reshape(-1).tolist()
    return item


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class Journal:
    """The queue and the writer thread of one process (started on the first entry).

    Args:
        url: the predictions database (``OIP_PREDICTIONS_DB``).
        capacity: entries waiting at most; past it, new ones are dropped and counted.
        batch: most rows per insert.
        interval_s: how long the writer waits for a first entry before looking again.
    """

    def __init__(
        self, url: str, *, capacity: int = 10000, batch: int = 500, interval_s: float = 0.1
    ) -> None:
        self.url = url
        self.batch = batch
        self.interval_s = interval_s
        self.entries: queue.Queue[Entry] = queue.Queue(capacity)
        self.accepted = self.settled = self.dropped = self.failed = 0
        self._settling = threading.Condition()
        self._thread: threading.Thread | None = None
        self._logged = ""  # the last database error logged: each new one once

    def record(self, entry: Entry) -> None:
        """Queue ``entry`` for the writer, or drop it (counted) when the queue is full."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._write, name="inference-log", daemon=True)
            self._thread.start()
        with self._settling:
            self.accepted += 1
        try:
            self.entries.put_nowait(entry)
        except queue.Full:
            with self._settling:
                self.accepted -= 1
            self.dropped += 1
            logged_rows().labels("dropped").inc()

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued entry is written (or failed); False if it took too long."""
        deadline = time.monotonic() + timeout_s
        with self._settling:
            while self.settled < self.accepted:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._settling.wait(left)
        return True

    def _write(self) -> None:
        """The writer thread: batches of entries into the table, forever (a daemon)."""
        from adapters.batch.inferences import ensure_inferences, write_inferences
        from adapters.batch.predictions import connect

        engine: Any = None
        table: Any = None
        while True:
            try:
                batch = [self.entries.get(timeout=self.interval_s)]
            except queue.Empty:
                continue
            while len(batch) < self.batch:
                try:
                    batch.append(self.entries.get_nowait())
                except queue.Empty:
                    break
            try:
                if engine is None:
                    engine = connect(self.url)
                    table = ensure_inferences(engine)
                write_inferences(engine, table, [entry.row() for entry in batch])
                logged_rows().labels("written").inc(len(batch))
            except Exception as exc:  # the database's trouble: these rows are lost, counted
                self.failed += len(batch)
                logged_rows().labels("failed").inc(len(batch))
                if str(exc) != self._logged:
                    self._logged = str(exc)
                    logger.error("the inference log could not write %d rows: %s", len(batch), exc)
            finally:
                with self._settling:
                    self.settled += len(batch)
                    self._settling.notify_all()
