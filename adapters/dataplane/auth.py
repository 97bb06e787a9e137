"""Bearer tokens, checked the same way by both edges (HTTP: :mod:`adapters.http.security`; gRPC:
:mod:`adapters.grpc.service`): tokens are compared in constant time against every configured
one, and never logged."""

from __future__ import annotations

import hmac
from collections.abc import Sequence


def bearer_allowed(authorization: bytes | None, tokens: Sequence[bytes]) -> bool:
    """Whether an ``Authorization`` value is ``Bearer <one of tokens>`` (HTTP and gRPC alike)."""
    if authorization is None:
        return False
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    # every token is compared, so the time taken does not tell which one was close
    matches = [hmac.compare_digest(token.strip(), t) for t in tokens]
    return any(matches)
