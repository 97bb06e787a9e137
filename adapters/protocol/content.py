"""MLServer's content types, read as MLServer 1.7 reads them, so that its clients' requests work
unchanged and its codecs decode the answers.

A request says how to read its tensors with ``parameters.content_type`` (REST ``parameters``,
gRPC ``InferParameter`` string values), on the request or on each input:

* request ``"pd"``: every input is one column of a DataFrame (:mod:`adapters.models.columns`
  fits the columns to the model); ``"np"`` and ``"str"``: the (first) input as an array or as
  text, which is what this server reads anyway;
* input ``"np"``: the tensor as its datatype (the default); ``"str"``: BYTES as UTF-8 text (how
  every transport here decodes BYTES already); ``"base64"``: each BYTES element base64-decoded
  to bytes.

NOTE: MLServer keeps an element that is not valid base64 as its own bytes instead of refusing it
(``mlserver/codecs/base64.py``, ``_decode_base64``); so does this module, so that the same body
gets the same prediction.

Every output carries ``{"content_type": "np"}``, as MLServer's scikit-learn runtime writes it
(``NumpyCodec.encode_output``). Any other content type is a 400 naming the ones read here.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import replace
from typing import Any

import numpy as np

from adapters.protocol.errors import InvalidTensor
from adapters.protocol.messages import Parameters, Tensor
from adapters.protocol.schemas import Datatype

CONTENT_TYPE = "content_type"
PANDAS = "pd"
REQUEST_TYPES = (PANDAS, "np", "str")
INPUT_TYPES = ("np", "str", "base64")
OUTPUT_TYPE = "np"


def output_parameters() -> Parameters:
    """The parameters of every output: MLServer's codecs read it as a numpy array."""
    return {CONTENT_TYPE: OUTPUT_TYPE}


def request_content_type(parameters: Parameters | None) -> str | None:
    """The request's content type, if it names one.

    Raises:
        InvalidTensor: a value that is not one of :data:`REQUEST_TYPES`.
    """
    if not parameters or CONTENT_TYPE not in parameters:
        return None
    value = parameters[CONTENT_TYPE]
    if value not in REQUEST_TYPES:
        raise InvalidTensor(
            f"request content_type {str(value)[:40]!r} is not one of {list(REQUEST_TYPES)}"
        )
    return str(value)


def decoded(tensor: Tensor) -> Tensor:
    """An input read as its own ``content_type`` says (unchanged without one).

    Raises:
        InvalidTensor: an unknown content type, or ``str``/``base64`` on a tensor that is not
            BYTES.
    """
    value = (tensor.parameters or {}).get(CONTENT_TYPE)
    if value is None or value == "np":
        return tensor
    if value not in INPUT_TYPES:
        raise InvalidTensor(
            f"input '{tensor.name}': content_type {str(value)[:40]!r} is not one of "
            f"{list(INPUT_TYPES)}"
        )
    if tensor.datatype is not Datatype.BYTES:
        raise InvalidTensor(
            f"input '{tensor.name}': content_type '{value}' is for BYTES, "
            f"not {tensor.datatype.value}"
        )
    if value == "str":
        return tensor
    flat = [_from_base64(item) for item in tensor.data.ravel().tolist()]
    data = np.empty(len(flat), dtype=np.object_)
    data[:] = flat
    return replace(tensor, data=data.reshape(tensor.data.shape))


def _from_base64(item: Any) -> bytes:
    raw = item if isinstance(item, bytes) else str(item).encode("utf-8")
    try:
        return base64.b64decode(raw, validate=True)
    except binascii.Error:
        return raw
