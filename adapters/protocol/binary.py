"""The binary tensor data extension (Triton's ``binary_tensor_data``): raw tensor bytes after the
JSON header of a request or response, the default of ``tritonclient`` and the KServe SDK.

Layout: ``Inference-Header-Content-Length: N`` gives the JSON header's size; each tensor with a
``binary_data_size`` parameter follows it, in tensor order, little-endian, row-major, unpadded.
BOOL is one byte per element; BYTES is, per element, a 4-byte little-endian length then the bytes.
Numeric tensors are views of the body (``np.frombuffer``): no per-element Python.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from adapters.protocol.codecs import DATATYPE_TO_DTYPE, Array, check_bytes_element, check_shape
from adapters.protocol.errors import InvalidTensor
from adapters.protocol.schemas import Datatype

HEADER = "inference-header-content-length"
SIZE = "binary_data_size"
_LENGTH = struct.Struct("<I")


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview | None]:
    """``(json_header, binary_part)``; the binary part is ``None`` for a plain JSON body.

    Raises:
        InvalidTensor: the header length is not a number or runs past the body.
    """
    if header_length is None:
        return body, None
    try:
        size = int(header_length)
    except ValueError:
        raise InvalidTensor(f"Inference-Header-Content-Length {header_length[:40]!r}") from None
    if not 0 <= size <= len(body):
        raise InvalidTensor(
            f"Inference-Header-Content-Length {size} is past the end of the {len(body)}-byte body"
        )
    view = memoryview(body)
    return bytes(view[:size]), view[size:]


class BinaryReader:
    """Hands out the binary part of a request tensor by tensor, in order."""

    def __init__(self, data: memoryview | None) -> None:
        self.data = data if data is not None else memoryview(b"")
        self.offset = 0

    def take(self, name: str, size: Any) -> memoryview:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidTensor(f"input '{name}': binary_data_size must be a non-negative integer")
        end = self.offset + size
        if end > len(self.data):
            raise InvalidTensor(
                f"input '{name}': binary_data_size {size} runs past the end of the body "
                f"({len(self.data) - self.offset} bytes left)"
            )
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def finish(self) -> None:
        """Every byte must belong to a tensor: sizes that do not add up are an error."""
        if self.offset != len(self.data):
            raise InvalidTensor(
                f"the binary tensor sizes add up to {self.offset} bytes, "
                f"the body carries {len(self.data)}"
            )


def decode_raw(
    name: str,
    datatype: Datatype,
    shape: Sequence[int],
    raw: memoryview,
    *,
    max_bytes: int | None = None,
) -> Array:
    """Decode one tensor's raw bytes into an array of ``shape``.

    Raises:
        InvalidTensor: a size that does not match the shape or the element size, BYTES lengths
            running past the end, BYTES that are not UTF-8 text, BOOL bytes other than 0 and 1.
    """
    check_shape(name, list(shape))
    count = math.prod(shape)
    if datatype is Datatype.BYTES:
        items = _split_bytes(name, raw, max_bytes)
        if len(items) != count:
            raise InvalidTensor(
                f"input '{name}': shape {list(shape)} needs {count} elements, "
                f"the binary data has {len(items)}"
            )
        try:
            text = [bytes(item).decode("utf-8") for item in items]
        except UnicodeDecodeError:
            raise InvalidTensor(f"input '{name}': BYTES elements must be UTF-8 text") from None
        return np.array(text, dtype=np.object_).reshape(shape)
    dtype = DATATYPE_TO_DTYPE[datatype].newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise InvalidTensor(
            f"input '{name}': binary_data_size {len(raw)} is not {count} elements of "
            f"{datatype.value} ({dtype.itemsize} bytes each) for shape {list(shape)}"
        )
    array = np.frombuffer(raw, dtype=dtype)
    if datatype is Datatype.BOOL and array.size and array.view(np.uint8).max() > 1:
        raise InvalidTensor(f"input '{name}': BOOL bytes must be 0 or 1")
    return array.reshape(shape)


def _split_bytes(name: str, raw: memoryview, max_bytes: int | None) -> list[memoryview]:
    items, offset, end = [], 0, len(raw)
    while offset < end:
        if offset + 4 > end:
            raise InvalidTensor(f"input '{name}': a BYTES length prefix is cut off")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        check_bytes_element(name, length, max_bytes)
        if offset + length > end:
            raise InvalidTensor(f"input '{name}': a BYTES element runs past the end of its data")
        items.append(raw[offset : offset + length])
        offset += length
    return items


def encode_raw(datatype: Datatype, array: Array) -> bytes:
    """One output tensor as raw bytes (little-endian; BYTES length-prefixed, text as UTF-8)."""
    if datatype is Datatype.BYTES:
        parts: list[bytes] = []
        for item in array.ravel().tolist():
            data = item if isinstance(item, bytes) else str(item).encode("utf-8")
            parts += (_LENGTH.pack(len(data)), data)
        return b"".join(parts)
    dtype = DATATYPE_TO_DTYPE[datatype].newbyteorder("<")
    return np.ascontiguousarray(array, dtype=dtype).tobytes()
