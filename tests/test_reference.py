"""The configuration reference is generated from the settings' definitions and kept current."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adapters.config import reference
from adapters.config.environment import FIELDS, Environment, ModelSection
from adapters.config.fields import Group
from adapters.config.settings import Batching, Placement, Settings

DOC = Path(__file__).resolve().parents[1] / reference.PATH


def test_the_reference_is_what_the_definitions_generate() -> None:
    assert DOC.read_text(encoding="utf-8") == reference.render(), (
        f"{reference.PATH} is out of date with adapters/config/environment.py: run `make docs`"
    )


@pytest.mark.parametrize(
    ("name", "info"), [*Environment.model_fields.items(), *ModelSection.model_fields.items()]
)
def test_every_setting_and_file_key_is_described(name: str, info: object) -> None:
    description = getattr(info, "description", None) or ""
    assert len(description.split()) >= 3, f"{name}: a sentence saying what it does"


def test_every_variable_is_in_a_group_and_in_the_reference() -> None:
    text = reference.render()
    for name in FIELDS:
        info = Environment.model_fields[name]
        assert isinstance(info.json_schema_extra, dict)
        assert info.json_schema_extra["group"] in set(Group), name
        assert f"| `{reference.variable(name)}` |" in text


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_the_documented_file_is_one_the_server_takes(tmp_path: Path, suffix: str) -> None:
    text = reference.EXAMPLE
    if suffix == ".yaml":  # the YAML the reference shows
        text = reference.render().split("```yaml\n")[1].split("```")[0]
        assert yaml.safe_load(text)["model"]["churn"]["max_batch_size"] == 16
    path = tmp_path / f"oip{suffix}"
    path.write_text(text, encoding="utf-8")
    settings = Settings.from_env({"OIP_CONFIG": str(path)})
    assert settings.models == ("iris", "churn")
    assert settings.placement("churn") is Placement.RUNNER
    assert settings.default_version("churn") == "best"
    assert settings.batching("churn") == Batching(max_batch_size=16, max_latency_ms=200)
    assert settings.batching("iris") == Batching(max_batch_size=32)
    assert settings.signatures["churn"].frame is True


def test_the_module_writes_the_reference(tmp_path: Path) -> None:
    assert reference.main([str(tmp_path / "docs" / "configuration.md")]) == 0
    assert (tmp_path / "docs" / "configuration.md").read_text() == reference.render()
