"""The gRPC edge (``inference.GRPCInferenceService`` and ``grpc.health.v1.Health``): one more
transport on the data plane, beside HTTP. :mod:`~adapters.grpc.service` (servicers, server),
:mod:`~adapters.grpc.codec` (protobuf messages <-> the data plane's), :mod:`~adapters.grpc.port`
(the port owned by one server). ``generated/`` holds the ``*_pb2*.py`` modules that ``make
proto`` generates from the protos in ``generated/proto`` (Triton's, from
triton-inference-server/common).

The only package that imports grpc (with :mod:`adapters.bento`, which starts it). May import
the data plane and everything below it; never :mod:`adapters.http`.
"""
