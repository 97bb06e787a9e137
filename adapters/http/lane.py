"""The fast lane: a pure ASGI switch that hands ``/v2`` requests straight to the V2 router.

BentoML 1.4 wraps every request of an entry service in its own ASGI middlewares before a mounted
app sees it; for a tiny model that stack, not the model, is the cost (docs/performance.md).
:class:`V2FastLane` sits in front of BentoML's app: ``/v2`` HTTP requests go to the V2 app's
router, everything else (``/metrics``, ``/livez``, ``/readyz``, lifespan) to BentoML's app.
The root ``/`` answers a 307 to the V2 documentation (``/v2/docs``) in place of BentoML's page,
which loads a third-party tag-manager script.
What the lane skips, and what it puts back, is listed in :mod:`adapters.bento.gateway`.
"""

from __future__ import annotations

import logging
import time

from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("bentoml.access")  # BentoML's own access logger and handlers
V2_PREFIX = "/v2"
# NOTE: a relative Location ("v2/docs" from "/"), so that behind a proxy's path prefix the
# browser stays under the prefix.
ROOT_REDIRECT = RedirectResponse("v2/docs", status_code=307)


def is_v2(path: str) -> bool:
    return path == V2_PREFIX or path.startswith(V2_PREFIX + "/")


def infer_path_params(path: str) -> dict[str, str] | None:
    """The path parameters of ``POST`` to an infer route, as the router would match them
    (each a non-empty segment), or None for any other path."""
    if not (path.startswith("/v2/models/") and path.endswith("/infer")):
        return None
    parts = path[len("/v2/models/") : -len("/infer")].split("/")
    if len(parts) == 1 and parts[0]:
        return {"model_name": parts[0]}
    if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
        return {"model_name": parts[0], "model_version": parts[2]}
    return None


class V2FastLane:
    """Route ``/v2`` HTTP requests to ``v2_app`` and the rest to ``fallback``.

    Args:
        v2_app: the V2 Starlette app (its router is called directly).
        fallback: BentoML's app, for every other request.
        log_access: one line per V2 request on BentoML's access logger, in its format.
    """

    def __init__(self, v2_app: ASGIApp, fallback: ASGIApp, *, log_access: bool) -> None:
        self.v2_app = v2_app
        # NOTE: the lane calls the V2 app's router, past Starlette's app-level error middlewares
        # (a measurable share of a small request); the routes answer their own errors.
        self.v2_router: ASGIApp = getattr(v2_app, "router", v2_app)
        self.fallback = fallback
        self.log_access = log_access
        # NOTE: inference skips even the router (its route scan, Starlette's request wrappers)
        self.infer: ASGIApp | None = getattr(getattr(v2_app, "state", None), "infer", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_v2(scope["path"]):
            if scope["type"] == "http" and scope["path"] == "/":
                await ROOT_REDIRECT(scope, receive, send)
                return
            await self.fallback(scope, receive, send)
            return
        scope["app"] = self.v2_app
        if not (self.log_access and access_log.isEnabledFor(logging.INFO)):
            await self.route(scope, receive, send)
            return
        await self._logged(scope, receive, send)

    async def route(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Inference straight to its endpoint, any other V2 request through the router."""
        if self.infer is not None and scope["method"] == "POST":
            params = infer_path_params(scope["path"])
            if params is not None:
                scope["path_params"] = params
                await self.infer(scope, receive, send)
                return
        await self.v2_router(scope, receive, send)

    async def _logged(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.route(scope, receive, sending)
        finally:
            client = scope.get("client") or ("-", 0)
            # a record made directly: Logger.info would also look up the caller's frame
            access_log.handle(
                access_log.makeRecord(
                    access_log.name,
                    logging.INFO,
                    __file__,
                    0,
                    "%s:%s (scheme=http,method=%s,path=%s) (status=%s) %.3fms",
                    (
                        client[0],
                        client[1],
                        scope["method"],
                        scope["path"],
                        status,
                        (time.perf_counter() - start) * 1000,
                    ),
                    None,
                )
            )
