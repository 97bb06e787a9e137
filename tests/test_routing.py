"""Weighted aliases: a version per request by weight, one version per routing key, nesting, the
configuration that declares them (checked at start-up) and a load that reads it again."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from adapters.bento.wiring import build_dataplane, check_store
from adapters.config.fields import ConfigError
from adapters.config.settings import Settings
from adapters.http.routes import build_app
from adapters.models.registry import ModelVersion, Registry, ServedModel
from adapters.models.routing import Rollout, Split, route_point
from adapters.models.signature import Signature, TensorSpec
from adapters.protocol.errors import VersionNotFound
from adapters.protocol.schemas import Datatype

from .conftest import Store
from .controlled import ROW

SIG = Signature((TensorSpec("input-0", Datatype.FP64, (-1, 4)),), ())
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def served(*, aliases: dict[str, dict[str, float]], default: str = "latest") -> ServedModel:
    versions = [
        ModelVersion("m", v, SIG, "x", T0 + timedelta(minutes=i)) for i, v in enumerate("abc")
    ]
    return ServedModel("m", versions, rollout=Rollout(default=default, aliases=aliases))


def bounds(n: int, p: float, z: float) -> tuple[float, float]:
    """The normal approximation of a binomial count's two-sided interval at ``z`` sigmas."""
    spread = z * math.sqrt(n * p * (1 - p))
    return n * p - spread, n * p + spread


Z_ONE_IN_A_MILLION = 4.892  # two-sided: a correct split falls outside once in a million runs
Z_999 = 3.291  # two-sided 99.9 %


def test_weights_split_requests_within_binomial_bounds() -> None:
    model = served(aliases={"canary": {"a": 90, "b": 10}})
    random = Counter(model.resolve("canary").version for _ in range(2000))
    low, high = bounds(2000, 0.1, Z_ONE_IN_A_MILLION)
    assert set(random) <= {"a", "b"} and low <= random["b"] <= high
    keyed = Counter(model.resolve("canary", f"user-{i}").version for i in range(2000))
    low, high = bounds(2000, 0.1, Z_999)  # deterministic: the keys' hashes never change
    assert low <= keyed["b"] <= high, keyed


def test_one_routing_key_always_lands_on_one_version() -> None:
    model = served(aliases={"canary": {"a": 50, "b": 50}})
    for key in ("user-1", "user-2", "ümlaut", ""):
        assert len({model.resolve("canary", key).version for _ in range(100)}) == 1
    # a stable hash, not Python's salted one: the same in every process and after restarts
    assert (
        route_point("user-1")
        == int.from_bytes(__import__("hashlib").blake2b(b"user-1", digest_size=8).digest(), "big")
        / 2**64
    )


def test_growing_the_last_target_moves_keys_only_onto_it() -> None:
    before, after = Split("c", {"a": 90, "b": 10}), Split("c", {"a": 80, "b": 20})
    moved = Counter(
        (before.pick(route_point(str(k)))[0], after.pick(route_point(str(k)))[0])
        for k in range(5000)
    )
    assert moved[("b", "a")] == 0 and moved[("a", "b")] > 0


def test_nested_aliases_and_the_default() -> None:
    """canary = 50 % stable (itself a b split half and half) + 50 % c, and the default."""
    model = served(
        aliases={"stable": {"a": 1, "b": 1}, "canary": {"stable": 50, "c": 50}}, default="canary"
    )
    picked = Counter(model.resolve(None).version for _ in range(4000))
    for version, share in (("a", 0.25), ("b", 0.25), ("c", 0.5)):
        low, high = bounds(4000, share, Z_ONE_IN_A_MILLION)
        assert low <= picked[version] <= high, picked
    assert model.heaviest(None).version == "a"  # ties: the first target
    assert sorted(v.version for v in model.targets("canary")) == ["a", "b", "c"]
    assert model.label(None) == "canary" and model.label("a") == "a"
    assert Registry([model]).labels("m", "stable") == ("m", "stable")


