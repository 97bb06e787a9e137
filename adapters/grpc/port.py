"""The gRPC port belongs to one server, and is shared by that server's gateway workers only.

Each gateway worker runs its own gRPC server on ``OIP_GRPC_PORT``, so the workers bind it with
``SO_REUSEPORT`` (the kernel spreads connections over them). Alone, that would let a second
``bentoml serve`` on the same port start and serve beside the first, taking part of its traffic.
:func:`own` closes that door from the process that plans the server (``bentoml serve`` itself,
which lives as BentoML's arbiter as long as the server runs), before any worker starts:

1. **The check.** It binds the address *without* ``SO_REUSEPORT``: that fails while anyone
   holds the port (another server's workers, its held socket, any other program), and
   succeeds over connections left in TIME_WAIT (``SO_REUSEADDR``), so a restart is not refused.
2. **The hold.** It then binds a socket with ``SO_REUSEPORT`` only, never listening, for the
   server's life. Its own workers (``SO_REUSEPORT``, same user) bind beside it; a stranger's
   check (step 1) fails against it. A socket that does not listen takes no connections.

NOTE: two servers started in the same instant could both pass step 1 before either holds the
port (a window of microseconds between the two binds); the Linux rules that make step 2 exclude
a later check leave no way to make the two steps one.
"""

from __future__ import annotations

import socket

_held: dict[tuple[str, int], list[socket.socket]] = {}


class PortUnavailable(RuntimeError):
    """The gRPC port is held by another process, or its host does not resolve: the message names
    the address and the setting."""


def own(host: str, port: int) -> None:
    """Check that ``host:port`` is free, then hold it for the life of this process.

    Raises:
        PortUnavailable: another process holds the port, or ``host`` does not resolve.
    """
    if (host, port) in _held:
        return
    addresses = _addresses(host, port)
    for family, address in addresses:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise PortUnavailable(
                    f"the gRPC port {host}:{port} is in use by another process "
                    f"({exc.strerror}); choose another OIP_GRPC_PORT, or 0 for no gRPC",
                ) from None
    held = []
    for family, address in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        held.append(sock)
    _held[(host, port)] = held


def _addresses(host: str, port: int) -> list[tuple[int, tuple[str, int]]]:
    """Every address ``host:port`` names, as gRPC binds them (both families for a name)."""
    try:
        found = socket.getaddrinfo(
            host.strip("[]"), port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except OSError as exc:
        raise PortUnavailable(f"OIP_GRPC_HOST {host!r} does not resolve ({exc})") from None
    addresses = ((family, (str(address[0]), int(address[1]))) for family, *_, address in found)
    return list(dict.fromkeys(addresses))
