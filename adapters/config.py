"""Server configuration, read from environment variables only (the same in a shell, a Bento and a
container). Every variable has a default, so ``bentoml serve`` works with none set.

=====================  =====================================  =================================
variable               meaning                                default
=====================  =====================================  =================================
OIP_MODELS             comma list of model names to serve     ``iris,diabetes,text``
OIP_PLACEMENT          ``inprocess`` or ``runner``, for all   ``inprocess``
                       models or per model (``iris=runner,
                       text=inprocess``; ``*=`` sets the rest)
OIP_DEFAULT_VERSION    what unversioned routes answer with:   ``latest``
                       ``latest``, ``best`` or a version, for
                       all or per model (``iris=best``)
OIP_WORKERS            processes of the gateway               ``1``
OIP_RUNNER_WORKERS     processes of the runner service        ``1``
OIP_MAX_BATCH_SIZE     adaptive batching: most requests       ``64``
                       merged into one predict call
OIP_MAX_LATENCY_MS     adaptive batching: a call expected to  ``10000``
                       wait longer is refused (503)
OIP_SERVER_NAME        ``name`` in ``GET /v2``                ``bentoml-oip-sklearn``
OIP_ACCESS_LOG         one log line per request (``0``/``1``)  ``0``
OIP_TRACING            OpenTelemetry spans for V2 routes      ``0``
                       (``0``/``1``; needs OIP_FAST_LANE=0)
OIP_REQUEST_TIMEOUT_S  deadline of one request (s): past it,  ``60``
                       504 ``{"error"}``, its predict dropped
OIP_MAX_BODY_BYTES     largest request body, before and after ``67108864`` (64 MiB)
                       decompression: past it, 413
OIP_POLL_INTERVAL_S    reload served models from the store    ``0`` (off)
                       every N s (new versions, aliases)
OIP_FAST_LANE          V2 requests skip BentoML's per-request ``1``
                       middlewares (``adapters/gateway.py``
                       lists each one and its stand-in)
=====================  =====================================  =================================
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

DEFAULT_MODELS = ("iris", "diabetes", "text")
N = TypeVar("N", int, float)


class Placement(enum.StrEnum):
    """Where a model's predict runs."""

    INPROCESS = "inprocess"  # in the gateway process, off the event loop
    RUNNER = "runner"  # in the dependent runner service, with adaptive batching


def parse_per_model(value: str, default: str) -> dict[str, str]:
    """Parse ``"x"`` or ``"a=x,b=y,*=z"`` into a mapping; ``"*"`` holds the fallback."""
    result = {"*": default}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, sep, setting = item.partition("=")
        if sep:
            result[name.strip()] = setting.strip()
        else:
            result["*"] = name
    return result


def _flag(value: str) -> bool:
    return value.strip().lower() not in ("0", "false", "no", "off", "")


