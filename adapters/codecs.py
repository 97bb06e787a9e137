"""Tensor codecs: one Datatype<->numpy table, one decoder and one encoder for every tensor.

Decoding never loops over elements in Python for numeric data: the JSON list (flat or nested)
goes to ``numpy.asarray`` once, and the checks (element kinds, integer ranges, element count)
are vectorised. Only BYTES, which are Python strings anyway, are checked one by one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import InvalidTensor
from .schemas import Datatype

Array = NDArray[Any]
"""Any numpy array (the dtype is checked at run time, not typed)."""

DATATYPE_TO_DTYPE: dict[Datatype, np.dtype[Any]] = {
    Datatype.BOOL: np.dtype(np.bool_),
    Datatype.UINT8: np.dtype(np.uint8),
    Datatype.UINT16: np.dtype(np.uint16),
    Datatype.UINT32: np.dtype(np.uint32),
    Datatype.UINT64: np.dtype(np.uint64),
    Datatype.INT8: np.dtype(np.int8),
    Datatype.INT16: np.dtype(np.int16),
    Datatype.INT32: np.dtype(np.int32),
    Datatype.INT64: np.dtype(np.int64),
    Datatype.FP16: np.dtype(np.float16),
    Datatype.FP32: np.dtype(np.float32),
    Datatype.FP64: np.dtype(np.float64),
    Datatype.BYTES: np.dtype(np.object_),
}
DTYPE_TO_DATATYPE: dict[np.dtype[Any], Datatype] = {v: k for k, v in DATATYPE_TO_DTYPE.items()}

# NOTE: numpy keeps text as fixed-width unicode ("U") or bytes ("S") arrays; on the wire both
# are BYTES, like object arrays of str.
_TEXT_KINDS = frozenset("USO")
# Kinds of the array numpy infers from JSON values that each datatype accepts (b=bool,
# i=signed, u=unsigned, f=float). Integral floats are accepted for integer tensors, and
# booleans for numeric ones, as most V2 clients write them that way.
_ACCEPTED_KINDS = {"b": "b", "u": "biuf", "i": "biuf", "f": "biuf"}


def datatype_of(array: Array) -> Datatype:
    """The V2 datatype of a numpy array (text arrays are BYTES)."""
    if array.dtype.kind in _TEXT_KINDS:
        return Datatype.BYTES
    try:
        return DTYPE_TO_DATATYPE[array.dtype]
    except KeyError:
        raise InvalidTensor(f"numpy dtype {array.dtype} has no V2 datatype") from None


def decode_tensor(name: str, datatype: Datatype, shape: list[int], data: Any) -> Array:
    """Decode a V2 tensor into a numpy array of the datatype's dtype and the declared shape.

    Raises:
        InvalidTensor: bad shape, element count that does not match the shape, ragged nesting,
            or elements that are not of the datatype (e.g. 1.5 in INT32, 300 in UINT8).
    """
    if any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape):
        raise InvalidTensor(f"input '{name}': shape {shape} must be non-negative integers")
    if not isinstance(data, list):
        raise InvalidTensor(f"input '{name}': data must be a JSON array")
    expected = math.prod(shape)
    try:
        array = _to_numpy(datatype, data)
    except (ValueError, TypeError, OverflowError):
        raise InvalidTensor(
            f"input '{name}': data is not a regular array of {datatype.value} values"
        ) from None
    if array.size != expected:
        raise InvalidTensor(
            f"input '{name}': shape {shape} needs {expected} elements, data has {array.size}"
        )
    if datatype is Datatype.BYTES:
        _check_text(name, array)
    elif DATATYPE_TO_DTYPE[datatype].kind in "iu" and array.dtype.kind in "fO":
        array = _exact_integers(name, datatype, data)
    else:
        array = _cast(name, datatype, array)
    return array.reshape(shape)


def _to_numpy(datatype: Datatype, data: list[Any]) -> Array:
    if datatype is Datatype.BYTES:
        array = np.array(data, dtype=np.object_)
        if any(isinstance(item, list) for item in array.flat):
            raise ValueError("ragged")  # numpy keeps the rows of ragged nesting as objects
        return array
    return np.asarray(data)


def _check_text(name: str, array: Array) -> None:
    for item in array.flat:
        if not isinstance(item, str):
            raise InvalidTensor(f"input '{name}': BYTES elements must be strings, got {item!r}")


def _exact_integers(name: str, datatype: Datatype, data: list[Any]) -> Array:
    """Integers that numpy could not infer exactly: floats, or ints beyond int64 (UINT64).

    NOTE: numpy infers float64 for ``[1.0, 2.0]`` and for a mix of int64 and uint64 values,
    losing precision above 2**53; this path re-reads the JSON values as Python numbers instead.
    """
    values = np.array(data, dtype=np.object_).ravel().tolist()
    if not all(isinstance(v, int) or (isinstance(v, float) and v.is_integer()) for v in values):
        raise InvalidTensor(f"input '{name}': {datatype.value} data has non-integer values")
    info = np.iinfo(DATATYPE_TO_DTYPE[datatype])
    exact = [int(v) for v in values]
    if exact and (min(exact) < info.min or max(exact) > info.max):
        raise InvalidTensor(
            f"input '{name}': {datatype.value} values must lie in [{info.min}, {info.max}]"
        )
    return np.array(exact, dtype=DATATYPE_TO_DTYPE[datatype])


def _cast(name: str, datatype: Datatype, array: Array) -> Array:
    """Cast the inferred array to the datatype's dtype, refusing values that would change."""
    target = DATATYPE_TO_DTYPE[datatype]
    if array.size == 0:
        return array.astype(target)
    if array.dtype.kind not in _ACCEPTED_KINDS[target.kind]:
        raise InvalidTensor(f"input '{name}': {datatype.value} data has non-numeric elements")
    if target.kind == "b":
        return array
    if target.kind in "iu":
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise InvalidTensor(
                f"input '{name}': {datatype.value} values must lie in [{info.min}, {info.max}]"
            )
    return array.astype(target, copy=False)


def encode_tensor(name: str, array: Array) -> dict[str, Any]:
    """A ``$response_output`` dict for a numpy array.

    Numeric ``data`` stays a flat numpy array: orjson writes it natively
    (``OPT_SERIALIZE_NUMPY``) without building a Python list first.
    """
    datatype = datatype_of(array)
    if datatype is Datatype.BYTES:
        data: Any = [_text(item) for item in array.ravel().tolist()]
    else:
        data = np.ascontiguousarray(array).ravel()
    return {"name": name, "shape": list(array.shape), "datatype": datatype.value, "data": data}


def _text(item: Any) -> str:
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
