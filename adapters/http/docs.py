"""Swagger UI for the V2 routes at ``/v2/docs``, and the OpenAPI document it renders at
``/v2/docs/openapi.json`` (:mod:`adapters.http.openapi`).

Everything the page loads comes from this server: no CDN, so it works offline and loads no
third-party script (its ``Content-Security-Policy`` allows nothing else). Swagger UI's files come
from the ``swagger-ui-bundle-v2`` package, the official ``swagger-ui-dist`` files as a Python
package: Swagger UI 5, the first to render OpenAPI 3.1 (``swagger-ui-bundle`` 1.1.0 still ships
4.15, which refuses a 3.1 document). Only the files the page uses are served, from an
allow-list, so no other path into the package's directory exists.

The routes are registered by :func:`~adapters.http.routes.build_app` like every V2 route, through
its one error path (:func:`~adapters.http.routes.guarded`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import Response
from swagger_ui_bundle import swagger_ui_path

from adapters import __version__
from adapters.http.openapi import openapi_document
from adapters.protocol.errors import RouteNotFound

Endpoint = Callable[[Request], Awaitable[Response]]

SWAGGER_UI = Path(swagger_ui_path)
SWAGGER_UI_VERSION = SWAGGER_UI.name.removeprefix("swagger-ui-")
ASSETS_ROUTE = "/v2/docs/assets/{name}"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
"""The files the page loads, and their content types: the only ones served."""

# NOTE: URLs are relative to /v2/docs, so the page also works behind a proxy's path prefix; the
# assets' URLs carry Swagger UI's version, so a new version is never read from a stale cache.
PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Open Inference Protocol (V2) - Swagger UI</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css?v={SWAGGER_UI_VERSION}">
<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="docs/assets/favicon-16x16.png" sizes="16x16">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js?v={SWAGGER_UI_VERSION}"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "docs/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout",
}});
</script>
</body>
</html>
"""
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:",
    "Cache-Control": "no-cache",
}


async def docs_page(request: Request) -> Response:
    return Response(PAGE, media_type="text/html", headers=PAGE_HEADERS)


@functools.cache
def _document() -> bytes:
    return orjson.dumps(openapi_document(server_version=__version__))


async def openapi_json(request: Request) -> Response:
    return Response(_document(), media_type="application/json")


@functools.cache
def _asset(name: str) -> bytes:
    return (SWAGGER_UI / name).read_bytes()


async def asset(request: Request) -> Response:
    """One allow-listed Swagger UI file, read once, cached by the browser for a day."""
    name = request.path_params["name"]
    if name not in ASSETS:
        raise RouteNotFound(f"no Swagger UI asset {name[:100]!r}")
    return Response(
        _asset(name),
        media_type=ASSETS[name],
        headers={"Cache-Control": "public, max-age=86400"},
    )


DOCS_ROUTES: list[tuple[str, str, Endpoint, str]] = [  # path, verb, endpoint, metric label
    ("/v2/docs", "GET", docs_page, "docs"),
    ("/v2/docs/openapi.json", "GET", openapi_json, "docs"),
    (ASSETS_ROUTE, "GET", asset, "docs"),
]
"""The documentation's routes, registered by :func:`~adapters.http.routes.build_app` with the server
routes (before the ``/v2`` catch-all, which would otherwise answer them 404)."""
