"""Batch scoring's input side: read a table in chunks and turn each chunk into the V2 tensors
the server would have decoded, so a stored prediction means what a served one means.

Inputs are a CSV file (``pandas.read_csv(chunksize=...)``), a Parquet file
(``pyarrow.parquet.ParquetFile.iter_batches``) or ``sql:SELECT ...`` (a streamed SQLAlchemy
result). How a row becomes the model's input (:class:`Plan`):

* a model of one ``[-1, k]`` tensor: every column but the id column, in order, as an FP64
  ``[N, k]`` tensor;
* a model of one ``[-1]`` tensor (e.g. text, BYTES): its column, named as the input or the only
  one besides the id;
* a model fitted on a DataFrame (``frame``): one tensor per input column, by name (other columns
  are left out).

The tensors then go through :func:`adapters.models.inputs.model_input` (``check_tensor``), as a
request's would. A row that cannot be read is a :class:`MalformedInput` naming it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adapters.models.signature import Signature, TensorSpec
from adapters.protocol.codecs import Array
from adapters.protocol.messages import Tensor
from adapters.protocol.schemas import Datatype

SQL_PREFIX = "sql:"
_CSV_LINE = re.compile(r"line (\d+)")


class MalformedInput(ValueError):
    """A row (or rows) the model cannot take: says which, counting data rows from 0."""

    def __init__(self, message: str, *, row: int, rows: int = 1) -> None:
        where = f"row {row}" if rows == 1 else f"rows {row}-{row + rows - 1}"
        super().__init__(f"{where}: {message}")
        self.row, self.rows, self.detail = row, rows, message  # the Ray engine renumbers them


@dataclass(frozen=True)
class Plan:
    """Which input columns make which input tensor, and which column is the row's key."""

    key: str | None  # the id column; None: a hash of the row's content
    inputs: tuple[tuple[TensorSpec, tuple[str, ...]], ...]  # spec, its columns in order

    @classmethod
    def of(cls, signature: Signature, columns: Sequence[str], id_column: str | None) -> Plan:
        """How ``signature`` takes rows with these ``columns``.

        Args:
            id_column: the key column; ``None``: ``id`` when there is one, else content hash.

        Raises:
            MalformedInput: (row 0) a column is missing, or the count does not fit.
            ValueError: a model whose inputs are not one ``[-1]`` or ``[-1, k]`` tensor, nor
                columns.
        """
        if id_column is not None and id_column not in columns:
            raise MalformedInput(f"no id column {id_column!r} among {list(columns)}", row=0)
        key = id_column or ("id" if "id" in columns else None)
        rest = [c for c in columns if c != key]
        specs = signature.inputs
        if signature.frame:
            missing = [s.name for s in specs if s.name not in rest]
            if missing:
                takes = [s.name for s in specs]
                raise MalformedInput(f"no column {missing} (the model takes {takes})", row=0)
            return cls(key, tuple((s, (s.name,)) for s in specs))
        if len(specs) != 1 or len(specs[0].shape) not in (1, 2):
            shapes = [list(s.shape) for s in specs]
            raise ValueError(f"the model takes inputs {shapes}: a table scores one [-1] or [-1, k]")
        spec = specs[0]
        if len(spec.shape) == 2:
            if spec.shape[1] >= 0 and len(rest) != spec.shape[1]:
                raise MalformedInput(
                    f"the model takes {spec.shape[1]} feature columns, the input has "
                    f"{len(rest)} besides the key: {rest}",
                    row=0,
                )
            return cls(key, ((spec, tuple(rest)),))
        if spec.name in rest or len(rest) == 1:
            return cls(key, ((spec, (spec.name if spec.name in rest else rest[0],)),))
        raise MalformedInput(f"no column {spec.name!r} and more than one other: {rest}", row=0)

    @property
    def text_columns(self) -> list[str]:
        """Columns to read as strings: the key and BYTES inputs (``007`` stays ``007``)."""
        text = [c for spec, cols in self.inputs if spec.datatype is Datatype.BYTES for c in cols]
        return ([self.key] if self.key else []) + text

    def tensors(self, frame: pd.DataFrame, offset: int) -> list[Tensor]:
        """The input tensors of one chunk (its rows counted from ``offset``), as a request's."""
        tensors = []
        for spec, columns in self.inputs:
            if spec.datatype is Datatype.BYTES:
                datatype = Datatype.BYTES
                data = np.column_stack([_text(frame, c, offset) for c in columns])
            else:
                datatype, data = Datatype.FP64, _numbers(frame, list(columns), offset)
            data = data.reshape(len(frame), -1) if len(spec.shape) == 2 else data.reshape(-1)
            tensors.append(Tensor(spec.name, datatype, data))
        return tensors

    def keys(self, frame: pd.DataFrame, x: Any, offset: int) -> list[str]:
        """Each row's key: its id (as text), or a hash of the model input ``x``."""
        if self.key is None:
            return content_keys(x)
        ids = frame[self.key]
        _no_missing(ids, self.key, offset)
        keys: list[str] = ids.astype(str).tolist()
        return keys


def _no_missing(column: pd.Series[Any], name: str, offset: int) -> None:
    missing = column.isna().to_numpy()
    if missing.any():
        row = offset + int(missing.argmax())
        raise MalformedInput(f"column {name!r} has no value (a short or ragged row?)", row=row)


