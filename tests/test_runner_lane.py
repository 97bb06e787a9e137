"""The runner's direct lane (adapters/execution/lane.py) over real Unix sockets in a temporary
directory: a server whose handler is a plain coroutine, and the gateway's ``Lanes``.

The live runner-placement tests (test_e2e, test_unload_live, test_hostile, test_concurrency ...)
run every call through it, with BentoML's batching behind it."""

from __future__ import annotations

import asyncio
import os
import stat
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from adapters.execution.lane import (
    MAX_PATH,
    LaneFailed,
    LaneLost,
    LaneOverloaded,
    Lanes,
    LaneServer,
    socket_path,
)

T = TypeVar("T")


class Busy(Exception):
    """What the runner's batching raises for a call queued too long (BentoML's 503)."""


def run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), 30)  # a hang guard only

    return asyncio.run(bounded())


@pytest.fixture
def directory() -> Iterator[Path]:
    # NOTE: a short path of its own: a Unix socket's path holds ~100 bytes, pytest's tmp_path
    # can be longer
    path = Path(tempfile.mkdtemp(prefix="lane-"))
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


async def echo(api: str, calls: list[Any]) -> list[Any]:
    """A runner's answer per call: the API's name and the rows doubled."""
    if api == "busy":
        raise Busy("process is overloaded")
    if api == "broken":
        raise ValueError("no such estimator")
    return [(api, rows * 2) for rows in calls]


def test_a_call_round_trips_through_the_socket(directory: Path) -> None:
    async def main() -> None:
        server = LaneServer(echo, overloaded=(Busy,))
        path = socket_path(directory, 1)
        assert await server.open(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # the worker's alone
        lanes = Lanes(directory)
        lane = await lanes.pick()
        assert lane is not None
        rows = np.arange(8.0).reshape(2, 4)
        ((api, doubled),) = await lane.call("run_iris", [rows])
        assert api == "run_iris"
        np.testing.assert_array_equal(doubled, rows * 2)
        lanes.close()
        await server.close()
        assert not path.exists()

    run(main)


def test_calls_in_flight_are_answered_in_any_order_each_to_its_caller(directory: Path) -> None:
    release: dict[int, asyncio.Event] = {}

    async def held(api: str, calls: list[Any]) -> list[Any]:
        await release[calls[0]].wait()
        return [c * 10 for c in calls]

    async def main() -> None:
        for i in range(5):
            release[i] = asyncio.Event()
        server = LaneServer(held, overloaded=(Busy,))
        await server.open(socket_path(directory, 1))
        lanes = Lanes(directory)
        lane = await lanes.pick()
        assert lane is not None
        calls = [asyncio.create_task(lane.call("run", [i])) for i in range(5)]
        await asyncio.sleep(0.05)
        assert len(lane.pending) == 5
        for i in reversed(range(5)):  # the last sent answered first
            release[i].set()
            assert await calls[i] == [i * 10]
        assert not lane.pending
        lanes.close()
        await server.close()

    run(main)


def test_overloaded_and_failed_calls_are_told_apart(directory: Path) -> None:
    async def main() -> None:
        server = LaneServer(echo, overloaded=(Busy,))
        await server.open(socket_path(directory, 1))
        lane = await Lanes(directory).pick()
        assert lane is not None
        with pytest.raises(LaneOverloaded, match="overloaded"):
            await lane.call("busy", [1])
        with pytest.raises(LaneFailed, match="ValueError: no such estimator"):
            await lane.call("broken", [1])
        assert await lane.call("run", [1]) == [("run", 2)]  # the lane still serves
        await server.close()

    run(main)


def test_a_worker_gone_mid_call_fails_its_calls_and_no_lane_is_offered(directory: Path) -> None:
    entered = asyncio.Event()

    async def forever(api: str, calls: list[Any]) -> list[Any]:
        entered.set()
        await asyncio.Event().wait()
        return []

    async def main() -> None:
        server = LaneServer(forever, overloaded=(Busy,))
        await server.open(socket_path(directory, 1))
        lanes = Lanes(directory, rescan_s=0)
        lane = await lanes.pick()
        assert lane is not None
        call = asyncio.create_task(lane.call("run", [1]))
        await entered.wait()
        await server.close()  # as the worker's death: its connections close
        with pytest.raises(LaneLost):
            await call
        assert lane.closed
        assert await lanes.pick() is None  # the caller takes BentoML's HTTP path

    run(main)


def test_a_stale_socket_is_skipped_and_a_restarted_worker_is_found(directory: Path) -> None:
    async def main() -> None:
        path = socket_path(directory, 1)
        first = LaneServer(echo, overloaded=(Busy,))
        await first.open(path)
        first.path = None  # it dies without removing its socket file
        await first.close()
        assert first.server is not None
        await first.server.wait_closed()
        assert path.exists()
        lanes = Lanes(directory, rescan_s=0)
        assert await lanes.pick() is None  # refused: nothing to use
        restarted = LaneServer(echo, overloaded=(Busy,))
        await restarted.open(path)  # its successor replaces the file
        lane = await lanes.pick()
        assert lane is not None
        assert await lane.call("run", [3]) == [("run", 6)]
        lanes.close()
        await restarted.close()

    run(main)


def test_calls_spread_over_workers_by_what_each_has_in_flight(directory: Path) -> None:
    gate = asyncio.Event()

    async def held(api: str, calls: list[Any]) -> list[Any]:
        await gate.wait()
        return calls

    async def main() -> None:
        servers = [LaneServer(held, overloaded=(Busy,)) for _ in range(2)]
        for index, server in enumerate(servers, start=1):
            await server.open(socket_path(directory, index))
        lanes = Lanes(directory)
        picked = []
        calls = []
        for i in range(6):
            lane = await lanes.pick()
            assert lane is not None
            picked.append(lane.path.name)
            calls.append(asyncio.create_task(lane.call("run", [i])))
            await asyncio.sleep(0)  # the call is written and pending
        assert sorted(picked) == ["lane-1.sock"] * 3 + ["lane-2.sock"] * 3
        gate.set()
        assert [await c for c in calls] == [[i] for i in range(6)]
        lanes.close()
        for server in servers:
            await server.close()

    run(main)


def test_a_directory_too_deep_for_a_unix_socket_opens_no_lane(directory: Path) -> None:
    deep = directory / ("d" * (MAX_PATH - len(str(directory))))

    async def main() -> None:
        assert not await LaneServer(echo, overloaded=(Busy,)).open(deep / "lane-1.sock")

    run(main)


def test_no_socket_no_lane(directory: Path) -> None:
    async def main() -> None:
        assert await Lanes(directory).pick() is None
        assert await Lanes(directory / "absent").pick() is None

    run(main)


def test_a_directory_where_no_socket_can_be_made_opens_no_lane(directory: Path) -> None:
    async def main() -> None:
        assert not await LaneServer(echo, overloaded=(Busy,)).open(directory / "absent" / "l.sock")

    run(main)
