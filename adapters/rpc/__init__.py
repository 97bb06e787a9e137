"""The gRPC transport (``inference.GRPCInferenceService`` and ``grpc.health.v1.Health``): one
more edge on the data plane, beside REST. The ``*_pb2*.py`` modules are generated from the
protos in ``proto/`` (Triton's, from triton-inference-server/common) by ``make proto``."""
