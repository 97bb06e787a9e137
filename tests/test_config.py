"""Configuration from the environment."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from adapters.config.environment import FIELDS
from adapters.config.fields import ConfigError
from adapters.config.settings import (
    DEFAULT_MODELS,
    Batching,
    Limits,
    Placement,
    Settings,
    parse_per_model,
)
from adapters.models.signature import Signature


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.models == DEFAULT_MODELS
    assert settings.placement("iris") is Placement.INPROCESS
    assert settings.default_version("iris") == "latest"
    assert settings.access_log is False


def test_the_dataclasses_default_to_the_definitions() -> None:
    """Settings(), Limits() and Batching() hold what no variable at all gives."""
    assert Settings() == Settings.from_env({})
    assert Batching() == Settings.from_env({}).batching("iris")


def test_every_setting_reaches_the_code() -> None:
    """A setting is a field of Settings or Limits of the same name, or one from_env derives."""
    derived = {"placement", "default_version", "auth_token", "auth_tokens_file", "config"}
    names = {f.name for f in fields(Settings)} | {f.name for f in fields(Limits)}
    assert FIELDS - derived <= names


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
    with pytest.raises(ConfigError, match="'runers' for model 'iris'"):
        Settings.from_env({"OIP_MODELS": "iris", "OIP_PLACEMENT": "runers"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OIP_WORKERS": "two"}, "OIP_WORKERS='two': input should be a valid integer"),
        ({"OIP_WORKERS": "0"}, "OIP_WORKERS='0': input should be greater than 0"),
        ({"OIP_ACCESS_LOG": "ture"}, "OIP_ACCESS_LOG='ture': input should be a valid boolean"),
        ({"OIP_REQUEST_TIMEOUT_S": "-1"}, "OIP_REQUEST_TIMEOUT_S='-1'"),
        ({"OIP_POLL_INTERVAL_S": "soon"}, "OIP_POLL_INTERVAL_S='soon'"),
        ({"OIP_MODLES": "iris"}, "OIP_MODLES: not a setting of this server"),
        ({"OIP_PLACEMENT": "irsi=runner"}, "OIP_PLACEMENT: 'irsi' is not a served model"),
        ({"OIP_DEFAULT_VERSION": "txt=best"}, "OIP_DEFAULT_VERSION: 'txt' is not a served model"),
        ({"OIP_AUTH_TOKENS_FILE": "/nonexistent"}, "OIP_AUTH_TOKENS_FILE: cannot read"),
        ({"OIP_CONFIG": "/nonexistent.toml"}, "OIP_CONFIG: cannot read"),
    ],
)
def test_each_bad_value_is_one_line_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_zero_is_a_valid_poll_interval_and_flags_read_like_flags() -> None:
    settings = Settings.from_env(
        {"OIP_POLL_INTERVAL_S": "0", "OIP_FAST_LANE": "off", "OIP_TRACING": "yes"}
    )
    assert (settings.poll_interval_s, settings.fast_lane, settings.tracing) == (0.0, False, True)


SIGNATURE = {
    "frame": True,
    "inputs": [{"name": "age", "datatype": "FP64", "shape": [-1]}],
    "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]}],
}


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_a_config_file_under_the_environment(tmp_path: Path, suffix: str) -> None:
    if suffix == ".toml":
        text = (
            'models = ["iris", "churn"]\nplacement = "runner"\nmax_batch_size = 8\n'
            '[model.churn]\nplacement = "inprocess"\ndefault_version = "best"\n'
            "[model.churn.signature]\nframe = true\n"
            'inputs = [{name = "age", datatype = "FP64", shape = [-1]}]\n'
            'outputs = [{name = "predict", datatype = "INT64", shape = [-1]}]\n'
        )
    else:
        text = yaml.safe_dump(
            {
                "models": ["iris", "churn"],
                "placement": "runner",
                "max_batch_size": 8,
                "model": {
                    "churn": {
                        "placement": "inprocess",
                        "default_version": "best",
                        "signature": SIGNATURE,
                    }
                },
            }
        )
    path = tmp_path / f"oip{suffix}"
    path.write_text(text)
    settings = Settings.from_env({"OIP_CONFIG": str(path), "OIP_MAX_BATCH_SIZE": "32"})
    assert settings.models == ("iris", "churn")
    assert settings.placement("iris") is Placement.RUNNER
    assert settings.placement("churn") is Placement.INPROCESS
    assert settings.default_version("churn") == "best"
    assert settings.max_batch_size == 32  # the environment wins
    assert settings.signatures["churn"] == Signature.from_dict(SIGNATURE)
    overridden = Settings.from_env({"OIP_CONFIG": str(path), "OIP_PLACEMENT": "churn=runner"})
    assert overridden.placement("churn") is Placement.RUNNER


def test_a_config_file_with_an_unknown_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "oip.toml"
    path.write_text('modles = ["iris"]\n')
    with pytest.raises(ConfigError, match="modles"):
        Settings.from_env({"OIP_CONFIG": str(path)})


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


def test_per_model_batching_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "oip.toml"
    path.write_text(
        'models = ["iris", "text", "a-b", "a_b"]\nplacement = "runner"\nmax_latency_ms = 500\n'
        "[model.iris]\nmax_batch_size = 4\n"
        '[model.text]\nplacement = "inprocess"\nmax_latency_ms = 20\n'
        "[model.a-b]\nmax_batch_size = 2\n[model.a_b]\nmax_batch_size = 3\n"
    )
    settings = Settings.from_env({"OIP_CONFIG": str(path), "OIP_MAX_BATCH_SIZE": "16"})
    assert settings.batching("iris") == Batching(max_batch_size=4, max_latency_ms=500)
    assert settings.batching("text") == Batching(max_batch_size=16, max_latency_ms=20)
    assert settings.batching("a_b") == Batching(max_batch_size=3, max_latency_ms=500)
    # the environment's value for every model without a section of its own
    plain = Settings.from_env({"OIP_MODELS": "iris", "OIP_MAX_BATCH_SIZE": "16"})
    assert plain.batching("iris") == Batching(max_batch_size=16, max_latency_ms=10000)
    # runner models with their own batching get their own API; in-process ones need none
    assert settings.runner_apis() == {"iris": "run_iris", "a-b": "run_a_b", "a_b": "run_a_b_2"}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("[model.iris]\nmax_batch_size = 0\n", "max_batch_size"),
        ("[model.iris]\nmax_latency_ms = -5\n", "max_latency_ms"),
        ("[model.nosuch]\nmax_batch_size = 4\n", "[model.nosuch]: not a served model"),
    ],
)
def test_bad_per_model_batching_is_refused(tmp_path: Path, section: str, message: str) -> None:
    path = tmp_path / "oip.toml"
    path.write_text('models = ["iris"]\n' + section)
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.from_env({"OIP_CONFIG": str(path)})