@pytest.mark.parametrize(
    ("aliases", "default", "error"),
    [
        ({"latest": {"a": 1}}, "latest", ValueError),  # computed
        ({"a": {"b": 1}}, "latest", ValueError),  # named like a version
        ({"x": {"y": 1}, "y": {"x": 1}}, "latest", ValueError),  # reaches itself
        ({"x": {"a": 0}}, "latest", ValueError),  # no positive weight
        ({"x": {"nope": 1}}, "latest", VersionNotFound),
        ({}, "nope", VersionNotFound),
    ],
)
def test_bad_aliases_are_refused(
    aliases: dict[str, dict[str, float]], default: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        served(aliases=aliases, default=default)


def write(path: Path, text: str) -> dict[str, str]:
    path.write_text(text, encoding="utf-8")
    return {"OIP_CONFIG": str(path), "OIP_MODELS": "iris"}


def test_the_sections_keys_reach_the_rollout(tmp_path: Path) -> None:
    env = write(
        tmp_path / "oip.toml",
        '[model.iris]\nshadow = "best"\nlog_inferences = true\n'
        "[model.iris.aliases]\ncanary = { latest = 90, best = 10 }\n",
    )
    with pytest.raises(ConfigError, match="OIP_PREDICTIONS_DB"):
        Settings.from_env(env)
    settings = Settings.from_env({**env, "OIP_PREDICTIONS_DB": "sqlite:///x.db"})
    assert settings.rollout("iris") == Rollout(
        "latest", {"canary": {"latest": 90, "best": 10}}, "best", True
    )
    assert Settings.from_env({**env, "OIP_PREDICTIONS_DB": "sqlite://", "OIP_MODELS": "iris,text"})
    assert not Settings.from_env({"OIP_MODELS": "text"}).rollout("text").log_inferences


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[model.iris.aliases]\nx = { y = 1 }\ny = { x = 1 }\n", "reaches itself"),
        ("[model.iris.aliases]\nbest = { latest = 1 }\n", "computed"),
        ("[model.iris.aliases]\nx = { latest = -1 }\n", "greater than or equal to 0"),
        ("[model.nope]\nshadow = 'best'\n", "not a served model"),
    ],
)
def test_bad_sections_stop_start_up(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Settings.from_env(write(tmp_path / "oip.toml", text))


def test_the_store_check_knows_the_aliases(tmp_path: Path, store: Store) -> None:
    ok = '[model.iris]\ndefault_version = "canary"\n[model.iris.aliases]\ncanary = { best = 1 }\n'
    check_store(Settings.from_env(write(tmp_path / "ok.toml", ok)))
    bad = "[model.iris.aliases]\ncanary = { nope = 1 }\n"
    with pytest.raises(ConfigError, match="'nope' is not latest"):
        check_store(Settings.from_env(write(tmp_path / "bad.toml", bad)))
    shadow = "[model.iris]\nshadow = 'nope'\n"
    with pytest.raises(ConfigError, match="shadow: 'nope'"):
        check_store(Settings.from_env(write(tmp_path / "shadow.toml", shadow)))


@pytest.fixture
def reloaded(tmp_path: Path, store: Store) -> Iterator[tuple[TestClient, Path, list[str]]]:
    old, new = (t.split(":")[1] for t in store.tags["iris"])
    path = tmp_path / "oip.toml"
    env = write(path, f'[model.iris.aliases]\ncanary = {{ "{old}" = 1, "{new}" = 0 }}\n')
    app = build_app()
    app.state.dataplane = build_dataplane(Settings.from_env(env))
    with TestClient(app) as client:
        yield client, path, [old, new]


def test_a_load_reads_the_weights_again(reloaded: tuple[TestClient, Path, list[str]]) -> None:
    client, path, (old, new) = reloaded

    def answered() -> set[str]:
        url = "/v2/models/iris/versions/canary/infer"
        return {client.post(url, json=ROW).json()["model_version"] for _ in range(20)}

    assert answered() == {old}
    path.write_text(f'[model.iris.aliases]\ncanary = {{ "{old}" = 0, "{new}" = 1 }}\n')
    assert answered() == {old}  # read on a load, not on every request
    assert client.post("/v2/repository/models/iris/load").json() == {}
    assert answered() == {new}
    path.write_text("[model.iris.aliases]\ncanary = { nope = 1 }\n")  # a bad edit: refused
    refused = client.post("/v2/repository/models/iris/load")
    assert refused.status_code == 400 and "nope" in refused.json()["error"]
    assert answered() == {new}  # the model as it was


def test_routing_key_reaches_the_data_plane(reloaded: tuple[TestClient, Path, list[str]]) -> None:
    client, path, (old, new) = reloaded
    path.write_text(f'[model.iris.aliases]\ncanary = {{ "{old}" = 1, "{new}" = 1 }}\n')
    client.post("/v2/repository/models/iris/load")
    url = "/v2/models/iris/versions/canary/infer"
    for key in ("a", "b", "c"):
        body = {**ROW, "parameters": {"routing_key": key}}
        versions = {client.post(url, json=body).json()["model_version"] for _ in range(30)}
        expected = old if route_point(key) < 0.5 else new
        assert versions == {expected}
    bad = client.post(url, json={**ROW, "parameters": {"routing_key": 7}})
    assert bad.status_code == 400 and "routing_key" in bad.json()["error"]
    stats = client.get("/v2/models/iris/versions/canary/stats").json()["model_stats"]
    assert sorted(s["version"] for s in stats) == sorted([old, new])
    assert client.get("/v2/models/iris/versions/canary").json()["name"] == "iris"
