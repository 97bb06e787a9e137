"""Optional bearer-token authentication and CORS, in front of every route of the gateway.

:func:`secure` wraps the gateway's ASGI app (fast lane or BentoML's) only when
``OIP_AUTH_TOKEN`` / ``OIP_AUTH_TOKENS_FILE`` or ``OIP_CORS_ORIGINS`` is set, so the default
costs nothing per request.

* **Auth.** Every HTTP request needs ``Authorization: Bearer <token>`` except the probes
  (:data:`OPEN_PATHS`: liveness and readiness, V2's and BentoML's); otherwise 401 ``{"error"}``
  with ``WWW-Authenticate: Bearer``. Tokens are compared in constant time
  (:func:`hmac.compare_digest`) against every configured token, and never logged.
* **CORS** is off unless origins are configured; Starlette's ``CORSMiddleware`` answers the
  preflights, outside the auth check (a browser sends no credentials on a preflight).

The cross-site request guard that needs no configuration (refusing the content types a web page
can POST without a preflight) is in :func:`adapters.http.routes.guarded`.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.dataplane.auth import bearer_allowed
from adapters.http.responses import error_response

OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/livez", "/readyz", "/healthz"})
CORS_HEADERS = [
    "Authorization",
    "Content-Type",
    "Content-Encoding",
    "Accept-Encoding",
    "Inference-Header-Content-Length",
]


class BearerAuth:
    """Refuse HTTP requests without one of ``tokens`` as their bearer token."""

    def __init__(self, app: ASGIApp, tokens: Sequence[str]) -> None:
        self.app = app
        self.tokens = [t.encode() for t in tokens]

    def allowed(self, scope: Scope) -> bool:
        if scope["path"] in OPEN_PATHS:
            return True
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        return bearer_allowed(authorization, self.tokens)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.allowed(scope):
            await self.app(scope, receive, send)
            return
        response = error_response(
            "a valid bearer token is required (Authorization: Bearer <token>)",
            401,
            headers={"WWW-Authenticate": 'Bearer realm="oip"'},
        )
        await response(scope, receive, send)


def secure(app: ASGIApp, *, tokens: Sequence[str], cors_origins: Sequence[str]) -> ASGIApp:
    """``app`` behind auth (if tokens are configured) and CORS (if origins are)."""
    if tokens:
        app = BearerAuth(app, tokens)
    if cors_origins:
        app = CORSMiddleware(
            app,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "HEAD"],
            allow_headers=CORS_HEADERS,
            expose_headers=["Inference-Header-Content-Length", "Content-Encoding"],
        )
    return app
