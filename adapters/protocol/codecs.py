"""Tensor codecs: one Datatype<->numpy table, one decoder and one encoder for every tensor.

Decoding never loops over elements in Python for numeric data: the JSON list (flat or nested)
goes to ``numpy.asarray`` once, and the checks (element kinds, integer ranges, element count)
are vectorised. Only BYTES, which are Python strings anyway, are checked one by one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from adapters.protocol.errors import InvalidTensor, ModelOutputError, PayloadTooLarge
from adapters.protocol.schemas import Datatype

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

MAX_RANK = 32
"""Most dimensions a tensor may have (numpy's own limit is 64; no model takes more than a few)."""

# NOTE: numpy keeps text as fixed-width unicode ("U") or bytes ("S") arrays; on the wire both
# are BYTES, like object arrays of str.
_TEXT_KINDS = frozenset("USO")
# Kinds of the array numpy infers from JSON values that each datatype accepts (b=bool,
# i=signed, u=unsigned, f=float). Integral floats are accepted for integer tensors, and
# booleans for numeric ones, as most V2 clients write them that way.
_ACCEPTED_KINDS = {"b": "b", "u": "biuf", "i": "biuf", "f": "biuf"}


def datatype_of(array: Array) -> Datatype:
    """The V2 datatype of a numpy array the server produced (text arrays are BYTES).

    Raises:
        ModelOutputError: the dtype has no V2 datatype (e.g. complex, datetime): a fault of the
            model, never of the request, so it is a logged 500.
    """
    if array.dtype.kind in _TEXT_KINDS:
        return Datatype.BYTES
    try:
        return DTYPE_TO_DATATYPE[array.dtype]
    except KeyError:
        raise ModelOutputError(f"numpy dtype {array.dtype} has no V2 datatype") from None


def decode_tensor(
    name: str, datatype: Datatype, shape: list[int], data: Any, *, max_bytes: int | None = None
) -> Array:
    """Decode a V2 tensor into a numpy array of the datatype's dtype and the declared shape.

    Raises:
        InvalidTensor: bad shape, element count that does not match the shape, ragged nesting,
            or elements that are not of the datatype (e.g. 1.5 in INT32, 300 in UINT8).
        PayloadTooLarge: a BYTES element longer than ``max_bytes`` (UTF-8).
    """
    check_shape(name, shape)
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
        _check_text(name, array, max_bytes)
    elif DATATYPE_TO_DTYPE[datatype].kind in "iu" and array.dtype.kind in "fO":
        array = _exact_integers(name, datatype, data)
    else:
        accepted = _ACCEPTED_KINDS[DATATYPE_TO_DTYPE[datatype].kind]
        if array.size and array.dtype.kind not in accepted:
            raise InvalidTensor(f"input '{name}': {datatype.value} data has non-numeric elements")
        array = cast_exact(name, array, DATATYPE_TO_DTYPE[datatype])
    return array.reshape(shape)


def check_shape(name: str, shape: list[int]) -> None:
    """A shape is at most :data:`MAX_RANK` non-negative integers."""
    if len(shape) > MAX_RANK:
        raise InvalidTensor(f"input '{name}': {len(shape)} dimensions, at most {MAX_RANK}")
    if any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape):
        raise InvalidTensor(f"input '{name}': shape {shape} must be non-negative integers")


def check_elements(shapes: Iterable[tuple[str, list[int]]], limit: int) -> None:
    """Each ``(name, shape)`` checked, and their elements counted against ``OIP_MAX_ELEMENTS``,
    before any tensor is decoded: a shape cannot claim more than the limit.

    Raises:
        InvalidTensor: a shape that is not one.
        PayloadTooLarge: more elements than ``limit``.
    """
    total = 0
    for name, shape in shapes:
        check_shape(name, shape)
        total += math.prod(shape)
    if total > limit:
        raise PayloadTooLarge(
            f"the inputs have {total} elements, more than the limit of {limit} (OIP_MAX_ELEMENTS)"
        )


def _to_numpy(datatype: Datatype, data: list[Any]) -> Array:
    if datatype is Datatype.BYTES:
        array = np.array(data, dtype=np.object_)
        if any(isinstance(item, list) for item in array.flat):
            raise ValueError("ragged")  # numpy keeps the rows of ragged nesting as objects
        return array
    return np.asarray(data)


def _check_text(name: str, array: Array, max_bytes: int | None) -> None:
    for item in array.flat:
        if not isinstance(item, str):
            raise InvalidTensor(
                f"input '{name}': BYTES elements must be strings, got {repr(item)[:50]}"
            )
        # a str has at most 4 UTF-8 bytes per character: encode only when it could be over
        if max_bytes is not None and len(item) * 4 > max_bytes:
            check_bytes_element(name, len(item.encode("utf-8")), max_bytes)


def check_bytes_element(name: str, size: int, max_bytes: int | None) -> None:
    """One BYTES element's size against ``OIP_MAX_BYTES_ELEMENT``."""
    if max_bytes is not None and size > max_bytes:
        raise PayloadTooLarge(
            f"input '{name}': a BYTES element of {size} bytes is over the limit of {max_bytes} "
            "(OIP_MAX_BYTES_ELEMENT)"
        )


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


def cast_exact(name: str, array: Array, target: np.dtype[Any]) -> Array:
    """Cast ``array`` to ``target``, refusing every value the cast would change.

    Refused: out-of-range or fractional values for an integer dtype, values beyond the range of
    a narrower float (1e300 to FP32 would silently become ``inf``), non-booleans for BOOL. Used
    for the JSON values of a tensor and again for a tensor cast to the dtype its model takes.

    Raises:
        InvalidTensor: naming the input and the datatype.
    """
    if array.dtype == target:
        return array
    label = DTYPE_TO_DATATYPE[target].value
    if array.size == 0:
        return array.astype(target)
    if target.kind == "b" or array.dtype.kind not in "biuf":
        raise InvalidTensor(f"input '{name}': {label} data has elements of another kind")
    if target.kind in "iu":
        if array.dtype.kind == "f" and not (
            np.isfinite(array).all() and (np.trunc(array) == array).all()
        ):
            raise InvalidTensor(f"input '{name}': {label} data has non-integer values")
        info = np.iinfo(target)
        # NOTE: ``max + 1`` is a power of two, exact as a float too (``max`` itself is not)
        if array.min() < info.min or array.max() >= info.max + 1:
            raise InvalidTensor(
                f"input '{name}': {label} values must lie in [{info.min}, {info.max}]"
            )
        return array.astype(target)
    with np.errstate(over="raise"):
        try:
            return array.astype(target)
        except FloatingPointError:
            raise InvalidTensor(
                f"input '{name}': values exceed the range of {label} "
                f"(largest {float(np.finfo(target).max):g})"
            ) from None


def encode_tensor(
    name: str, datatype: Datatype, array: Array, parameters: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A JSON ``$response_output`` dict for an output array of the given datatype.

    Numeric ``data`` stays a flat numpy array: orjson writes it natively
    (``OPT_SERIALIZE_NUMPY``) without building a Python list first.
    """
    if datatype is Datatype.BYTES:
        data: Any = [_text(item) for item in array.ravel().tolist()]
    else:
        data = np.ascontiguousarray(array).ravel()
    tensor = {"name": name, "shape": list(array.shape), "datatype": datatype.value, "data": data}
    if parameters:
        tensor["parameters"] = parameters
    return tensor


def _text(item: Any) -> str:
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
