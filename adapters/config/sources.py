"""Where the settings come from: the ``OIP_*`` variables over the ``OIP_CONFIG`` file (TOML or
YAML), merged and validated into an :class:`~adapters.config.environment.Environment`.

Every value is validated once, when ``service.py`` is imported by ``bentoml serve`` (before any
worker starts): a bad value stops the server in seconds with one line naming the variable (or
file key) and the value, never a worker restart loop. Environment variables win over the file,
variable by variable.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource

from adapters.config.environment import FIELDS, Environment
from adapters.config.fields import PREFIX, ConfigError


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
        raise ConfigError(
            f"{unknown[0]}: not a setting of this server (all settings: docs/configuration.md)"
        )
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
