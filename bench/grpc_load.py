"""A closed-loop gRPC load generator for ``inference.GRPCInferenceService/ModelInfer``.

N streams (concurrent unary calls, each waiting for its answer before sending again) split
over P processes, each with its own ``grpc.aio`` channel(s): one TCP connection per channel,
the streams of a process multiplexed over it. The ``ModelInferRequest`` (``raw_input_contents``,
little-endian) is serialised once, in the parent, and sent as the same bytes on every call;
answers are not parsed under load (status only). ``ghz`` would be the usual tool, but it is not
packaged in Debian and ``go install`` needs the Go module proxy, out of reach here. ``make bench``
measures gRPC with h2load (C, one core: bench/load.py, ``run_h2load``), which outpaces this
Python client; this one stays for ``--grpc-tool grpc_load`` and for the preflight, which checks
a real answer (h2load cannot read gRPC's status) and writes the request h2load sends.

    python bench/grpc_load.py preflight --target 127.0.0.1:8001 --model iris --data x.npy \\
        [--write-body body.grpc]     # the framed request, for h2load (load.py, run_h2load)
    python bench/grpc_load.py run --target 127.0.0.1:8001 --model iris --data x.npy \\
        --input-name input-0 --streams 64 --duration 10 --warmup 3

Each prints one line ``BENCHJSON {...}`` (req/s, p50/p90/p99/max in ms, non-OK statuses by
code; or the preflight's input name, request size and predictions). Requests that complete in
the measured window count; the warm-up window before it runs on the same connections.

The message classes are the project's (``adapters/rpc/grpc_service_pb2``, see stubs():
Triton's proto, package ``inference``, the same wire format as MLServer's). Do not import
tritonclient.grpc, kserve or ``adapters.grpc`` in the same process: they register the same proto
symbols.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import multiprocessing
import os
import sys
import time
import types
from array import array
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "_oip_rpc"  # adapters/grpc/generated, imported alone: see stubs()
METHOD = "/inference.GRPCInferenceService/ModelInfer"
DTYPES = {"FP64": "<f8", "FP32": "<f4", "INT64": "<i8", "INT32": "<i4", "BOOL": "u1"}
TYPED = {  # the typed ``contents`` field of an output, when an answer has no raw contents
    "FP64": "fp64_contents",
    "FP32": "fp32_contents",
    "INT64": "int64_contents",
    "INT32": "int_contents",
    "BOOL": "bool_contents",
    "BYTES": "bytes_contents",
}
CALL_TIMEOUT_S = 10.0  # as wrk's --timeout 10s
CONNECT_TIMEOUT_S = 30.0
# no HTTP proxy from the environment for a loopback target, no message size limit
CHANNEL_OPTIONS = [
    ("grpc.enable_http_proxy", 0),
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    # several channels of one process: each its own connection, not a shared subchannel
    ("grpc.use_local_subchannel_pool", 1),
]


def stubs() -> tuple[Any, Any]:
    """The project's generated ``grpc_service_pb2`` and ``grpc_service_pb2_grpc``, imported
    as the package ``_oip_rpc`` (the same files) so that ``adapters/__init__`` and what it
    pulls in (0.8 s of imports, none of it needed here) stay out of the load generator."""
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(ROOT / "adapters" / "grpc" / "generated")]
        sys.modules[PACKAGE] = package
    pb = importlib.import_module(f"{PACKAGE}.grpc_service_pb2")
    return pb, importlib.import_module(f"{PACKAGE}.grpc_service_pb2_grpc")


def build_request(model: str, input_name: str, datatype: str, matrix: Any) -> bytes:
    """One serialised ``ModelInferRequest``: the matrix as ``raw_input_contents``, ``predict``
    as the one requested output (as the HTTP scenarios ask)."""
    import numpy as np

    pb, _ = stubs()
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name=input_name, datatype=datatype, shape=list(matrix.shape))
    request.outputs.add(name="predict")
    request.raw_input_contents.append(np.ascontiguousarray(matrix, DTYPES[datatype]).tobytes())
    return bytes(request.SerializeToString())


def _predictions(response: Any) -> tuple[list[int], list[Any]]:
    """(shape, values) of the first output, from raw_output_contents or typed contents."""
    import numpy as np

    output = response.outputs[0]
    shape = list(output.shape)
    if response.raw_output_contents:
        raw = response.raw_output_contents[0]
        dtype = DTYPES.get(output.datatype)
        if dtype is None:
            raise ValueError(f"output datatype {output.datatype} is not numeric")
        return shape, list(np.frombuffer(raw, dtype=dtype).tolist())
    field = TYPED.get(output.datatype)
    if field is None:
        raise ValueError(f"output datatype {output.datatype}: no typed contents field")
    return shape, list(getattr(output.contents, field))


def framed(message: bytes) -> bytes:
    """A gRPC message on the wire (length-prefixed, uncompressed): what h2load sends as the body
    of ``POST /inference.GRPCInferenceService/ModelInfer``."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


