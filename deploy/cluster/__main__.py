"""``python -m deploy.cluster up|rolling-restart|status|down``: the Makefile's cluster targets.

    up               REPLICAS replicas behind HAProxy; returns once all are ready and UP
    rolling-restart  each replica in turn: drained, stopped, started, UP again
    status           the replicas, their processes, and HAProxy's view of them
    down             stop HAProxy and every replica

The replicas serve the store of BENTOML_HOME (BentoML's default: ~/bentoml) with the OIP_*
settings of this shell; the state and the logs are in --dir (results/cluster).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import liveserver  # noqa: E402
from deploy.cluster import haproxy, replicas  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["up", "rolling-restart", "status", "down"])
    parser.add_argument("--dir", type=Path, default=ROOT / "results" / "cluster")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--host", default="127.0.0.1", help="where HAProxy listens")
    parser.add_argument("--lb-port", type=int, default=8080)
    parser.add_argument("--lb-grpc-port", type=int, default=8081)
    args = parser.parse_args(argv)
    directory: Path = args.dir.resolve()
    try:
        if args.command == "up":
            settings = {
                k: v
                for k, v in os.environ.items()
                if liveserver.configures_a_server(k) and k.startswith("OIP_")
            }
            cluster = replicas.up(
                directory,
                replicas=args.replicas,
                store=replicas.store_home(),
                env=settings,
                host=args.host,
                lb_port=args.lb_port,
                lb_grpc_port=args.lb_grpc_port,
            )
            print(f"cluster: {len(cluster.replicas)} replicas behind HAProxy on {cluster.url}")
            print(f"cluster: gRPC on {cluster.grpc_address}; state and logs in {directory}")
        elif args.command == "rolling-restart":
            replicas.rolling_restart(directory, report=lambda turn: print(_turn(turn)))
            print("cluster: every replica restarted, all UP")
        elif args.command == "status":
            _status(directory)
        else:
            replicas.down(directory)
            print(f"cluster: stopped ({directory})")
    except (replicas.ClusterError, haproxy.HAProxyError, liveserver.ServerStartError) as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1
    return 0


def _turn(turn: replicas.Restarted) -> str:
    return (
        f"cluster: {turn.name} drained and stopped in {turn.stop_s:.1f} s, "
        f"pid {turn.old_pid} -> {turn.new_pid} ready and UP in {turn.start_s:.1f} s"
    )


def _status(directory: Path) -> None:
    cluster = replicas.Cluster.load(directory)
    try:
        rows = haproxy.stats(directory)
    except OSError:
        rows = {}
    print(f"HAProxy {cluster.url} (gRPC {cluster.grpc_address}), pid {cluster.haproxy_pid}")
    for r in cluster.replicas:
        state = rows.get(f"{haproxy.HTTP}/{r.name}", {}).get("status", "?")
        alive = "running" if r.alive() else "gone"
        print(f"  {r.name}: http {r.port}, grpc {r.grpc_port}, pid {r.pid} {alive}, {state}")


if __name__ == "__main__":
    sys.exit(main())
