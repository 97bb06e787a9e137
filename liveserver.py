"""Start a server subprocess, wait until it is ready, stop it and everything it spawned.

The tests (``tests/conftest.py``), the load tests (``load_tests/run.py``) and the benchmark
(``bench/servers.py``) all run real ``bentoml serve`` processes; this is their one copy of the
launch / readiness / shutdown logic, so a fix to how servers are stopped reaches all three.

Only the standard library and psutil are used: the benchmark imports this module too, and it
must not pull in the HTTP clients whose cost it is comparing.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import psutil

ROOT = Path(__file__).resolve().parent
READY_PATH = "/v2/health/ready"
LOG_TAIL_CHARS = 4000

# Readiness probes go to this machine: never through an HTTP(S)_PROXY from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

SERVER_PREFIXES = ("OIP_", "BENTOML_")
"""Variables that configure a server of this project (ours, and BentoML's own)."""
AMBIENT = frozenset(
    {"RAY_ADDRESS", *(f"{p}_PROXY" for p in ("HTTP", "HTTPS", "ALL", "NO"))}
    | {f"{p}_proxy" for p in ("http", "https", "all", "no")}
)
"""Variables that send a test's clients or batch jobs elsewhere (a proxy, a Ray cluster)."""


def configures_a_server(name: str) -> bool:
    """Whether a variable of the caller's shell would change how a server or its clients run."""
    return name.startswith(SERVER_PREFIXES) or name in AMBIENT


def clean_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default: this process's) without what configures a server: the base the
    tests build every server's environment on, so a shell's ``OIP_*`` never reaches one."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if not configures_a_server(k)}


class ServerStartError(RuntimeError):
    """The server exited, or was not ready in time; the message ends with its log's tail.

    ``summary`` is the one-line reason alone, for callers (the benchmark) that keep the log and
    would rather not repeat 4,000 characters of it in their own reports.
    """

    def __init__(self, summary: str, log_path: Path) -> None:
        super().__init__(f"{summary} (log {log_path}):\n{log_tail(log_path)}")
        self.summary = summary
        self.log_path = log_path


@dataclass(frozen=True)
class Server:
    """A running server: its process (the leader of its own session), URL, log and start-up."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    ready_s: float  # launch to the first ready answer, for the benchmark's start-up column


class TreeMemory(TypedDict):
    """Memory of a process tree; keys as the benchmark's raw.json and report expect them."""

    rss_mib: float
    pss_mib: float
    processes: int


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS just found free on ``host``.

    It is released before the server binds it, so another process could take it in between;
    on a test or bench machine that race is rare enough, and the launch then fails loudly.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def is_ready(url: str, ready_path: str = READY_PATH, timeout_s: float = 2.0) -> bool:
    """True if ``GET url + ready_path`` answers 200 (connection errors and non-200 are False)."""
    try:
        with _DIRECT.open(f"{url.rstrip('/')}{ready_path}", timeout=timeout_s) as resp:
            return int(resp.status) == 200
    except urllib.error.HTTPError:
        return False
    except OSError:  # refused, reset, timed out: not (yet) serving
        return False
    except http.client.HTTPException:  # not HTTP: another server (gRPC) took the port first
        return False


def log_tail(log_path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    """The end of a server log, so a failed launch explains itself without opening files."""
    try:
        return log_path.read_bytes()[-chars:].decode("utf-8", errors="replace")
    except OSError as err:
        return f"(no log at {log_path}: {err})"


def launch(
    argv: Sequence[str | os.PathLike[str]],
    *,
    url: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    base_env: Mapping[str, str] | None = None,
    log_path: Path,
    ready_url_path: str = READY_PATH,
    deadline_s: float = 120.0,
    poll_s: float = 0.05,
) -> Server:
    """Start ``argv`` and return once ``url + ready_url_path`` answers 200.

    ``env`` is laid over ``base_env``, by default ``os.environ`` (every caller needs PATH, HOME
    and the like; the tests pass :func:`clean_environ`, the bench and load tests pass theirs
    through). The
    process gets its own session so that :func:`stop` can signal the whole group (a BentoML
    server is a tree of watcher, gateway and runner processes), stdin from /dev/null so it can
    never wait on a terminal, and stdout+stderr into ``log_path``. If it exits or is not ready
    within ``deadline_s``, it is stopped and :class:`ServerStartError` carries the log's tail.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**(os.environ if base_env is None else base_env), **(env or {})}
    with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
        started = time.monotonic()
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = started + deadline_s
    while True:
        if proc.poll() is not None:
            stop(proc)  # its children may have outlived it
            raise ServerStartError(
                f"{argv[0]} exited with code {proc.returncode} before it was ready", log_path
            )
        if is_ready(url, ready_url_path, timeout_s=min(2.0, max(deadline - time.monotonic(), 0.1))):
            return Server(proc, url, log_path, time.monotonic() - started)
        if time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    stop(proc)
    raise ServerStartError(f"{url}{ready_url_path} not ready within {deadline_s:g} s", log_path)


def bentoml_executable() -> Path:
    """The ``bentoml`` of the running interpreter's environment (the project's venv), not PATH's."""
    return Path(sys.executable).parent / "bentoml"


def gateway_argv(
    port: int, *, host: str = "127.0.0.1", target: str = "service:Gateway"
) -> list[str]:
    """``bentoml serve <target> --host <host> --port <port>`` with the venv's bentoml."""
    return [str(bentoml_executable()), "serve", target, "--host", host, "--port", str(port)]


def serve_gateway(
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    base_env: Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    target: str = "service:Gateway",
    cwd: Path = ROOT,
    deadline_s: float = 120.0,
) -> Server:
    """``bentoml serve`` of this project on ``host:port`` (a free port if None), once ready.

    ``cwd`` defaults to the repository root, where ``service.py`` lives; ``target`` may also be a
    Bento tag. ``env`` (BENTOML_HOME, OIP_* settings) is laid over ``base_env`` (default:
    ``os.environ``).
    """
    port = free_port(host) if port is None else port
    return launch(
        gateway_argv(port, host=host, target=target),
        url=f"http://{host}:{port}",
        cwd=cwd,
        env=env,
        base_env=base_env,
        log_path=log_path,
        deadline_s=deadline_s,
    )


def own_home(store: Path, home: Path) -> Path:
    """``home`` made a BENTOML_HOME for one server whose models and Bentos are ``store``'s.

    BentoML keeps its Prometheus files under BENTOML_HOME and empties them when a server starts:
    servers sharing one home would wipe each other's ``/metrics``.
    """
    home.mkdir(parents=True, exist_ok=True)
    for name in ("models", "bentos"):
        (store / name).mkdir(parents=True, exist_ok=True)
        if not (home / name).exists():
            (home / name).symlink_to(store / name, target_is_directory=True)
    return home


def _descendants(pid: int) -> list[psutil.Process]:
    """Live descendants of ``pid`` (psutil remembers each one's start time: no pid-reuse kills)."""
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _gone(process: psutil.Process) -> bool:
    """Exited: vanished, its pid reused, or a zombie (resources freed, waiting for a reaper)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False


def _wait_gone(processes: list[psutil.Process], timeout_s: float) -> None:
    """Wait for killed descendants to exit, so their ports and memory are free on return.

    Not ``psutil.wait_procs``: escapees are not our children, and it would wait for whatever
    reaps their zombies (init), which can take seconds.
    """
    deadline = time.monotonic() + timeout_s
    alive = processes
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if not _gone(p)]
        if alive:
            time.sleep(0.02)


def stop(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM the process group, wait up to ``grace_s``, then SIGKILL the group and any
    descendant that left it (e.g. one that called setsid); finally reap ``proc``.

    The tree is listed before signalling: once the leader is gone its orphans are reparented
    and can no longer be found from it. Safe to call on a process that has already exited.
    """
    tree = _descendants(proc.pid) if proc.poll() is None else []
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    _kill_rest(proc.pid, tree)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5.0)