def _number(
    env: Mapping[str, str], name: str, default: N, kind: Callable[[str], N], *, zero: bool = False
) -> N:
    """A positive number (or zero, if allowed) from ``env[name]``; a bad value fails naming the
    variable."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not (value > 0 or (zero and value == 0)):
        allowed = "zero or a positive" if zero else "a positive"
        raise ValueError(f"{name}: {raw!r} is not {allowed} {kind.__name__}")
    return value


def _tokens(env: Mapping[str, str]) -> tuple[str, ...]:
    """Bearer tokens from ``OIP_AUTH_TOKEN`` and/or ``OIP_AUTH_TOKENS_FILE`` (one per line,
    ``#`` comments); a named file that cannot be read is a start-up error."""
    tokens = [env.get("OIP_AUTH_TOKEN", "").strip()]
    path = env.get("OIP_AUTH_TOKENS_FILE", "").strip()
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ValueError(
                f"OIP_AUTH_TOKENS_FILE: cannot read {path!r} ({exc.strerror})"
            ) from None
        tokens += [line.strip() for line in lines if not line.strip().startswith("#")]
    return tuple(t for t in tokens if t)


@dataclass(frozen=True)
class Limits:
    """What one request may cost before it is refused: each limit's error names its variable."""

    request_timeout_s: float = 60.0  # OIP_REQUEST_TIMEOUT_S: the whole request, 504 past it
    read_timeout_s: float = 10.0  # OIP_READ_TIMEOUT_S: a stalled body (or headers), 408
    max_body_bytes: int = 64 * 2**20  # OIP_MAX_BODY_BYTES: before and after decompression, 413
    max_elements: int = 16 * 2**20  # OIP_MAX_ELEMENTS: tensor elements per request, 413
    max_bytes_element: int = 2**20  # OIP_MAX_BYTES_ELEMENT: bytes of one BYTES element, 413
    max_connections: int = 1000  # OIP_MAX_CONNECTIONS: open connections per worker


@dataclass(frozen=True)
class Settings:
    """Everything that decides what is served and how."""

    models: tuple[str, ...] = DEFAULT_MODELS
    placements: dict[str, str] = field(default_factory=lambda: {"*": "inprocess"})
    default_versions: dict[str, str] = field(default_factory=lambda: {"*": "latest"})
    workers: int = 1
    runner_workers: int = 1
    max_batch_size: int = 64
    max_latency_ms: int = 10000
    server_name: str = "bentoml-oip-sklearn"
    access_log: bool = False
    tracing: bool = False
    fast_lane: bool = True
    limits: Limits = field(default_factory=Limits)
    poll_interval_s: float = 0.0
    auth_tokens: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        models = tuple(m.strip() for m in env.get("OIP_MODELS", "").split(",") if m.strip())
        settings = cls(
            models=models or DEFAULT_MODELS,
            placements=parse_per_model(env.get("OIP_PLACEMENT", ""), "inprocess"),
            default_versions=parse_per_model(env.get("OIP_DEFAULT_VERSION", ""), "latest"),
            workers=_number(env, "OIP_WORKERS", 1, int),
            runner_workers=_number(env, "OIP_RUNNER_WORKERS", 1, int),
            max_batch_size=_number(env, "OIP_MAX_BATCH_SIZE", 64, int),
            max_latency_ms=_number(env, "OIP_MAX_LATENCY_MS", 10000, int),
            limits=Limits(
                request_timeout_s=_number(env, "OIP_REQUEST_TIMEOUT_S", 60.0, float),
                read_timeout_s=_number(env, "OIP_READ_TIMEOUT_S", 10.0, float),
                max_body_bytes=_number(env, "OIP_MAX_BODY_BYTES", 64 * 2**20, int),
                max_elements=_number(env, "OIP_MAX_ELEMENTS", 16 * 2**20, int),
                max_bytes_element=_number(env, "OIP_MAX_BYTES_ELEMENT", 2**20, int),
                max_connections=_number(env, "OIP_MAX_CONNECTIONS", 1000, int),
            ),
            auth_tokens=_tokens(env),
            cors_origins=tuple(
                o.strip() for o in env.get("OIP_CORS_ORIGINS", "").split(",") if o.strip()
            ),
            poll_interval_s=_number(env, "OIP_POLL_INTERVAL_S", 0.0, float, zero=True),
            server_name=env.get("OIP_SERVER_NAME", "bentoml-oip-sklearn"),
            access_log=_flag(env.get("OIP_ACCESS_LOG", "0")),
            tracing=_flag(env.get("OIP_TRACING", "0")),
            fast_lane=_flag(env.get("OIP_FAST_LANE", "1")),
        )
        for name in settings.models:
            settings.placement(name)  # fail at start-up on a misspelt placement
        return settings

    def placement(self, name: str) -> Placement:
        value = self.placements.get(name, self.placements["*"])
        try:
            return Placement(value)
        except ValueError:
            raise ValueError(
                f"OIP_PLACEMENT: '{value}' for model '{name}' is not one of "
                f"{[p.value for p in Placement]}"
            ) from None

    def default_version(self, name: str) -> str:
        return self.default_versions.get(name, self.default_versions["*"])

    def models_in(self, placement: Placement) -> tuple[str, ...]:
        return tuple(m for m in self.models if self.placement(m) is placement)
