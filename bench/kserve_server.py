"""KServe's Python ModelServer as a peer: its own sklearnserver's model class, on loopback.

What KServe's ``sklearnserver`` does for a V2 request, with the library's own helpers: the
request is decoded by KServe (``get_predict_input``), ``predict`` runs on the estimator loaded
from a joblib file, and the answer is built by ``get_predict_response``. One process, KServe's
defaults otherwise (its REST server on uvicorn, uvloop). Its gRPC server is off: KServe binds
both servers to every interface (``0.0.0.0``, ``[::]``); the REST one is held to 127.0.0.1 here
by giving uvicorn's ``Config`` that host, so the benchmark listens on loopback only.

    python bench/kserve_server.py --models-dir DIR --port N   # serves DIR/*.joblib
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import joblib
import uvicorn
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.utils.utils import from_np_dtype, get_predict_input, get_predict_response


class SKLearnModel(Model):  # type: ignore[misc]
    """KServe's sklearnserver model, reduced to ``predict`` on a joblib file."""

    def __init__(self, name: str, path: Path) -> None:
        super().__init__(name)
        self.path = path
        self.estimator: Any = None

    def load(self) -> bool:
        self.estimator = joblib.load(self.path)
        self.ready = True
        return True

    def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None
    ) -> InferResponse:
        instances = get_predict_input(payload)
        result = self.estimator.predict(instances)
        response = get_predict_response(payload, result, self.name)
        if payload.request_outputs:  # named as asked ("predict"): KServe answers only those
            output = InferOutput(
                payload.request_outputs[0].name, list(result.shape), from_np_dtype(result.dtype)
            )
            output.set_data_from_numpy(result, binary_data=payload.use_binary_outputs)
            response.outputs[0] = output
        return response


def _loopback_config(config: type[uvicorn.Config]) -> type[uvicorn.Config]:
    class Loopback(config):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["host"] = "127.0.0.1"
            super().__init__(*args, **kwargs)

    return Loopback


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models-dir", type=Path, required=True)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    uvicorn.Config = _loopback_config(uvicorn.Config)  # KServe reads uvicorn.Config at start
    models = []
    for path in sorted(args.models_dir.glob("*.joblib")):
        model = SKLearnModel(path.stem, path)
        model.load()
        models.append(model)
    ModelServer(http_port=args.port, enable_grpc=False, enable_docs_url=False).start(models)


if __name__ == "__main__":
    main()
