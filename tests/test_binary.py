"""The binary tensor data extension: every datatype both ways, and every malformed body."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from adapters.protocol.binary import BinaryReader, decode_raw, encode_raw, split_body
from adapters.protocol.codecs import DATATYPE_TO_DTYPE
from adapters.protocol.errors import InvalidTensor
from adapters.protocol.schemas import Datatype

from .test_codecs import SAMPLES


@pytest.mark.parametrize("datatype", list(Datatype))
def test_every_datatype_round_trips(datatype: Datatype) -> None:
    array = np.array(SAMPLES[datatype], dtype=DATATYPE_TO_DTYPE[datatype])
    raw = encode_raw(datatype, array)
    decoded = decode_raw("x", datatype, [2, 3], memoryview(raw))
    assert decoded.shape == (2, 3)
    assert decoded.tolist() == array.tolist()


def test_the_wire_layout_is_the_specs() -> None:
    """Little-endian, row-major; BOOL one byte; BYTES a 4-byte little-endian length + bytes."""
    assert encode_raw(Datatype.UINT32, np.array([[1, 2]], dtype=np.uint32)) == (
        b"\x01\x00\x00\x00\x02\x00\x00\x00"
    )
    assert encode_raw(Datatype.BOOL, np.array([True, False])) == b"\x01\x00"
    assert encode_raw(Datatype.BYTES, np.array(["ab", "é"], dtype=object)) == (
        b"\x02\x00\x00\x00ab\x02\x00\x00\x00\xc3\xa9"
    )
    assert encode_raw(Datatype.FP16, np.array([1.0], dtype=np.float16)) == b"\x00\x3c"


def test_numeric_tensors_are_views_of_the_body() -> None:
    body = np.arange(8, dtype="<f8").tobytes()
    array = decode_raw("x", Datatype.FP64, [2, 4], memoryview(body))
    assert not array.flags.owndata  # np.frombuffer: no copy, no per-element Python


@pytest.mark.parametrize(
    ("datatype", "shape", "raw", "fragment"),
    [
        (Datatype.FP32, [2], b"\x00" * 7, "not 2 elements of FP32 (4 bytes each)"),
        (Datatype.FP64, [1, 4], b"\x00" * 16, "not 4 elements"),
        (Datatype.BYTES, [1], b"\x05\x00\x00\x00ab", "runs past the end"),
        (Datatype.BYTES, [2], b"\x01\x00\x00\x00a\x01\x00", "length prefix is cut off"),
        (Datatype.BYTES, [3], b"\x01\x00\x00\x00a", "needs 3 elements"),
        (Datatype.BYTES, [1], b"\x01\x00\x00\x00\xff", "UTF-8"),
        (Datatype.BOOL, [2], b"\x01\x02", "0 or 1"),
        (Datatype.INT8, [-1], b"", "non-negative"),
    ],
)
def test_malformed_tensors_name_the_input(
    datatype: Datatype, shape: list[int], raw: bytes, fragment: str
) -> None:
    with pytest.raises(InvalidTensor, match="input 'x'") as caught:
        decode_raw("x", datatype, shape, memoryview(raw))
    assert fragment in caught.value.message


def test_split_body() -> None:
    header, rest = split_body(b'{"a":1}\x01\x02', "7")
    assert header == b'{"a":1}' and rest is not None and bytes(rest) == b"\x01\x02"
    assert split_body(b"{}", None) == (b"{}", None)
    with pytest.raises(InvalidTensor, match="past the end"):
        split_body(b"{}", "99")
    with pytest.raises(InvalidTensor, match="Inference-Header-Content-Length"):
        split_body(b"{}", "two")


def test_sizes_that_do_not_add_up() -> None:
    reader = BinaryReader(memoryview(b"\x00" * 10))
    reader.take("a", 4)
    with pytest.raises(InvalidTensor, match="add up to 4 bytes, the body carries 10"):
        reader.finish()
    with pytest.raises(InvalidTensor, match="input 'b': binary_data_size 7 runs past"):
        reader.take("b", 7)
    with pytest.raises(InvalidTensor, match="non-negative integer"):
        reader.take("c", "4")


def test_bytes_element_lengths_are_read_little_endian() -> None:
    raw = struct.pack("<I", 3) + b"abc" + struct.pack("<I", 0)
    assert decode_raw("x", Datatype.BYTES, [2], memoryview(raw)).tolist() == ["abc", ""]
