"""How a chunk of rows becomes its predictions: :func:`predicted`, the one definition both
engines of ``score.py`` run (the local engine here, in its own process; the Ray engine on worker
actors, :mod:`adapters.batch.ray`), and :func:`stamped`, the table's columns for them. A chunk's
rows are decoded and checked as a request's tensors (:mod:`adapters.models.inputs`) and
predicted as the server predicts, so a stored prediction equals the server's answer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd

from adapters.batch.predictions import output_values
from adapters.batch.readers import MalformedInput, Plan
from adapters.execution.runtime import PredictFailed, predict_one
from adapters.models.inputs import model_input
from adapters.models.registry import ModelVersion
from adapters.models.signature import TensorSpec
from adapters.protocol.errors import OIPError

Columns = dict[str, list[Any]]


def predicted(
    resolved: ModelVersion,
    estimator: Any,
    plan: Plan,
    specs: list[TensorSpec],
    frame: pd.DataFrame,
    *,
    offset: int,
) -> Columns:
    """One chunk's key and output columns: its rows decoded and checked as a request's tensors,
    then predicted as the server predicts.

    Raises:
        MalformedInput: naming the row, or the chunk's rows when the fault is not one row's.
    """
    n = len(frame)
    try:
        x = model_input(resolved, plan.tensors(frame, offset))
    except OIPError as exc:
        raise MalformedInput(exc.message, row=offset, rows=n) from None
    result = predict_one(estimator, [s.name for s in specs], x)
    if isinstance(result, PredictFailed):
        raise MalformedInput(f"the model rejected them: {result.message}", row=offset, rows=n)
    columns: Columns = {"key": plan.keys(frame, x, offset)}
    columns.update((s.name, output_values(s, result[s.name])) for s in specs)
    return columns


def stamped(resolved: ModelVersion, columns: Columns) -> Columns:
    """The table's columns for predicted rows: key, model, version, outputs, ``scored_at``."""
    n = len(columns["key"])
    table: Columns = {"key": columns["key"], "model": [resolved.name] * n}
    table["version"] = [resolved.version] * n
    table.update((name, values) for name, values in columns.items() if name != "key")
    table["scored_at"] = [datetime.now(UTC)] * n
    return table
