"""The protocol: V2 wire types (:mod:`~adapters.protocol.schemas`), the datatype table and JSON
tensor codec (:mod:`~adapters.protocol.codecs`), the binary tensor extension
(:mod:`~adapters.protocol.binary`), transport-neutral messages
(:mod:`~adapters.protocol.messages`), MLServer's content types
(:mod:`~adapters.protocol.content`), classification outputs
(:mod:`~adapters.protocol.classification`) and the error types (:mod:`~adapters.protocol.errors`).

Pure: it imports numpy, pydantic and orjson, and no web framework, no BentoML, no grpc (an
import-linter contract). It imports no other package of ``adapters``.
"""
