"""``oip_requests_in_flight`` (``adapters/dataplane/inflight.py``): a request counts under its
deadline, whatever ends it, with a bounded ``model`` label. The live server's gauge (REST and
gRPC, fast lane on) is checked in ``tests/test_drain.py``."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import prometheus_client
import pytest

from adapters.bento.wiring import build_dataplane
from adapters.config.settings import Settings
from adapters.protocol.errors import DeadlineExceeded

from .conftest import Store


def in_flight(model: str) -> float | None:
    return prometheus_client.REGISTRY.get_sample_value("oip_requests_in_flight", {"model": model})


def test_a_request_counts_while_it_runs_and_not_after_whatever_ends_it(store: Store) -> None:
    dataplane = build_dataplane(Settings(models=("iris", "diabetes")))
    assert in_flight("iris") == in_flight("diabetes") == 0.0  # every served model from the start

    async def scenario() -> None:
        async with dataplane.deadline("iris"), dataplane.deadline("iris"):
            assert in_flight("iris") == 2.0 and in_flight("diabetes") == 0.0
        with pytest.raises(ValueError):
            async with dataplane.deadline("iris"):
                raise ValueError("a bad request")
        with pytest.raises(DeadlineExceeded):
            async with dataplane.deadline("iris"):
                await asyncio.get_running_loop().create_future()  # never done: the deadline
        async with dataplane.deadline("no-such-model"), dataplane.deadline():
            assert in_flight("") == 1.0  # any name a client invents is one series
            assert in_flight("no-such-model") is None
        assert in_flight("iris") == 0.0 and in_flight("") == 0.0

    dataplane.limits = replace(dataplane.limits, request_timeout_s=0.05)
    asyncio.run(scenario())
