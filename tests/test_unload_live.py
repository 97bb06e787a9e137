"""Unload and delete under traffic on the real server (``bentoml serve``), in both placements:
calls queued across the change answer a V2 404 and the rest of their batch 200 (REST, and gRPC
for one case); unload frees the estimators in the gateway and in every runner worker; a load
that failed is tried again; and a churn of 60 unloads and loads under eight client threads
answers only 200s and V2 404/503s while the server's memory stays flat.

The servers: in process; on a runner of one worker (its batcher runs one batch at a time, so
calls queue behind a held predict: the queued cases); on a runner of two workers (every worker
frees; churn)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sklearn.preprocessing import FunctionTransformer

import liveserver

from .conftest import ROOT, LiveServer, Store, start_server, stop_server
from .controlled import ROW, broken, delete, save, save_heavy, save_held, v2_error
from .traffic import Traffic

pytestmark = pytest.mark.e2e
KINDS = {"inprocess": ("inprocess", 1), "runner": ("runner", 1), "runners": ("runner", 2)}
HEAVY_MIB = 8  # each version's ballast: a copy held too many shows in the tree's memory
MEMORY_TOLERANCE = 0.10  # churned RSS may exceed the warmed-up baseline by at most this much


@dataclass(frozen=True)
class Saved:
    gate: Path  # while this file exists, a predict of ``gate`` waits (slow_model.held)
    gate_tags: tuple[str, str]  # older, newer
    heavy: str


@pytest.fixture(scope="module")
def saved(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Saved]:
    gate = tmp_path_factory.mktemp("gate") / "gate"
    gate_tags = save_held("gate", gate, C=0.01), save_held("gate", gate)
    heavy = save_heavy("heavy", HEAVY_MIB)
    yield Saved(gate, gate_tags, heavy)
    delete(*gate_tags, heavy)


@pytest.fixture(scope="module")
def servers(
    store: Store, saved: Saved, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], LiveServer]]:
    """Each kind of server (:data:`KINDS`), started on first use, serving gate, heavy, iris
    (each with a BENTOML_HOME of its own, as every server: the runner's gauge that
    :func:`at_the_runner` reads stays its own)."""
    started: dict[str, LiveServer] = {}

    def server(kind: str) -> LiveServer:
        if kind not in started:
            logs = tmp_path_factory.mktemp(f"server-{kind}")
            placement, workers = KINDS[kind]
            env = {
                "OIP_MODELS": "gate,heavy,iris",
                "OIP_PLACEMENT": placement,
                "OIP_RUNNER_WORKERS": str(workers),
                "OIP_MAX_LATENCY_MS": "60000",  # a held predict must not make queued calls late
                "OIP_ACCESS_LOG": "0",
            }
            started[kind] = start_server(store.home, env, logs / "server.log")
            wait_until(lambda: len(processes(started[kind])) == workers, "every worker up")
        return started[kind]

    yield server
    for live in started.values():
        stop_server(live)


def wait_until(condition: Callable[[], bool], what: str, deadline_s: float = 60) -> None:
    """Wait for something the server does (a file, a counter), failing past the deadline."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def loaded(live: LiveServer) -> dict[str, dict[str, list[str]]]:
    answer: dict[str, dict[str, list[str]]] = httpx.get(f"{live.url}/v2/repository/loaded").json()
    return answer


def processes(live: LiveServer) -> dict[str, list[str]]:
    """What each process of the model's placement holds: the gateway, or each runner worker."""
    return loaded(live)[live.placement]


def infer(url: str, name: str, version: str | None = None) -> tuple[int, Any]:
    path = f"/v2/models/{name}" + (f"/versions/{version.split(':')[1]}" if version else "")
    answer = httpx.post(f"{url}{path}/infer", json=ROW, timeout=120)
    return answer.status_code, answer.json()


def load(live: LiveServer, name: str) -> None:
    answer = httpx.post(f"{live.url}/v2/repository/models/{name}/load", timeout=120)
    assert (answer.status_code, answer.json()) == (200, {})


GRPC_INFER = """
import sys, grpc
from adapters.grpc.generated import grpc_service_pb2 as pb, grpc_service_pb2_grpc as rpc
address, name, version = sys.argv[1:]
tensor = pb.ModelInferRequest.InferInputTensor(
    name="input-0", datatype="FP64", shape=[1, 4],
    contents=pb.InferTensorContents(fp64_contents=[1, 2, 3, 4]))
request = pb.ModelInferRequest(model_name=name, model_version=version, inputs=[tensor])
try:
    rpc.GRPCInferenceServiceStub(grpc.insecure_channel(address)).ModelInfer(request, timeout=120)
    print("OK")
except grpc.RpcError as exc:
    print(exc.code().name, exc.details())
"""


