"""Configuration from the environment."""

from __future__ import annotations

import pytest

from adapters.config import DEFAULT_MODELS, Placement, Settings, parse_per_model


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.models == DEFAULT_MODELS
    assert settings.placement("iris") is Placement.INPROCESS
    assert settings.default_version("iris") == "latest"
    assert settings.access_log is False


def test_per_model_placement_and_default_version() -> None:
    settings = Settings.from_env(
        {
            "OIP_MODELS": " iris, text ,forest",
            "OIP_PLACEMENT": "runner,text=inprocess",
            "OIP_DEFAULT_VERSION": "iris=best",
            "OIP_ACCESS_LOG": "1",
        }
    )
    assert settings.models == ("iris", "text", "forest")
    assert settings.models_in(Placement.RUNNER) == ("iris", "forest")
    assert settings.models_in(Placement.INPROCESS) == ("text",)
    assert settings.default_version("iris") == "best"
    assert settings.default_version("text") == "latest"
    assert settings.access_log is True


def test_misspelt_placement_fails_at_start_up() -> None:
    with pytest.raises(ValueError, match="'runers' for model 'iris'"):
        Settings.from_env({"OIP_MODELS": "iris", "OIP_PLACEMENT": "runers"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", {"*": "d"}),
        ("x", {"*": "x"}),
        ("a=x, b = y", {"*": "d", "a": "x", "b": "y"}),
        ("a=x,*=z", {"*": "z", "a": "x"}),
    ],
)
def test_parse_per_model(value: str, expected: dict[str, str]) -> None:
    assert parse_per_model(value, "d") == expected
