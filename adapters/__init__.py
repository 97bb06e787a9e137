"""The Open Inference Protocol (KServe V2 REST) for scikit-learn models in the BentoML store.

Three layers: :mod:`~adapters.routes` (HTTP) -> :mod:`~adapters.dataplane` and
:mod:`~adapters.registry` (which version, what it means) -> :mod:`~adapters.codecs` (tensors).
Where predict runs is :mod:`~adapters.runtime`; what is served is :mod:`~adapters.config`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .codecs import DATATYPE_TO_DTYPE, DTYPE_TO_DATATYPE, decode_tensor, encode_tensor
from .config import Placement, Settings
from .dataplane import DataPlane
from .errors import OIPError
from .registry import ModelVersion, Registry, ServedModel
from .routes import build_app
from .runtime import InProcess, RunnerClient, load_estimators, predict_batch
from .schemas import Datatype, InferenceRequest
from .serving import build_dataplane, runner_estimators, stored_tags
from .signature import Signature, TensorSpec, infer_signature

__all__ = [
    "DATATYPE_TO_DTYPE",
    "DTYPE_TO_DATATYPE",
    "DataPlane",
    "Datatype",
    "InProcess",
    "InferenceRequest",
    "ModelVersion",
    "OIPError",
    "Placement",
    "Registry",
    "RunnerClient",
    "ServedModel",
    "Settings",
    "Signature",
    "TensorSpec",
    "__version__",
    "build_app",
    "build_dataplane",
    "decode_tensor",
    "encode_tensor",
    "infer_signature",
    "load_estimators",
    "predict_batch",
    "runner_estimators",
    "stored_tags",
]