def _numbers(frame: pd.DataFrame, columns: list[str], offset: int) -> Array:
    """The columns as one row-major float64 array, as a request's tensor is (a column-major
    one can change the last bit of a product); names the first row that is not a number."""
    if all(frame[c].dtype.kind in "biuf" for c in columns):
        values: Array = np.ascontiguousarray(frame[columns].to_numpy(dtype=np.float64))
        if not np.isnan(values).any():
            return values
    converted = {}
    for c in columns:
        column = frame[c]
        if column.dtype.kind not in "biuf":
            numbers = pd.to_numeric(column, errors="coerce")
            bad = (numbers.isna() & column.notna()).to_numpy()
            if bad.any():
                i = int(bad.argmax())
                raise MalformedInput(
                    f"column {c!r} is not a number: {column.iloc[i]!r}", row=offset + i
                )
            column = numbers
        _no_missing(column, c, offset)
        converted[c] = column
    return np.ascontiguousarray(pd.DataFrame(converted).to_numpy(dtype=np.float64))


def _text(frame: pd.DataFrame, column: str, offset: int) -> Array:
    values = frame[column]
    _no_missing(values, column, offset)
    data: Array = values.to_numpy(dtype=object)
    for i, item in enumerate(data):
        if not isinstance(item, str):
            raise MalformedInput(f"column {column!r} must be text, got {item!r}", row=offset + i)
    return data


# -- keys: a 128-bit hash of each row's model input, the same from CSV, Parquet or SQL ---------

_SEEDS = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xD1B54A32D192ED03))
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def content_keys(x: Any) -> list[str]:
    """32 hex characters per row: two 64-bit lanes over the row's values, in column order."""
    if hasattr(x, "columns"):
        columns: list[Array] = [x[c].to_numpy() for c in x.columns]
    else:
        array = np.asarray(x)
        columns = [array] if array.ndim == 1 else [array[:, j] for j in range(array.shape[1])]
    words = [_words(c) for c in columns]
    digest = np.empty((len(words[0]) if words else 0, 2), dtype=">u8")
    for lane, seed in enumerate(_SEEDS):
        h: Array = np.full(digest.shape[0], seed, dtype=np.uint64)
        for w in words:
            h = _mix(h ^ _mix(w ^ seed))
        digest[:, lane] = h
    raw = digest.view(np.uint8).reshape(-1, 16)
    hexed = np.empty((raw.shape[0], 32), dtype=np.uint8)
    hexed[:, 0::2], hexed[:, 1::2] = _HEX[raw >> 4], _HEX[raw & 15]
    keys: list[str] = hexed.view("S32").ravel().astype("U32").tolist()
    return keys


def _mix(h: Array) -> Array:
    """splitmix64's finaliser, on a whole column (uint64 arithmetic wraps)."""
    h = (h ^ (h >> np.uint64(30))) * _M1
    h = (h ^ (h >> np.uint64(27))) * _M2
    mixed: Array = h ^ (h >> np.uint64(31))
    return mixed


def _words(column: Array) -> Array:
    """One uint64 per value: the float64 bits (-0.0 as 0.0), the integer, or a text's hash."""
    if column.dtype.kind == "f":
        floats: Array = np.asarray(column, dtype=np.float64) + 0.0
        return floats.view(np.uint64)
    if column.dtype.kind in "biu":
        integers: Array = column.astype(np.int64)
        return integers.view(np.uint64)
    return np.fromiter((_text_word(str(v)) for v in column), dtype=np.uint64, count=len(column))


def _text_word(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


# -- readers ---------------------------------------------------------------------------------


def input_kind(source: str) -> str:
    """``csv``, ``parquet`` or ``sql``, from the ``--input`` text."""
    if source.startswith(SQL_PREFIX):
        return "sql"
    suffixes = Path(source).suffixes
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    if ".csv" in suffixes:
        return "csv"
    raise ValueError(f"--input {source!r}: a .csv or .parquet file, or sql:SELECT ...")


def input_columns(source: str, connection: Any = None) -> list[str]:
    """The input's column names, without reading its rows."""
    kind = input_kind(source)
    if kind == "csv":
        return [str(c) for c in pd.read_csv(source, nrows=0).columns]
    if kind == "parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(source).schema_arrow.names)
    result = connection.execution_options(stream_results=True).execute(_query(source))
    try:  # streamed: no row is fetched
        names = result.keys()
        return [str(c) for c in names]
    finally:
        result.close()


def read_chunks(
    source: str, *, chunk_rows: int, text: Collection[str] = (), connection: Any = None
) -> Generator[pd.DataFrame]:
    """The input in chunks of at most ``chunk_rows`` rows, never more in memory at once.

    Args:
        text: columns to keep as strings (CSV only; the other formats are typed).
        connection: for ``sql:``, a SQLAlchemy connection; the rows are streamed from it
            (``stream_results``: a server-side cursor in PostgreSQL).

    Raises:
        MalformedInput: a CSV line that is not a row (too many fields), by row and line.
    """
    kind = input_kind(source)
    if kind == "csv":
        reader = pd.read_csv(
            source,
            chunksize=chunk_rows,
            dtype={c: str for c in text},
            keep_default_na=False,  # only an empty field is missing: "NA" is text, or an error
            na_values=[""],
        )
        try:
            yield from reader
        except pd.errors.ParserError as exc:
            found = _CSV_LINE.search(str(exc))
            line = int(found.group(1)) if found else 0
            raise MalformedInput(f"line {line} of {source}: {exc}", row=max(line - 2, 0)) from None
        finally:
            reader.close()
    elif kind == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetFile(source) as parquet:
            for batch in parquet.iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
    else:
        streamed = connection.execution_options(stream_results=True, max_row_buffer=chunk_rows)
        result = streamed.execute(_query(source))
        names = list(result.keys())
        try:
            for part in result.partitions(chunk_rows):
                yield pd.DataFrame.from_records(part, columns=names)
        finally:
            result.close()


def _query(source: str) -> Any:
    import sqlalchemy as sa

    return sa.text(source[len(SQL_PREFIX) :].strip().rstrip(";"))
