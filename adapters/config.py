"""Server configuration: ``OIP_*`` environment variables (the same in a shell, a Bento and a
container), over an optional ``OIP_CONFIG`` file; read and validated by
:mod:`adapters.environment`. Every variable has a default, so ``bentoml serve`` works with none
set; the limits and security variables are in the README's "Limits and security".

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
                       middlewares (``adapters/bento/gateway.py``
                       lists each one and its stand-in)
OIP_GRPC_PORT          gRPC (inference.GRPCInferenceService   ``8001``
                       and grpc.health.v1); ``0`` disables
OIP_GRPC_HOST          address the gRPC server binds          ``127.0.0.1``
OIP_PREDICTIONS_DB     score.py's database (SQLAlchemy URL): unset
                       GET .../predictions/{key} reads it
OIP_CONFIG             a TOML or YAML file: the same settings unset
                       and per-model sections (placement,
                       default version, batching, signature
                       override)
=====================  =====================================  =================================
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .environment import ConfigError, read
from .signature import Signature

DEFAULT_MODELS = ("iris", "diabetes", "text")


class Placement(enum.StrEnum):
    """Where a model's predict runs."""

    INPROCESS = "inprocess"  # in the gateway process, off the event loop
    RUNNER = "runner"  # in the dependent runner service, with adaptive batching


def _keys(value: str) -> set[str]:
    """The model names a per-model variable sets explicitly."""
    return {part.partition("=")[0].strip() for part in value.split(",") if "=" in part}


def _signature(name: str, data: dict[str, Any]) -> Signature:
    try:
        return Signature.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"OIP_CONFIG [model.{name}] signature: {exc!r}") from None


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


def _tokens(token: str, path: str) -> tuple[str, ...]:
    """Bearer tokens from ``OIP_AUTH_TOKEN`` and/or ``OIP_AUTH_TOKENS_FILE`` (one per line,
    ``#`` comments); a named file that cannot be read is a start-up error."""
    tokens = [token.strip()]
    if path.strip():
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(
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
    max_response_bytes: int = 64 * 2**20  # OIP_MAX_RESPONSE_BYTES: output tensor data, 413
    max_elements: int = 16 * 2**20  # OIP_MAX_ELEMENTS: tensor elements per request, 413
    max_bytes_element: int = 2**20  # OIP_MAX_BYTES_ELEMENT: bytes of one BYTES element, 413
    max_connections: int = 1000  # OIP_MAX_CONNECTIONS: open connections per worker


@dataclass(frozen=True)
class Batching:
    """How a model's concurrent calls merge: at most ``max_batch_size`` calls in one predict; a
    call that waited ``max_latency_ms`` for its turn is refused (503, retry later)."""

    max_batch_size: int = 64  # OIP_MAX_BATCH_SIZE, or [model.<name>] max_batch_size
    max_latency_ms: int = 10000  # OIP_MAX_LATENCY_MS, or [model.<name>] max_latency_ms


PLAIN = (
    "workers",
    "runner_workers",
    "max_batch_size",
    "max_latency_ms",
    "server_name",
    "access_log",
    "tracing",
    "fast_lane",
    "poll_interval_s",
    "grpc_port",
    "grpc_host",
    "predictions_db",
)
"""Settings read as they are from :class:`~adapters.environment.Environment`."""


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
    grpc_port: int = 8001  # 0: no gRPC server
    grpc_host: str = "127.0.0.1"
    predictions_db: str = ""  # SQLAlchemy URL of score.py's database: the read-back route
    auth_tokens: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()

    signatures: dict[str, Signature] = field(default_factory=dict)  # per model, from the file
    batchings: dict[str, Batching] = field(default_factory=dict)  # per model, from the file

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings from ``env`` (default: the process environment) and ``OIP_CONFIG``.

        Raises:
            ConfigError: one line naming the variable and the value.
        """
        raw = read(env)
        models = tuple(m.strip() for m in raw.models.split(",") if m.strip()) or DEFAULT_MODELS
        sections = raw.model
        placements = parse_per_model(raw.placement, "inprocess")
        defaults = parse_per_model(raw.default_version, "latest")
        for name, section in sections.items():
            if section.placement and name not in _keys(raw.placement):
                placements[name] = section.placement
            if section.default_version and name not in _keys(raw.default_version):
                defaults[name] = section.default_version
        settings = cls(
            models=models,
            placements=placements,
            default_versions=defaults,
            limits=Limits(**{f.name: getattr(raw, f.name) for f in fields(Limits)}),
            **{name: getattr(raw, name) for name in PLAIN},
            auth_tokens=_tokens(raw.auth_token, raw.auth_tokens_file),
            cors_origins=tuple(o.strip() for o in raw.cors_origins.split(",") if o.strip()),
            signatures={n: _signature(n, s.signature) for n, s in sections.items() if s.signature},
            batchings={
                n: Batching(
                    s.max_batch_size or raw.max_batch_size, s.max_latency_ms or raw.max_latency_ms
                )
                for n, s in sections.items()
                if s.max_batch_size or s.max_latency_ms
            },
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Per-model keys name served models, placements are known ones.

        Raises:
            ConfigError: naming the variable and the value.
        """
        for variable, mapping in (
            ("OIP_PLACEMENT", self.placements),
            ("OIP_DEFAULT_VERSION", self.default_versions),
        ):
            stray = [k for k in mapping if k != "*" and k not in self.models]
            if stray:
                raise ConfigError(
                    f"{variable}: {stray[0]!r} is not a served model (OIP_MODELS: "
                    f"{', '.join(self.models)})"
                )
        for name in self.models:
            self.placement(name)
        stray = [n for n in [*self.signatures, *self.batchings] if n not in self.models]
        if stray:
            raise ConfigError(f"OIP_CONFIG [model.{stray[0]}]: not a served model")

    def placement(self, name: str) -> Placement:
        value = self.placements.get(name, self.placements["*"])
        try:
            return Placement(value)
        except ValueError:
            raise ConfigError(
                f"OIP_PLACEMENT: '{value}' for model '{name}' is not one of "
                f"{[p.value for p in Placement]}"
            ) from None

    def default_version(self, name: str) -> str:
        return self.default_versions.get(name, self.default_versions["*"])

    def models_in(self, placement: Placement) -> tuple[str, ...]:
        return tuple(m for m in self.models if self.placement(m) is placement)

    def batching(self, name: str) -> Batching:
        """The model's own batching (its ``[model.<name>]`` section), else the server's."""
        return self.batchings.get(name) or Batching(self.max_batch_size, self.max_latency_ms)

    def runner_apis(self) -> dict[str, str]:
        """The runner API of each runner-placed model with batching of its own; the others share
        ``run``. BentoML batches per API, so a model batched its own way needs its own."""
        apis: dict[str, str] = {}
        for name in self.models_in(Placement.RUNNER):
            if name in self.batchings:
                api = "run_" + re.sub(r"[^0-9a-z_]", "_", name.lower())
                apis[name] = api if api not in apis.values() else f"{api}_{len(apis)}"
        return apis
