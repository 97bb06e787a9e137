"""Per model version inference statistics, in the shape of Triton's statistics extension
(``GET /v2/models/stats``), which ``tritonclient``'s ``get_inference_statistics`` reads.

Counting is a few integer additions per request on the event loop (no lock: the data plane runs
on one event loop per process). With several gateway workers, each process counts its own
requests; the figures are per process, as the Prometheus metrics are before aggregation.

What each stage measures here: ``compute_input`` decoding the request (by the transport) and
checking it against the signature; ``compute_infer`` the executor's predict, including any wait
to be merged into a batch (so ``queue`` stays 0); ``compute_output`` labelling and encoding the
outputs; ``success``/``fail`` whole requests that reached a model version. The warm-up request a
version answers when it is loaded counts as one successful execution of one row.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from adapters.models.registry import ModelVersion

STAGES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


@dataclass
class VersionStats:
    """Counters of one model version; ``ns`` totals per stage."""

    name: str
    version: str
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    ns: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))

    def add(self, stage: str, ns: int) -> None:
        self.counts[stage] += 1
        self.ns[stage] += ns

    def extend(self, stage: str, ns: int) -> None:
        """More time for a stage already counted (e.g. encoding, after the data plane)."""
        self.ns[stage] += ns

    def finished(self, *, ok: bool, rows: int, total_ns: int) -> None:
        self.add("success" if ok else "fail", total_ns)
        if ok:
            self.inference_count += rows
            self.execution_count += 1
            self.last_inference_ms = time.time_ns() // 1_000_000

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                stage: {"count": self.counts[stage], "ns": self.ns[stage]} for stage in STAGES
            },
            "batch_stats": [],
        }


class Statistics:
    """Every version's counters, created on first use."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, str], VersionStats] = {}

    def of(self, name: str, version: str) -> VersionStats:
        stats = self.versions.get((name, version))
        if stats is None:
            stats = self.versions[(name, version)] = VersionStats(name, version)
        return stats

    def warmed(self, version: ModelVersion) -> None:
        """A version answered its warm-up request when it was loaded: one execution of one
        row, so that its statistics show it was warmed before it was served."""
        self.of(version.name, version.version).finished(ok=True, rows=1, total_ns=0)

    def report(self, versions: Iterable[tuple[str, str]]) -> dict[str, Any]:
        """``{"model_stats": [...]}`` for these (name, version) pairs, zeros where never run."""
        return {"model_stats": [self.of(name, version).to_dict() for name, version in versions]}
