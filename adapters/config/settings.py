"""Server configuration, as the code uses it: what is served, where, and within which limits.

The settings themselves (``OIP_*`` variables, the ``OIP_CONFIG`` file, every default) are
defined once, in :mod:`adapters.config.environment`, and read by :mod:`adapters.config.sources`; the
dataclasses here take their defaults from those definitions and never write their own.
Reference: ``docs/configuration.md`` (``make docs``).
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from adapters.config.environment import DEFAULTS
from adapters.config.fields import ConfigError
from adapters.config.sources import read
from adapters.models.routing import Rollout, splits
from adapters.models.signature import Signature

DEFAULT_MODELS = tuple(DEFAULTS.models.split(","))


class Placement(enum.StrEnum):
    """Where a model's predict runs."""

    INPROCESS = "inprocess"  # in the gateway process, off the event loop
    RUNNER = "runner"  # in the dependent runner service, batching its calls


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
    """What one request may cost before it is refused: each limit's error names its variable.
    Every field is the setting of the same name, read as it is."""

    request_timeout_s: float = DEFAULTS.request_timeout_s
    read_timeout_s: float = DEFAULTS.read_timeout_s
    max_body_bytes: int = DEFAULTS.max_body_bytes
    max_response_bytes: int = DEFAULTS.max_response_bytes
    max_elements: int = DEFAULTS.max_elements
    max_bytes_element: int = DEFAULTS.max_bytes_element
    max_connections: int = DEFAULTS.max_connections


@dataclass(frozen=True)
class Batching:
    """How a model's concurrent calls merge: at most ``max_batch_size`` calls in one predict; a
    call that waited ``max_latency_ms`` for its turn is refused (503, retry later). The server's
    values, or a ``[model.<name>]`` section's."""

    max_batch_size: int = DEFAULTS.max_batch_size
    max_latency_ms: int = DEFAULTS.max_latency_ms


@dataclass(frozen=True)
class Settings:
    """Everything that decides what is served and how. A field named after a setting is that
    setting as it is, unless :meth:`from_env` derives it (lists, per-model mappings, tokens)."""

    models: tuple[str, ...] = DEFAULT_MODELS
    placements: dict[str, str] = field(default_factory=lambda: {"*": DEFAULTS.placement})
    default_versions: dict[str, str] = field(
        default_factory=lambda: {"*": DEFAULTS.default_version}
    )
    workers: int = DEFAULTS.workers
    runner_workers: int = DEFAULTS.runner_workers
    runner_lane: bool = DEFAULTS.runner_lane
    max_batch_size: int = DEFAULTS.max_batch_size
    max_latency_ms: int = DEFAULTS.max_latency_ms
    server_name: str = DEFAULTS.server_name
    access_log: bool = DEFAULTS.access_log
    tracing: bool = DEFAULTS.tracing
    fast_lane: bool = DEFAULTS.fast_lane
    limits: Limits = field(default_factory=Limits)
    poll_interval_s: float = DEFAULTS.poll_interval_s
    drain_delay_s: float = DEFAULTS.drain_delay_s
    grpc_port: int = DEFAULTS.grpc_port  # 0: no gRPC server
    grpc_host: str = DEFAULTS.grpc_host
    predictions_db: str = DEFAULTS.predictions_db  # score.py's database: the read-back route
    bento_models: str = DEFAULTS.bento_models  # what `bentoml build` packs (wiring.check_store)
    auth_tokens: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    max_loaded_versions: int = DEFAULTS.max_loaded_versions  # 0: no limit
    log_inferences: bool = DEFAULTS.log_inferences  # every model's, unless its section says

    signatures: dict[str, Signature] = field(default_factory=dict)  # per model, from the file
    batchings: dict[str, Batching] = field(default_factory=dict)  # per model, from the file
    aliases: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # per model
    shadows: dict[str, str] = field(default_factory=dict)  # per model, from the file
    logged: dict[str, bool] = field(default_factory=dict)  # per model: its log_inferences
    # where from_env read these (None: built in code), so that a load can read them again
    source: Mapping[str, str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings from ``env`` (default: the process environment) and ``OIP_CONFIG``.

        Raises:
            ConfigError: one line naming the variable and the value.
        """
        raw = read(env)
        models = tuple(m.strip() for m in raw.models.split(",") if m.strip()) or DEFAULT_MODELS
        sections = raw.model
        placements = parse_per_model(raw.placement, DEFAULTS.placement)
        defaults = parse_per_model(raw.default_version, DEFAULTS.default_version)
        for name, section in sections.items():
            if section.placement and name not in _keys(raw.placement):
                placements[name] = section.placement
            if section.default_version and name not in _keys(raw.default_version):
                defaults[name] = section.default_version
        derived: dict[str, Any] = dict(
            models=models,
            placements=placements,
            default_versions=defaults,
            limits=Limits(**{f.name: getattr(raw, f.name) for f in fields(Limits)}),
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
            aliases={n: s.aliases for n, s in sections.items() if s.aliases},
            shadows={n: s.shadow for n, s in sections.items() if s.shadow},
            logged={
                n: s.log_inferences for n, s in sections.items() if s.log_inferences is not None
            },
            source=os.environ if env is None else env,
        )
        plain = {f.name: getattr(raw, f.name) for f in fields(cls) if f.name not in derived}
        settings = cls(**derived, **plain)
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
        sections = [*self.signatures, *self.batchings, *self.aliases, *self.shadows, *self.logged]
        stray = [n for n in sections if n not in self.models]
        if stray:
            raise ConfigError(f"OIP_CONFIG [model.{stray[0]}]: not a served model")
        for name, aliases in self.aliases.items():
            try:
                splits(aliases)
            except ValueError as exc:
                raise ConfigError(f"OIP_CONFIG [model.{name}.aliases]: {exc}") from None
        logging = [n for n in self.models if self.rollout(n).log_inferences]
        if logging and not self.predictions_db:
            raise ConfigError(
                f"OIP_LOG_INFERENCES: model {logging[0]!r} logs its inferences, but "
                "OIP_PREDICTIONS_DB names no database to write them to"
            )

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

    def rollout(self, name: str) -> Rollout:
        """The model's default version, weighted aliases, shadow and inference logging."""
        return Rollout(
            default=self.default_version(name),
            aliases=self.aliases.get(name, {}),
            shadow=self.shadows.get(name),
            log_inferences=self.logged.get(name, self.log_inferences),
        )

    def reread(self) -> Settings:
        """The settings read again from where :meth:`from_env` read them (a repository load
        re-reads a model's section: weights change without a restart); as they are when built
        in code.

        Raises:
            ConfigError: the file or a variable no longer holds a valid configuration.
        """
        return self if self.source is None else Settings.from_env(self.source)

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