def grpc_infer(address: str, tag: str) -> str:
    """ModelInfer in a process of its own (the ``inference`` messages of this repository's
    stubs would clash with the KServe SDK's, imported elsewhere in the test process)."""
    name, version = tag.split(":")
    argv = [sys.executable, "-c", GRPC_INFER, address, name, version]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.strip()


def counted(url: str, tag: str) -> int:
    """Calls of a version that reached its executor (statistics: ``compute_input``)."""
    stats = httpx.get(f"{url}/v2/models/gate/versions/{tag.split(':')[1]}/stats").json()
    return int(stats["model_stats"][0]["inference_stats"]["compute_input"]["count"])


def at_the_runner(url: str) -> int:
    """Calls inside the runner's ``run`` API now, read from /metrics: the direct lane's gauge
    (adapters/execution/lane.py) and BentoML's, for calls that took its HTTP path."""
    prefixes = (
        "oip_runner_lane_calls_in_progress",
        'bentoml_service_request_in_progress{endpoint="/run"',
    )
    lines = httpx.get(f"{url}/metrics").text.splitlines()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefixes)))


@contextmanager
def held(gate: Path) -> Iterator[None]:
    """While inside, the next predict of ``gate`` waits; the test lets it go by leaving."""
    Path(f"{gate}.entered").unlink(missing_ok=True)
    gate.touch()
    try:
        yield
    finally:
        gate.unlink(missing_ok=True)


def queued_across(
    live: LiveServer, saved: Saved, other: str, gone: set[str], change: Callable[[], None]
) -> None:
    """A predict of the newer gate version is held; three calls for ``other`` (another gate
    version), three for the newer one and three for iris queue behind it, and one gRPC call for
    ``other``; ``change`` runs; the predict goes on. The calls of the ``gone`` versions answer a
    V2 404 (gRPC NOT_FOUND), every other one 200: on the runner, in the very batch they share."""
    url, newer = live.url, saved.gate_tags[1]
    for _ in range(20):  # the runner's batcher learns its timings on its first calls
        assert infer(url, "gate", newer)[0] == 200 and infer(url, "iris")[0] == 200
    before = {tag: counted(url, tag) for tag in (other, newer)}
    with ThreadPoolExecutor(16) as pool, held(saved.gate):
        running = pool.submit(infer, url, "gate", newer)
        wait_until(Path(f"{saved.gate}.entered").exists, "the held predict began")
        calls = [
            (
                tag,
                pool.submit(infer, url, "iris")
                if tag == "iris"
                else pool.submit(infer, url, "gate", tag),
            )
            for tag in (other, newer, "iris") * 3
        ]
        grpc_call = pool.submit(grpc_infer, live.grpc, other)
        expected = {other: before[other] + 4, newer: before[newer] + 4}
        wait_until(lambda: all(counted(url, t) == n for t, n in expected.items()), "queued")
        if live.placement == "runner":  # the held call and the ten behind it, at the runner
            wait_until(lambda: at_the_runner(url) == 11, "queued at the runner")
        change()
    assert running.result()[0] == 200  # it was running: it ends as it began
    for tag, call in calls:
        status, body = call.result()
        if tag in gone:
            assert status == 404 and v2_error(status, body), body
        else:
            assert status == 200, body
    assert grpc_call.result().startswith("NOT_FOUND"), grpc_call.result()


@pytest.mark.parametrize("kind", ["inprocess", "runner"])
def test_calls_queued_across_an_unload_answer_404_and_the_rest_of_the_batch_200(
    servers: Callable[[str], LiveServer], saved: Saved, kind: str
) -> None:
    live = servers(kind)

    def unload() -> None:
        httpx.post(f"{live.url}/v2/repository/models/gate/unload").raise_for_status()
        assert all("gate:" not in " ".join(tags) for tags in processes(live).values())

    try:
        queued_across(live, saved, saved.gate_tags[0], set(saved.gate_tags), unload)
    finally:
        load(live, "gate")
    assert infer(live.url, "gate", saved.gate_tags[0])[0] == 200


@pytest.mark.parametrize("kind", ["inprocess", "runner"])
def test_calls_queued_across_a_delete_answer_404_and_the_rest_of_the_batch_200(
    servers: Callable[[str], LiveServer], saved: Saved, kind: str
) -> None:
    live = servers(kind)
    doomed = save_held("gate", saved.gate, C=0.1)
    try:
        load(live, "gate")

        def delete_and_load() -> None:
            delete(doomed)
            load(live, "gate")
            assert all(doomed not in tags for tags in processes(live).values())

        queued_across(live, saved, doomed, {doomed}, delete_and_load)
    finally:
        delete(doomed)
        load(live, "gate")


