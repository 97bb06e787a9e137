"""The datatype table and the tensor codecs, over every datatype of the spec."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest

from adapters.protocol.codecs import (
    DATATYPE_TO_DTYPE,
    DTYPE_TO_DATATYPE,
    cast_exact,
    datatype_of,
    decode_tensor,
    encode_tensor,
)
from adapters.protocol.errors import InvalidTensor, ModelOutputError
from adapters.protocol.schemas import Datatype

# One 2x3 sample per datatype, as a JSON client would send it (row-major, nested).
SAMPLES: dict[Datatype, list[list[Any]]] = {
    Datatype.BOOL: [[True, False, True], [False, False, True]],
    Datatype.UINT8: [[0, 1, 255], [7, 8, 9]],
    Datatype.UINT16: [[0, 1, 65535], [7, 8, 9]],
    Datatype.UINT32: [[0, 1, 4294967295], [7, 8, 9]],
    Datatype.UINT64: [[0, 1, 18446744073709551615], [7, 8, 9]],
    Datatype.INT8: [[-128, 0, 127], [1, 2, 3]],
    Datatype.INT16: [[-32768, 0, 32767], [1, 2, 3]],
    Datatype.INT32: [[-2147483648, 0, 2147483647], [1, 2, 3]],
    Datatype.INT64: [[-9223372036854775808, 0, 9223372036854775807], [1, 2, 3]],
    Datatype.FP16: [[0.5, -1.25, 2.0], [3.0, 0.0, 65504.0]],
    Datatype.FP32: [[0.5, -1.25, 2.0], [3.0, 1e30, -1e-30]],
    Datatype.FP64: [[0.5, -1.25, 2.0], [3.0, 1e300, -1e-300]],
    Datatype.BYTES: [["a", "bc", ""], ["dé", "e f", "ø"]],
}


def flat(nested: list[list[Any]]) -> list[Any]:
    return [x for row in nested for x in row]


def test_every_datatype_has_a_dtype_and_the_inverse_is_exact() -> None:
    assert set(DATATYPE_TO_DTYPE) == set(Datatype)
    assert set(SAMPLES) == set(Datatype)
    for datatype, dtype in DATATYPE_TO_DTYPE.items():
        assert DTYPE_TO_DATATYPE[dtype] is datatype


@pytest.mark.parametrize("datatype", list(Datatype))
@pytest.mark.parametrize("layout", ["flat", "nested"])
def test_round_trip(datatype: Datatype, layout: str) -> None:
    nested = SAMPLES[datatype]
    data = flat(nested) if layout == "flat" else nested
    array = decode_tensor("x", datatype, [2, 3], data)
    assert array.shape == (2, 3)
    assert array.dtype == DATATYPE_TO_DTYPE[datatype]
    encoded = encode_tensor("y", datatype_of(array), array)
    assert encoded["datatype"] == datatype.value
    assert encoded["shape"] == [2, 3]
    wire = orjson.loads(orjson.dumps(encoded, option=orjson.OPT_SERIALIZE_NUMPY))
    assert wire["data"] == flat(nested)


@pytest.mark.parametrize("datatype", list(Datatype))
def test_element_count_must_match_shape(datatype: Datatype) -> None:
    with pytest.raises(InvalidTensor, match="needs 4 elements, data has 6"):
        decode_tensor("x", datatype, [2, 2], flat(SAMPLES[datatype]))


@pytest.mark.parametrize("datatype", list(Datatype))
def test_ragged_data_is_refused(datatype: Datatype) -> None:
    row = SAMPLES[datatype][0]
    with pytest.raises(InvalidTensor, match="not a regular array"):
        decode_tensor("x", datatype, [2, 3], [row, row[:2]])


@pytest.mark.parametrize("datatype", list(Datatype))
@pytest.mark.parametrize("shape", [[-1, 3], [2, "3"], [2.0, 3], [True, 3]])
def test_shape_must_be_non_negative_integers(datatype: Datatype, shape: list[Any]) -> None:
    with pytest.raises(InvalidTensor, match="shape"):
        decode_tensor("x", datatype, shape, flat(SAMPLES[datatype]))


@pytest.mark.parametrize("datatype", list(Datatype))
def test_empty_tensor(datatype: Datatype) -> None:
    array = decode_tensor("x", datatype, [0, 3], [])
    assert array.shape == (0, 3)


@pytest.mark.parametrize("datatype", [d for d in Datatype if d is not Datatype.BYTES])
def test_strings_in_numeric_tensors_are_refused(datatype: Datatype) -> None:
    with pytest.raises(InvalidTensor):
        decode_tensor("x", datatype, [2], ["a", "b"])


@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        (Datatype.UINT8, [256]),
        (Datatype.UINT8, [-1]),
        (Datatype.INT8, [128]),
        (Datatype.UINT32, [-5]),
        (Datatype.INT16, [40000]),
        (Datatype.INT32, [1.5]),
        (Datatype.INT64, [0.1]),
        (Datatype.BOOL, [1]),
        (Datatype.BOOL, [0.0]),
        (Datatype.BYTES, [3]),
        (Datatype.BYTES, [None]),
        (Datatype.FP32, [None]),
        (Datatype.FP64, [{"a": 1}]),
        (Datatype.FP32, [1e300]),  # would be inf
        (Datatype.FP16, [70000]),
        (Datatype.INT64, [2**63]),
        (Datatype.UINT64, [-1]),
    ],
)
def test_values_outside_the_datatype_are_refused(datatype: Datatype, data: list[Any]) -> None:
    with pytest.raises(InvalidTensor):
        decode_tensor("x", datatype, [1], data)


def test_data_must_be_an_array() -> None:
    with pytest.raises(InvalidTensor, match="JSON array"):
        decode_tensor("x", Datatype.FP32, [1], 1.0)


@pytest.mark.parametrize(
    ("datatype", "data", "expected"),
    [
        (Datatype.INT32, [1.0, 2.0], [1, 2]),  # integral floats are integers
        (Datatype.FP64, [1, 2], [1.0, 2.0]),  # integers are floats
        (Datatype.FP32, [True, False], [1.0, 0.0]),
    ],
)
def test_lossless_coercions(datatype: Datatype, data: list[Any], expected: list[Any]) -> None:
    array = decode_tensor("x", datatype, [2], data)
    assert array.dtype == DATATYPE_TO_DTYPE[datatype]
    assert array.tolist() == expected


def test_nested_data_is_reshaped_row_major() -> None:
    array = decode_tensor("x", Datatype.INT32, [3, 2], [[1, 2, 3], [4, 5, 6]])
    assert array.tolist() == [[1, 2], [3, 4], [5, 6]]


@pytest.mark.parametrize(
    ("array", "datatype"),
    [
        (np.array(["a", "b"]), Datatype.BYTES),  # numpy unicode
        (np.array([b"a", b"b"]), Datatype.BYTES),  # numpy bytes
        (np.array(["a", 1], dtype=object), Datatype.BYTES),
        (np.zeros(2, dtype=np.float32), Datatype.FP32),
        (np.zeros(2, dtype=np.intp), Datatype.INT64),
    ],
)
def test_datatype_of(array: np.ndarray, datatype: Datatype) -> None:
    assert datatype_of(array) is datatype


def test_bytes_output_is_text() -> None:
    array = np.array([b"caf\xc3\xa9", b"x"])
    encoded = encode_tensor("y", datatype_of(array), array)
    assert encoded["data"] == ["café", "x"]


def test_an_unmapped_output_dtype_is_a_server_fault() -> None:
    with pytest.raises(ModelOutputError, match="complex"):
        datatype_of(np.zeros(1, dtype=np.complex128))


def test_fp_outputs_keep_their_values() -> None:
    array = np.array([[math.pi, -0.0], [1e-300, 1e300]])
    encoded = encode_tensor("y", Datatype.FP64, array)
    wire = orjson.loads(orjson.dumps(encode_tensor("y", Datatype.FP64, array), option=OPT))
    assert wire == orjson.loads(orjson.dumps(encoded, option=OPT))
    assert wire["data"] == array.ravel().tolist()


OPT = orjson.OPT_SERIALIZE_NUMPY


@pytest.mark.parametrize(
    ("array", "target"),
    [
        (np.array([1e300]), np.float32),  # overflow, never a silent inf
        (np.array([1.5]), np.int64),
        (np.array([np.nan]), np.int32),
        (np.array([2.0**63]), np.int64),  # float(max) rounds up: the bound must be exact
        (np.array([300]), np.uint8),
        (np.array([1]), np.bool_),
    ],
)
def test_cast_exact_refuses_values_that_would_change(array: np.ndarray, target: type) -> None:
    with pytest.raises(InvalidTensor, match="input 'x'"):
        cast_exact("x", array, np.dtype(target))


@pytest.mark.parametrize(
    ("array", "target"),
    [
        (np.array([1.0, 2.0], dtype=np.float32), np.float64),
        (np.array([3.0, -4.0]), np.int16),
        (np.array([7], dtype=np.uint64), np.int8),
        (np.array([np.inf]), np.float32),  # infinity was sent, infinity it stays
        (np.array([True]), np.float64),
    ],
)
def test_cast_exact_keeps_every_value(array: np.ndarray, target: type) -> None:
    cast = cast_exact("x", array, np.dtype(target))
    assert cast.dtype == np.dtype(target)
    assert cast.tolist() == array.tolist()


def test_too_many_dimensions_is_a_clear_error() -> None:
    with pytest.raises(InvalidTensor, match="dimensions"):
        decode_tensor("x", Datatype.FP32, [1] * 65, [1.0])
