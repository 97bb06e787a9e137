"""Start-up floor: the least BentoML service that serves the same stored models.

One service, one worker; its ``__init__`` loads the latest stored version of each model in
``OIP_MODELS`` with ``bentoml.sklearn.load_model`` (scikit-learn's own imports included), and a
mounted Starlette app answers ``GET /v2/health/ready``. Nothing of this project is imported: its
launch-to-ready time is what ``bentoml serve`` and scikit-learn cost before any V2 server code,
so the gap to ``ours-inprocess`` in the start-up table is what this project adds.

    BENTOML_HOME=... OIP_MODELS=iris,diabetes,text bentoml serve service:Floor  # cwd: bench/floor
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def ready(request: Any) -> JSONResponse:
    return JSONResponse({"ready": True})


app = Starlette(routes=[Route("/v2/health/ready", ready)])


@bentoml.service(name="start-up-floor")
@bentoml.asgi_app(app, path="/")
class Floor:
    def __init__(self) -> None:
        names = os.environ.get("OIP_MODELS", "iris,diabetes,text").split(",")
        self.models = {name: bentoml.sklearn.load_model(f"{name}:latest") for name in names}
