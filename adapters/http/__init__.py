"""The HTTP edge: routes (:mod:`~adapters.http.routes`, every V2 route from one table), the REST
body codec (:mod:`~adapters.http.rest`), bodies and their limits (:mod:`~adapters.http.bodies`),
error responses (:mod:`~adapters.http.responses`), auth and CORS
(:mod:`~adapters.http.security`), the fast lane (:mod:`~adapters.http.lane`), the OpenAPI
document and Swagger UI (:mod:`~adapters.http.openapi`, :mod:`~adapters.http.docs`,
:mod:`~adapters.http.examples`) and request metrics (:mod:`~adapters.http.metrics`).

The only package that imports Starlette (with :mod:`adapters.bento`). May import the data plane
and everything below it; never :mod:`adapters.grpc`.
"""
