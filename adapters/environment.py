"""Reading and validating the configuration: ``OIP_*`` environment variables, over an optional
file (``OIP_CONFIG``: TOML or YAML), with pydantic-settings.

Every value is validated once, when ``service.py`` is imported by ``bentoml serve`` (before any
worker starts): a bad value stops the server in seconds with one line naming the variable and
the value, never a worker restart loop. Environment variables win over the file, variable by
variable.

The file says what variables say badly::

    models = ["iris", "churn"]
    placement = "inprocess"            # for every model; per model below
    default_version = "latest"
    max_batch_size = 64

    [model.churn]
    placement = "runner"
    default_version = "best"
    max_batch_size = 16                # its own batching; the other models keep the server's
    max_latency_ms = 200
    signature = { frame = true, inputs = [{ name = "age", datatype = "FP64", shape = [-1] }],
                  outputs = [{ name = "predict", datatype = "INT64", shape = [-1] }] }
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

PREFIX = "OIP_"


class ConfigError(ValueError):
    """A configuration value that cannot be used: the message names the variable and value."""


class ModelSection(BaseModel):
    """``[model.<name>]`` of the configuration file."""

    model_config = ConfigDict(extra="forbid")

    placement: str | None = None
    default_version: str | None = None
    max_batch_size: int | None = Field(None, gt=0)
    max_latency_ms: int | None = Field(None, gt=0)
    signature: dict[str, Any] | None = None


class Environment(BaseSettings):
    """The raw configuration, typed: what each ``OIP_*`` variable (or file key) may hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # type: ignore[assignment]

    models: str = ""
    placement: str = ""
    default_version: str = ""
    workers: int = Field(1, gt=0)
    runner_workers: int = Field(1, gt=0)
    max_batch_size: int = Field(64, gt=0)
    max_latency_ms: int = Field(10000, gt=0)
    server_name: str = "bentoml-oip-sklearn"
    access_log: bool = False
    tracing: bool = False
    fast_lane: bool = True
    request_timeout_s: float = Field(60.0, gt=0)
    read_timeout_s: float = Field(10.0, gt=0)
    max_body_bytes: int = Field(64 * 2**20, gt=0)
    max_response_bytes: int = Field(
        64 * 2**20,
        gt=0,
        description="largest answer: bytes of output tensor data (numbers at their datatype's "
        "width, BYTES elements at their length + 4), refused before it is built (413)",
    )
    max_elements: int = Field(16 * 2**20, gt=0)
    max_bytes_element: int = Field(2**20, gt=0)
    max_connections: int = Field(1000, gt=0)
    poll_interval_s: float = Field(0.0, ge=0)
    grpc_port: int = Field(8001, ge=0, le=65535)
    grpc_host: str = "127.0.0.1"
    predictions_db: str = ""
    auth_token: str = ""
    auth_tokens_file: str = ""
    cors_origins: str = ""
    config: str = ""
    model: dict[str, ModelSection] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # see read(): the variables and the file arrive as init values


class _Variables(EnvSettingsSource):
    """``OIP_*`` variables from a given mapping (the process environment, or a test's)."""

    def __init__(self, settings_cls: type[BaseSettings], variables: Mapping[str, str]) -> None:
        self.variables = variables
        super().__init__(settings_cls, env_prefix=PREFIX, case_sensitive=False)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self.variables.items() if k.startswith(PREFIX)}


def read(variables: Mapping[str, str] | None = None) -> Environment:
    """The validated configuration from ``variables`` (default: the process environment) over
    the ``OIP_CONFIG`` file.

    Raises:
        ConfigError: one line naming the variable (or file key) and the bad value.
    """
    variables = os.environ if variables is None else variables
    unknown = sorted(
        k for k in variables if k.startswith(PREFIX) and k[len(PREFIX) :].lower() not in FIELDS
    )
    if unknown:
        raise ConfigError(f"{unknown[0]}: not a setting of this server (known: see README)")
    values: dict[str, Any] = {}
    path = variables.get(f"{PREFIX}CONFIG", "").strip()
    if path:
        values.update(_file(Path(path)))
    from_file = set(values)
    from_env = _Variables(Environment, variables)()
    values.update(from_env)
    try:
        return Environment(**values)
    except ValidationError as exc:
        raise ConfigError(_first_problem(exc, values, from_file - set(from_env))) from None


FIELDS = frozenset(Environment.model_fields) - {"model"}


def _file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"OIP_CONFIG: cannot read {str(path)!r} ({exc.strerror})") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except Exception as exc:
        raise ConfigError(f"OIP_CONFIG: {str(path)!r} is not valid ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"OIP_CONFIG: {str(path)!r} must hold a table of settings")
    if isinstance(data.get("models"), list):
        data["models"] = ",".join(map(str, data["models"]))
    return data


def _first_problem(exc: ValidationError, values: Mapping[str, Any], from_file: set[str]) -> str:
    error = exc.errors(include_url=False)[0]
    where = error["loc"]
    key = str(where[0]) if where else "?"
    name = f"OIP_CONFIG {'.'.join(map(str, where))}" if key in from_file else PREFIX + key.upper()
    value = values.get(key, error.get("input")) if len(where) == 1 else error.get("input")
    return f"{name}={str(value)[:100]!r}: {error['msg'][0].lower()}{error['msg'][1:]}"