async def _preflight(
    target: str, model: str, datatype: str, matrix: Any, body_out: Path | None = None
) -> dict[str, Any]:
    import grpc

    pb, pb_grpc = stubs()
    async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        try:
            await asyncio.wait_for(channel.channel_ready(), CONNECT_TIMEOUT_S)
        except TimeoutError:
            return {"error": f"no gRPC connection to {target} in {CONNECT_TIMEOUT_S:g} s"}
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        name = "input-0"  # MLServer and the ceiling accept any name when none is declared
        try:
            meta = await stub.ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=10)
            if meta.inputs and meta.inputs[0].name:
                name = meta.inputs[0].name
        except grpc.aio.AioRpcError:
            pass
        body = build_request(model, name, datatype, matrix)
        if body_out is not None:  # h2load's body: the very request checked here
            body_out.write_bytes(framed(body))
        infer = channel.unary_unary(METHOD)  # bytes in, bytes out: the load path's own call
        try:
            answer = await infer(body, timeout=30)
        except grpc.aio.AioRpcError as err:
            return {"error": f"preflight {err.code().name}: {err.details()}"[:300]}
        try:
            shape, values = _predictions(pb.ModelInferResponse.FromString(answer))
        except (ValueError, IndexError) as err:
            return {"error": f"preflight: not a ModelInferResponse with outputs: {err}"}
        return {"input_name": name, "request_bytes": len(body), "shape": shape, "data": values}


@dataclass(frozen=True)
class WorkerPlan:
    target: str
    request: bytes
    streams: int
    channels: int
    warmup_s: float
    duration_s: float


async def _worker(plan: WorkerPlan, conn: Connection) -> dict[str, Any]:
    import grpc

    channels = [
        grpc.aio.insecure_channel(plan.target, options=CHANNEL_OPTIONS)
        for _ in range(plan.channels)
    ]
    try:
        ready = asyncio.gather(*(c.channel_ready() for c in channels))
        await asyncio.wait_for(ready, CONNECT_TIMEOUT_S)
        calls = [c.unary_unary(METHOD) for c in channels]
        for call in calls:  # one call each before the clock starts: the connection is warm
            await call(plan.request, timeout=CALL_TIMEOUT_S)
        conn.send("ready")
        start_ns: int = conn.recv()  # CLOCK_MONOTONIC: one clock for every process
        measure_ns = start_ns + int(plan.warmup_s * 1e9)
        end_ns = measure_ns + int(plan.duration_s * 1e9)
        latencies = array("q")  # ns, of the calls completed in [measure_ns, end_ns)
        errors: Counter[str] = Counter()
        request = plan.request
        clock = time.monotonic_ns

        async def stream(call: Any) -> None:
            while (sent := clock()) < end_ns:
                try:
                    await call(request, timeout=CALL_TIMEOUT_S)
                    code = None
                except grpc.aio.AioRpcError as err:
                    code = err.code().name
                done = clock()
                if measure_ns <= done < end_ns:
                    if code is None:
                        latencies.append(done - sent)
                    else:
                        errors[code] += 1

        await asyncio.sleep(max(0.0, (start_ns - clock()) / 1e9))
        await asyncio.gather(*(stream(calls[i % len(calls)]) for i in range(plan.streams)))
        return {"latencies": latencies.tobytes(), "errors": dict(errors)}
    finally:
        for channel in channels:
            await channel.close()


def _worker_main(plan: WorkerPlan, conn: Connection) -> None:
    try:
        result = asyncio.run(_worker(plan, conn))
    except Exception as err:  # reported to the parent, which says which process failed
        result = {"fatal": f"{type(err).__name__}: {err}"[:500]}
    conn.send(result)
    conn.close()


