"""Transport-neutral inference messages: what the data plane takes and returns.

Each transport (the REST JSON body today; the binary tensor extension and gRPC beside it) turns
its wire format into an :class:`InferRequest` whose tensors are already numpy arrays, hands it to
:meth:`~adapters.dataplane.DataPlane.infer`, and writes the :class:`InferResponse` back in its
own format. Validation against the model, version resolution and execution therefore exist once,
in the data plane, whatever the transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.protocol.codecs import Array
from adapters.protocol.schemas import Datatype

Parameters = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Tensor:
    """A named tensor: its V2 datatype and its data, a numpy array of its shape.

    For an input, ``datatype`` is what the client declared (the data plane checks it against the
    model's signature); for an output, it is the datatype of the array the model produced.
    """

    name: str
    datatype: Datatype
    data: Array
    parameters: Parameters | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An output the client asked for, with its per-output parameters."""

    name: str
    parameters: Parameters | None = None


@dataclass(frozen=True, slots=True)
class InferRequest:
    """One inference request, decoded from any transport.

    ``model_version`` is ``None`` for the model's default version (the unversioned routes).
    ``outputs`` is ``None`` when the client asked for every output.
    """

    model_name: str
    model_version: str | None
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None = None
    id: str | None = None
    parameters: Parameters | None = None
    decode_ns: int = 0  # time the transport spent decoding it (statistics: compute_input)


@dataclass(frozen=True, slots=True)
class InferResponse:
    """One inference response; ``model_version`` is always the concrete version that ran."""

    model_name: str
    model_version: str
    outputs: list[Tensor]
    id: str | None = None
    parameters: Parameters | None = None
