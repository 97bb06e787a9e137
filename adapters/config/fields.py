"""How a setting is defined (:func:`setting`, :func:`key`: a pydantic field with its group and a
one-line description the reference prints), the groups of the reference, and the one error a
bad value raises. The definitions themselves: :mod:`adapters.config.environment`."""

from __future__ import annotations

import enum
from typing import Any

from pydantic import Field
from pydantic.config import JsonDict

PREFIX = "OIP_"


class ConfigError(ValueError):
    """A configuration value that cannot be used: the message names the variable and value."""


class Group(enum.StrEnum):
    """The sections of the reference, in its order."""

    SERVING = "Serving"
    BATCHING = "Batching"
    LIMITS = "Limits"
    SECURITY = "Security"
    GRPC = "gRPC"
    OPERATIONS = "Operations"


def setting(default: Any, group: Group, description: str, values: str = "", **rules: Any) -> Any:
    """One setting's definition: ``rules`` are pydantic's constraints (``gt=0``), ``values`` says
    what a text setting accepts (the reference derives it for numbers and flags)."""
    return _field(default, description, {"group": group.value}, values, **rules)


def key(description: str, values: str = "", unset: str = "", **rules: Any) -> Any:
    """One key of a ``[model.<name>]`` section: unset, the server's setting applies (or what
    ``unset`` says, for a key no setting stands behind)."""
    return _field(None, description, {"unset": unset} if unset else {}, values, **rules)


def _field(default: Any, description: str, extra: JsonDict, values: str, **rules: Any) -> Any:
    """A pydantic field whose description is one line, with the reference's hints beside it."""
    if values:
        extra["values"] = values
    text = " ".join(description.split())
    return Field(default, description=text, json_schema_extra=extra, **rules)
