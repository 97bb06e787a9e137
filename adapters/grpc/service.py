"""The gRPC transport: ``inference.GRPCInferenceService`` (Triton's proto, a superset of KServe
V2's, so tritonclient.grpc and the KServe SDK both work) and ``grpc.health.v1.Health``, served by
a ``grpc.aio`` server inside the gateway worker's event loop, over the same data plane as REST.

Each RPC decodes its message (:mod:`adapters.grpc.codec`), calls the data plane, and encodes the
answer; an :class:`~adapters.protocol.errors.OIPError` becomes the gRPC status of its HTTP status,
with the same message. RPCs with no REST counterpart here (shared memory, model config, tracing,
logging, streaming) answer UNIMPLEMENTED.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc

from adapters.dataplane.auth import bearer_allowed
from adapters.dataplane.plane import DataPlane
from adapters.grpc.codec import read_request, write_response
from adapters.grpc.generated import grpc_service_pb2 as pb
from adapters.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from adapters.grpc.generated import health_pb2, health_pb2_grpc
from adapters.protocol.errors import OIPError

logger = logging.getLogger(__name__)
SERVICE = "inference.GRPCInferenceService"
STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
ENVELOPE_BYTES = 2**20
"""Room in a sent message beyond its tensor data: names, shapes, datatypes, the echoed ``id``."""
UNIMPLEMENTED = (
    "ModelConfig",
    "SystemSharedMemoryStatus",
    "SystemSharedMemoryRegister",
    "SystemSharedMemoryUnregister",
    "CudaSharedMemoryStatus",
    "CudaSharedMemoryRegister",
    "CudaSharedMemoryUnregister",
    "TraceSetting",
    "LogSettings",
)


def answered(
    rpc: Callable[[Any, Any, Any], Awaitable[Any]],
) -> Callable[[Any, Any, Any], Awaitable[Any]]:
    """The one error path of the gRPC edge: OIPError -> its status and message; anything else a
    logged INTERNAL with an opaque message."""

    async def run(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await rpc(self, request, context)
        except OIPError as exc:
            if exc.status_code == 500:
                logger.error("internal error in %s: %s", rpc.__name__, exc)
                await context.abort(grpc.StatusCode.INTERNAL, "Internal server error")
            await context.abort(STATUS.get(exc.status_code, grpc.StatusCode.UNKNOWN), exc.message)
        except grpc.aio.AbortError:
            raise
        except Exception:
            logger.exception("unhandled error in %s", rpc.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "Internal server error")

    run.__name__ = rpc.__name__
    return run


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """Every RPC a thin translation onto :class:`~adapters.dataplane.DataPlane`."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    @answered
    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    @answered
    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=await self.dataplane.ready())

    @answered
    async def ModelReady(self, request: Any, context: Any) -> Any:
        state = await self.dataplane.model_ready(request.name, request.version or None)
        return pb.ModelReadyResponse(ready=state["ready"])

    @answered
    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return pb.ServerMetadataResponse(**self.dataplane.server_metadata())

    @answered
    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        meta = self.dataplane.model_metadata(request.name, request.version or None)
        meta.pop("properties", None)  # not in the gRPC message
        return pb.ModelMetadataResponse(**meta)

    @answered
    async def ModelInfer(self, request: Any, context: Any) -> Any:
        async with self.dataplane.deadline(request.model_name):
            infer = read_request(request, self.dataplane.limits)
            response = await self.dataplane.infer(infer)
        return write_response(response)

    @answered
    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        stats = self.dataplane.model_statistics(request.name or None, request.version or None)
        return pb.ModelStatisticsResponse(**stats)

    @answered
    async def RepositoryIndex(self, request: Any, context: Any) -> Any:
        models = self.dataplane.repository.index(ready_only=request.ready)
        fields = ("name", "version", "state", "reason")  # an evicted version says so in reason
        return pb.RepositoryIndexResponse(models=[{f: m[f] for f in fields} for m in models])

    @answered
    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        await self.dataplane.repository.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    @answered
    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        await self.dataplane.repository.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    async def ModelStreamInfer(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "ModelStreamInfer is not implemented")
        yield  # an async generator, as a streaming handler must be


def _unimplemented(name: str) -> Callable[..., Awaitable[Any]]:
    async def rpc(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{name} is not implemented")

    rpc.__name__ = name
    return rpc


for _name in UNIMPLEMENTED:
    setattr(InferenceService, _name, _unimplemented(_name))


class Health(health_pb2_grpc.HealthServicer):
    """``grpc.health.v1.Health``: SERVING when every served model can run inference (the
    readiness of ``/v2/health/ready``), for the server ("") and the inference service."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    async def Check(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request.service not in ("", SERVICE):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        ready = await self.dataplane.ready()
        status = health_pb2.HealthCheckResponse
        return status(status=status.SERVING if ready else status.NOT_SERVING)

    async def Watch(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Watch is not implemented; use Check")
        yield


class BearerTokens(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """``OIP_AUTH_TOKEN`` for gRPC: ``authorization: Bearer <token>`` metadata on every call but
    the health check, compared in constant time; UNAUTHENTICATED otherwise."""

    OPEN = "/grpc.health.v1.Health/Check"

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens = [t.encode() for t in tokens]

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        metadata = dict(details.invocation_metadata or ())
        authorization = metadata.get("authorization")
        if details.method == self.OPEN or bearer_allowed(
            authorization.encode() if isinstance(authorization, str) else authorization,
            self.tokens,
        ):
            return await continuation(details)

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "a valid bearer token is required (authorization: Bearer <token>)",
            )

        return grpc.unary_unary_rpc_method_handler(refuse)


async def serve(
    dataplane: DataPlane, *, host: str, port: int, tokens: Sequence[str] = ()
) -> grpc.aio.Server:
    """Start the gRPC server on ``host:port`` in the running event loop (SO_REUSEPORT, so each
    gateway worker binds the same port; :mod:`adapters.grpc.port` keeps other servers off it);
    requests are limited like REST bodies, answers like REST answers (the data plane refuses an
    answer over ``OIP_MAX_RESPONSE_BYTES`` first; gRPC's own limit adds room for the envelope);
    calls need a bearer token when ``tokens`` are configured."""
    limits = dataplane.limits
    server = grpc.aio.server(
        interceptors=[BearerTokens(tokens)] if tokens else None,
        # answers go uncompressed: deflating a few hundred bytes costs more than it saves on
        # the links a model server sits on (a client's compressed request is still read)
        compression=grpc.Compression.NoCompression,
        options=[
            ("grpc.max_receive_message_length", limits.max_body_bytes),
            ("grpc.max_send_message_length", limits.max_response_bytes + ENVELOPE_BYTES),
            ("grpc.so_reuseport", 1),
        ],
    )
    add_inference: Any = pb_grpc.add_GRPCInferenceServiceServicer_to_server  # generated, untyped
    add_health: Any = health_pb2_grpc.add_HealthServicer_to_server
    add_inference(InferenceService(dataplane), server)
    add_health(Health(dataplane), server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    logger.info("gRPC (inference.GRPCInferenceService, grpc.health.v1) on %s:%d", host, port)
    return server
