"""How large an answer may be (``OIP_MAX_RESPONSE_BYTES``), checked before it is built.

The request body is limited as it is read; without this, the answer was not: an output much
larger than its input (a sparse ``transform`` made dense, many outputs, many rows times wide
outputs) was computed, encoded and sent whole. An answer is measured as its output tensors'
data: numbers at their datatype's width, a BYTES element at its UTF-8 length plus 4 (its
length prefix), which is what gRPC and the binary extension send and about what the server
holds. A JSON answer writes the same data as text (at most about three times the width of an
FP64, six times that of a BOOL).

It is checked twice, both times before the answer is materialised as far as it can be known:

* **before predict**, from the signature: rows times each output's trailing dimensions times its
  datatype's width, for every output whose shape is fixed past the batch dimension (a BYTES
  element counts its length prefix only). An output too large is never computed.
* **after predict, before encoding**: the outputs as computed (BYTES lengths, classification
  strings, outputs the signature could not size).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from adapters.models.signature import TensorSpec
from adapters.protocol.codecs import DATATYPE_TO_DTYPE
from adapters.protocol.errors import ResponseTooLarge
from adapters.protocol.messages import Tensor
from adapters.protocol.schemas import Datatype

LENGTH_PREFIX = 4
"""Bytes before each BYTES element on the wire (little-endian uint32)."""


def planned_bytes(specs: Iterable[TensorSpec], rows: int) -> int:
    """The least the outputs of ``specs`` will hold for ``rows`` rows, from their shapes."""
    total = 0
    for spec in specs:
        trailing = spec.shape[1:]
        if any(d < 0 for d in trailing):
            continue  # sized after predict
        width = LENGTH_PREFIX if spec.datatype is Datatype.BYTES else _width(spec.datatype)
        total += rows * math.prod(trailing) * width
    return total


def tensor_bytes(tensor: Tensor) -> int:
    """The data of one output as it is sent (BYTES: each element's UTF-8 bytes and prefix)."""
    if tensor.datatype is not Datatype.BYTES:
        return tensor.data.size * _width(tensor.datatype)
    items = tensor.data.ravel().tolist()
    try:
        text = "".join(items)  # one pass in C when every element is a str (labels, classes)
    except TypeError:  # bytes or other objects among them: each as it is written
        size = sum(len(i) if isinstance(i, bytes) else len(_utf8(str(i))) for i in items)
    else:
        size = len(text) if text.isascii() else len(_utf8(text))
    return LENGTH_PREFIX * len(items) + size


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def check_planned(specs: Iterable[TensorSpec], rows: int, limit: int) -> None:
    """Refuse, before predict, an answer the signature already shows is over ``limit``.

    Raises:
        ResponseTooLarge: naming the size, the limit and the setting.
    """
    size = planned_bytes(specs, rows)
    if size > limit:
        raise _too_large(size, limit, at_least=True)


def check_outputs(outputs: Iterable[Tensor], limit: int) -> None:
    """Refuse, before encoding, computed outputs over ``limit``.

    Raises:
        ResponseTooLarge: naming the size, the limit and the setting.
    """
    size = sum(tensor_bytes(tensor) for tensor in outputs)
    if size > limit:
        raise _too_large(size, limit, at_least=False)


def _width(datatype: Datatype) -> int:
    return DATATYPE_TO_DTYPE[datatype].itemsize


def _too_large(size: int, limit: int, *, at_least: bool) -> ResponseTooLarge:
    return ResponseTooLarge(
        f"the answer would hold {'at least ' if at_least else ''}{size} bytes of tensor data, "
        f"over the limit of {limit} (OIP_MAX_RESPONSE_BYTES): send fewer rows per request or "
        "ask for fewer outputs"
    )
