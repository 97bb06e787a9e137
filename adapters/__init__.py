"""The Open Inference Protocol (KServe V2 REST) for scikit-learn models in the BentoML store.

Three layers: :mod:`~adapters.routes` and the :mod:`~adapters.rest` edge (HTTP and JSON) ->
:mod:`~adapters.dataplane` and :mod:`~adapters.registry` (which version, what it means) ->
:mod:`~adapters.codecs` (tensors). Where predict runs is :mod:`~adapters.runtime`
(:mod:`~adapters.inprocess`, :mod:`~adapters.runner`); what is served
is :mod:`~adapters.config`, wired by :mod:`~adapters.wiring`.

Life of a request (``POST /v2/models/iris/infer``):

1. :class:`~adapters.lane.V2FastLane` (the gateway's ASGI app, :mod:`adapters.bento.gateway`) sends
   the ``/v2`` request to the V2 router (with ``OIP_FAST_LANE=0``, BentoML's middlewares first).
2. :func:`~adapters.routes.guarded` wraps the route: one error path, the request metric.
3. :func:`~adapters.routes.model_infer` reads the body under the request deadline;
   :func:`~adapters.rest.read_infer_request` validates the envelope (:mod:`~adapters.schemas`)
   and decodes each tensor (:func:`~adapters.codecs.decode_tensor`) into an
   :class:`~adapters.messages.InferRequest`.
4. :meth:`DataPlane.infer <adapters.dataplane.DataPlane.infer>` resolves the version
   (:meth:`Registry.resolve <adapters.registry.Registry.resolve>`), checks the input against
   the signature (:func:`~adapters.dataplane.check_tensor`) and picks the outputs.
5. The model's executor runs predict. In process (:class:`~adapters.inprocess.InProcess`):
   inline on the event loop when the model's small calls are known to be quick, else queued on
   the model's own queue and merged with concurrent calls into one predict on a worker thread.
   On the runner (:class:`~adapters.runner.RunnerClient`): an HTTP call to the ``oip-runner``
   service, whose batchable ``run`` API merges concurrent calls and executes them with
   :func:`~adapters.runtime.predict_batch`.
6. The data plane labels each output with its datatype into an
   :class:`~adapters.messages.InferResponse`; :func:`~adapters.rest.write_infer_response`
   writes JSON, or a JSON header and binary tensors (:mod:`~adapters.binary`), and the route
   compresses it when the client accepts that (:mod:`~adapters.bodies`).
"""

from __future__ import annotations

__version__ = "0.1.0"  # the one source: pyproject.toml reads it (tool.setuptools.dynamic)

from .codecs import DATATYPE_TO_DTYPE, DTYPE_TO_DATATYPE, decode_tensor, encode_tensor
from .config import Placement, Settings
from .dataplane import DataPlane
from .environment import ConfigError
from .errors import OIPError
from .inprocess import InProcess
from .messages import InferRequest, InferResponse, RequestedOutput, Tensor
from .registry import ModelVersion, Registry, ServedModel
from .routes import build_app
from .runner import RunnerClient
from .runtime import load_estimators, predict_batch
from .schemas import Datatype, InferenceRequest
from .signature import Signature, TensorSpec, infer_signature
from .wiring import build_dataplane, check_store, runner_estimators

__all__ = [
    "ConfigError",
    "DATATYPE_TO_DTYPE",
    "DTYPE_TO_DATATYPE",
    "DataPlane",
    "Datatype",
    "InProcess",
    "InferRequest",
    "InferResponse",
    "InferenceRequest",
    "ModelVersion",
    "OIPError",
    "Placement",
    "Registry",
    "RequestedOutput",
    "RunnerClient",
    "ServedModel",
    "Settings",
    "Signature",
    "Tensor",
    "TensorSpec",
    "__version__",
    "build_app",
    "build_dataplane",
    "check_store",
    "decode_tensor",
    "encode_tensor",
    "infer_signature",
    "load_estimators",
    "predict_batch",
    "runner_estimators",
]