@pytest.mark.parametrize("kind", ["inprocess", "runners"])
def test_unload_frees_the_estimators_in_every_process(
    servers: Callable[[str], LiveServer], saved: Saved, kind: str
) -> None:
    live = servers(kind)
    gate = set(saved.gate_tags)
    assert all(gate <= set(tags) for tags in processes(live).values())
    try:
        httpx.post(f"{live.url}/v2/repository/models/gate/unload").raise_for_status()
        held = processes(live)  # the unload answered once every process had freed them
        assert len(held) == KINDS[kind][1] and all(not gate & set(t) for t in held.values())
        status, body = infer(live.url, "gate")
        assert status == 404 and v2_error(status, body)
        assert all(not gate & set(t) for t in processes(live).values())  # the call loaded none
    finally:
        load(live, "gate")
    assert all(gate <= set(tags) for tags in processes(live).values())
    assert infer(live.url, "gate")[0] == 200


@pytest.mark.parametrize("kind", ["inprocess", "runner"])
def test_a_load_that_failed_is_tried_again(
    servers: Callable[[str], LiveServer], saved: Saved, kind: str
) -> None:
    """A version whose file is broken is UNAVAILABLE, however often the model is loaded; once
    the file is fixed, the next load serves it."""
    live = servers(kind)
    fragile = save("gate", FunctionTransformer(), C=0.1)
    version = fragile.split(":")[1]
    try:
        with broken(fragile):
            for _ in range(2):
                load(live, "gate")
            index = httpx.post(f"{live.url}/v2/repository/index").json()
            (entry,) = [e for e in index if e["version"] == version]
            assert entry["state"] == "UNAVAILABLE" and "could not be loaded" in entry["reason"]
            status, body = infer(live.url, "gate", fragile)
            assert status == 404 and v2_error(status, body)
            assert all(fragile not in tags for tags in processes(live).values())
        load(live, "gate")
        status, body = infer(live.url, "gate", fragile)
        assert (status, body["model_version"]) == (200, version)
        assert all(fragile in tags for tags in processes(live).values())
    finally:
        delete(fragile)
        load(live, "gate")


def v2_failures(traffic: Traffic) -> list[str]:
    """The answers of ``traffic`` that are neither 200 nor a V2 404/503."""
    odd = []
    for failure in traffic.failures:
        status, _, text = failure.partition(" ")
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if not v2_error(int(status), body):
            odd.append(failure)
    return odd


@pytest.mark.parametrize("kind", ["inprocess", "runners"])
def test_churn_answers_200_or_v2_errors_and_memory_stays_flat(
    servers: Callable[[str], LiveServer], saved: Saved, kind: str
) -> None:
    """Eight client threads (four on heavy's latest, two on a heavy version deleted half-way, two
    on iris) while heavy is unloaded and loaded 60 times after 10 warm-up times, and half-way a
    new heavy version is trained and one deleted. Memory: the tree's RSS after the churn is
    within MEMORY_TOLERANCE of the same measure after the warm-up (each heavy version carries
    HEAVY_MIB of ballast: one copy kept per cycle would be 60 x that, per process)."""
    live = servers(kind)
    doomed = save_heavy("heavy", HEAVY_MIB, C=0.5)
    fresh = ""
    try:
        load(live, "heavy")
        clients = [
            Traffic(live.url, "/v2/models/heavy/infer", clients=4),
            Traffic(live.url, f"/v2/models/heavy/versions/{doomed.split(':')[1]}/infer", clients=2),
            Traffic(live.url, "/v2/models/iris/infer", clients=2),
        ]
        latest, deleted, iris = clients
        started = time.monotonic()
        with ExitStack() as running:
            for traffic in clients:
                running.enter_context(traffic)
            for cycle in range(70):
                if cycle == 10:
                    baseline = liveserver.tree_memory_mib(live.process.pid)["rss_mib"]
                if cycle == 40:
                    fresh = save_heavy("heavy", HEAVY_MIB, C=2.0)
                    delete(doomed)
                httpx.post(f"{live.url}/v2/repository/models/heavy/unload").raise_for_status()
                load(live, "heavy")
            churned = liveserver.tree_memory_mib(live.process.pid)["rss_mib"]
        print(
            f"churn [{kind}]: {time.monotonic() - started:.1f} s, tree RSS {baseline:.0f} MiB "
            f"after the warm-up, {churned:.0f} MiB after 60 cycles; answers: "
            + ", ".join(f"{t.path} {sorted(Counter(t.statuses).items())}" for t in clients)
        )
        for traffic in clients:
            assert v2_failures(traffic) == [], v2_failures(traffic)[:5]
        assert iris.failures == [] and len(iris.statuses) > 100  # the other model: untouched
        assert 200 in latest.statuses and 404 in latest.statuses  # served, and unloaded at times
        assert deleted.versions[doomed.split(":")[1]] > 0 and 404 in deleted.statuses
        assert churned <= baseline * (1 + MEMORY_TOLERANCE)
        served = {saved.heavy, fresh}
        for tags in processes(live).values():
            assert {t for t in tags if t.startswith("heavy:")} == served
    finally:
        delete(doomed, fresh)
        load(live, "heavy")