def _kill_rest(group: int, tree: list[psutil.Process]) -> None:
    """SIGKILL what is left of a process group and of a listed tree, and wait for it."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)
    for child in tree:
        with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            child.kill()  # psutil checks the pid still names the same process
    _wait_gone(tree, timeout_s=5.0)


def terminate(
    pid: int, *, started: float | None = None, grace_s: float = 15.0, group: bool = True
) -> float:
    """:func:`stop` for a server launched by another process (a pid from a state file):
    SIGTERM its group (``group``) or the leader alone (which then stops its workers its own
    way: ``bentoml serve`` drains, ``adapters/bento/drain.py``), wait up to ``grace_s``, then
    SIGKILL whatever is left. Returns the seconds the leader took to exit.

    ``started`` is the leader's start time as psutil gave it at launch: a pid that names
    another process by now is left alone.
    """
    begun = time.monotonic()
    if pid <= 0:
        return 0.0
    try:
        leader = psutil.Process(pid)
        if started is not None and abs(leader.create_time() - started) > 0.01:
            return 0.0
    except psutil.NoSuchProcess:
        return 0.0
    tree = _descendants(pid)
    with suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, signal.SIGTERM)
        else:
            leader.terminate()
    with suppress(psutil.TimeoutExpired):
        leader.wait(timeout=grace_s)  # reaps it when it is this process's child
    took = time.monotonic() - begun
    _kill_rest(pid, [leader, *tree])
    return took


def tree_memory_mib(pid: int) -> TreeMemory:
    """Summed RSS and PSS (MiB) of ``pid`` and its descendants, and how many processes.

    RSS double-counts pages shared between a server's forked workers; PSS splits them, so both
    are reported. A process that vanishes mid-walk is skipped; one whose smaps cannot be read
    (AccessDenied) still counts its RSS, with no PSS.
    """
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return TreeMemory(rss_mib=0.0, pss_mib=0.0, processes=0)
    rss = pss = 0
    count = 0
    for p in procs:
        try:
            try:
                full = p.memory_full_info()
                rss += int(full.rss)
                pss += int(full.pss)
            except psutil.AccessDenied:
                rss += int(p.memory_info().rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        count += 1
    mib = 1024 * 1024
    return TreeMemory(rss_mib=rss / mib, pss_mib=pss / mib, processes=count)