def _receive(pipe: Connection, timeout_s: float) -> Any:
    """The next message from a load process; None if it sent none in time or exited."""
    try:
        return pipe.recv() if pipe.poll(timeout_s) else None
    except (EOFError, OSError):
        return None


def run_load(
    target: str,
    request: bytes,
    streams: int,
    processes: int,
    channels_per_process: int,
    warmup_s: float,
    duration_s: float,
) -> dict[str, Any]:
    """Run the load and return its summary (see the module docstring)."""
    import numpy as np

    processes = max(1, min(processes, streams))
    share = [streams // processes + (i < streams % processes) for i in range(processes)]
    ctx = multiprocessing.get_context("spawn")  # no gRPC state carried over a fork
    workers, pipes = [], []
    for n in share:
        parent, child = ctx.Pipe()
        channels = max(1, min(channels_per_process, n))
        plan = WorkerPlan(target, request, n, channels, warmup_s, duration_s)
        proc = ctx.Process(target=_worker_main, args=(plan, child), daemon=True)
        proc.start()
        child.close()
        workers.append(proc)
        pipes.append(parent)
    fatal: list[str] = []
    try:
        for pipe in pipes:  # every process connected and warm, or it says why not
            msg = _receive(pipe, CONNECT_TIMEOUT_S + CALL_TIMEOUT_S + 30)
            if msg is None:
                fatal.append("a load process did not get ready")
            elif msg != "ready":
                fatal.append(msg.get("fatal", str(msg)))
        if fatal:
            return {"error": "; ".join(fatal)}
        start_ns = time.monotonic_ns() + 50_000_000  # all start together, 50 ms from now
        for pipe in pipes:
            pipe.send(start_ns)
        results = []
        wait_s = warmup_s + duration_s + CALL_TIMEOUT_S + 30
        for pipe in pipes:
            if (result := _receive(pipe, wait_s)) is None:
                fatal.append("a load process did not report")
            else:
                results.append(result)
    finally:
        for proc in workers:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
    fatal += [r["fatal"] for r in results if "fatal" in r]
    if fatal:
        return {"error": "; ".join(fatal)}
    lat = np.concatenate([np.frombuffer(r["latencies"], dtype=np.int64) for r in results])
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r["errors"])
    summary: dict[str, Any] = {
        "requests": int(lat.size),
        "rps": lat.size / duration_s,
        "errors": dict(errors),
        "processes": processes,
        "channels": sum(max(1, min(channels_per_process, n)) for n in share),
    }
    if lat.size:
        p50, p90, p99 = np.percentile(lat, [50, 90, 99]) / 1e6
        summary |= {"p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": lat.max() / 1e6}
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("preflight", "run"))
    parser.add_argument("--target", required=True, help="host:port")
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, required=True, help=".npy request matrix")
    parser.add_argument("--datatype", default="FP64", choices=sorted(DTYPES))
    parser.add_argument("--input-name", default="input-0")
    parser.add_argument("--streams", type=int, default=1, help="concurrent calls in all")
    parser.add_argument("--processes", type=int, help="default: min(streams, CPUs)")
    parser.add_argument("--channels-per-process", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=1.0, help="s, not measured")
    parser.add_argument("--duration", type=float, default=10.0, help="s, measured")
    parser.add_argument("--write-body", type=Path, help="preflight: the framed request, for h2load")
    args = parser.parse_args()
    import numpy as np

    matrix = np.load(args.data)
    if args.mode == "preflight":
        out = asyncio.run(
            _preflight(args.target, args.model, args.datatype, matrix, args.write_body)
        )
    else:
        if args.streams < 1 or args.duration <= 0 or args.warmup < 0:
            parser.error("--streams and --duration must be positive, --warmup not negative")
        request = build_request(args.model, args.input_name, args.datatype, matrix)
        processes = args.processes or min(args.streams, len(os.sched_getaffinity(0)))
        out = run_load(
            args.target,
            request,
            args.streams,
            processes,
            args.channels_per_process,
            args.warmup,
            args.duration,
        )
        out["request_bytes"] = len(request)
    print("BENCHJSON " + json.dumps(out), flush=True)
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main())
