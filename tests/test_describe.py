"""What ``make serve`` prints before it serves: models, versions, aliases, placement, URLs."""

from __future__ import annotations

from adapters.bento.describe import describe
from adapters.config.settings import Settings

from .conftest import Store


def test_describe_lists_models_aliases_placement_and_urls(store: Store) -> None:
    settings = Settings.from_env({"OIP_MODELS": "iris,text", "OIP_PLACEMENT": "text=runner"})
    text = describe(settings, "http://127.0.0.1:3000")
    latest = store.tags["iris"][-1].split(":")[1]
    assert f"iris: {len(store.tags['iris'])} version(s) (latest -> {latest}" in text
    assert "text: 1 version(s)" in text and text.splitlines()[2].endswith("runner")
    assert text.splitlines()[-2:] == [
        "V2 API:  http://127.0.0.1:3000/v2",
        "V2 docs: http://127.0.0.1:3000/v2/docs",
    ]
