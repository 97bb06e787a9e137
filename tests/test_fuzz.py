"""Property-based fuzzing of every V2 route against the server's own OpenAPI document.

schemathesis reads ``GET /v2/docs/openapi.json`` from a real server (once per placement,
``inprocess`` and ``runner``, serving iris and text) and sends each documented operation its
explicit examples, deterministic coverage cases and ``FUZZ_EXAMPLES`` generated requests
(valid and invalid ones). Every answer must:

* not be a server error (``not_a_server_error``: no 5xx);
* use a status code, content type, headers and body the document declares for the operation;
* when it is an error (4xx/5xx), be ``{"error": "<message>"}`` (the server's one error shape),
  except readiness' documented ``{"ready": false}`` / ``{"name": ..., "ready": false}``.

A hang fails too: each request has a ``REQUEST_TIMEOUT_S`` read timeout. Every operation of the
served document is fuzzed, ``GET /v2/docs/openapi.json`` included.

``POST /v2/repository/models/{model_name}/unload`` is fuzzed like the others; whenever it
answers 200 (it unloaded iris or text) both models are loaded again before the next case, so
every operation keeps seeing the same served models. The server is this module's own, so
nothing here can disturb the shared ``live`` server of the other tests.

The budget is an environment variable, so ``make fuzz`` runs this same test for longer (not an
``OIP_*`` name: those configure the server, and the tests start every server without the
shell's):

    FUZZ_EXAMPLES  generated requests per operation (default 15)
    FUZZ_SEED      the seed (default 20250601); runs with the same seed send the same requests
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from schemathesis import Case, CheckContext, Response, checks
from schemathesis.core.failures import FailureGroup, as_reported_failure
from schemathesis.core.result import Err
from schemathesis.pytest.lazy import get_all_tests

from .conftest import LiveServer, Store, start_server, stop_server

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
SEED = int(os.environ.get("FUZZ_SEED", "20250601"))
MODELS = "iris,text"
REQUEST_TIMEOUT_S = 30.0
DOCUMENT_PATH = "/v2/docs/openapi.json"
UNLOAD = "POST /v2/repository/models/{model_name}/unload"

pytestmark = [
    pytest.mark.e2e,
    # Generous for the default budget (~10-20 s per placement), and scaled for `make fuzz`.
    pytest.mark.timeout(max(300, 8 * EXAMPLES + 120)),
]


def fuzz_config() -> schemathesis.Config:
    """Fixed seed and deterministic generation (CI sees the same requests every run), no
    example database on disk, no stateful phase (V2 has no links between operations)."""
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "request-timeout": REQUEST_TIMEOUT_S,
            "generation": {
                "max-examples": EXAMPLES,
                "deterministic": True,
                "database": "none",
                "mode": "all",
            },
            "phases": {"stateful": {"enabled": False}},
        }
    )


@pytest.fixture(scope="module", params=["inprocess", "runner"])
def fuzz_server(
    request: pytest.FixtureRequest, store: Store, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """This module's own server, once per placement (its repository is fuzzed too)."""
    log = tmp_path_factory.mktemp("fuzz") / f"{request.param}.log"
    env = {"OIP_MODELS": MODELS, "OIP_PLACEMENT": request.param, "OIP_ACCESS_LOG": "0"}
    server = start_server(store.home, env, log)
    yield server
    stop_server(server)


def error_body_is_v2(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx/5xx answers ``{"error": "<message>"}`` (readiness' 503 bodies excepted)."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code == 503 and isinstance(body, dict) and body.get("ready") is False:
        return None  # /v2/health/ready and /ready: their documented not-ready answer
    assert isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], str), (
        f"{response.status_code} error body is not {{'error': str}}: {response.text[:500]!r}"
    )
    return None


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    error_body_is_v2,
]


def test_every_v2_operation_conforms_to_the_document(
    fuzz_server: LiveServer, subtests: pytest.Subtests
) -> None:
    """One subtest per documented operation (``[GET /v2/health/live]``...), each a Hypothesis test
    built by schemathesis with its explicit-examples, coverage and fuzzing phases."""
    document_url = fuzz_server.url + DOCUMENT_PATH
    schema = schemathesis.openapi.from_url(
        document_url, config=fuzz_config(), timeout=REQUEST_TIMEOUT_S
    )
    # schemathesis leaves out the operation that served the document unless a filter names
    # it; this one names every V2 path, so `GET /v2/docs/openapi.json` is fuzzed too.
    schema = schema.include(path_regex=r"^/v2(/|$)")
    documented = {
        f"{method.upper()} {path}"
        for path, item in httpx.get(document_url, timeout=REQUEST_TIMEOUT_S).json()["paths"].items()
        for method in item
    }

    def run(case: Case) -> None:
        response = case.call(timeout=REQUEST_TIMEOUT_S)
        try:
            case.validate_response(response, checks=CHECKS)
        finally:
            if case.operation.label == UNLOAD and response.status_code == 200:
                restore(fuzz_server)

    # `schemathesis.pytest.from_fixture` would run this loop, but 4.32.5's lazy loader sets
    # `Function._nodeid`, which pytest 9.2 no longer has; so each operation's test is built by
    # the same function it uses and reported as a pytest 9 subtest.
    fuzzed = []
    for result in get_all_tests(schema=schema, test_func=run, settings=None, given_kwargs=None):
        if isinstance(result, Err):
            with subtests.test(msg=f"invalid operation: {result.err()}"):
                raise result.err()
            continue
        operation, test = result.ok()
        fuzzed.append(operation.label)
        with subtests.test(msg=operation.label):
            try:
                test()
            except FailureGroup as exc:
                raise as_reported_failure(exc) from None
    assert sorted(fuzzed) == sorted(documented), "every documented operation is fuzzed once"
    assert UNLOAD in fuzzed


def restore(server: LiveServer) -> None:
    """Load every model of ``MODELS`` again (a no-op for loaded ones) after an unload case."""
    for name in MODELS.split(","):
        url = f"{server.url}/v2/repository/models/{name}/load"
        httpx.post(url, timeout=REQUEST_TIMEOUT_S).raise_for_status()
