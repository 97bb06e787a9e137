"""Wiring against the session's real store: the start-up checks and what they return."""

from __future__ import annotations

import pytest

from adapters.bento.wiring import check_store
from adapters.config.fields import ConfigError
from adapters.config.settings import Settings

from .conftest import Store


def test_check_store_returns_every_stored_version_of_the_served_models(store: Store) -> None:
    settings = Settings.from_env({"OIP_MODELS": "iris,text"})
    tags = check_store(settings)
    assert sorted(tags) == sorted(store.tags["iris"] + store.tags["text"])


def test_check_store_names_a_model_without_versions(store: Store) -> None:
    with pytest.raises(ConfigError, match="OIP_MODELS: 'nosuch' has no version"):
        check_store(Settings.from_env({"OIP_MODELS": "iris,nosuch"}))
