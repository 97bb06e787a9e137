"""A throwaway PostgreSQL server for the tests: Debian's binaries, a temporary cluster on a free
port of 127.0.0.1, stopped and removed at teardown (``.ci/run`` installs ``postgresql``).

PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user (or
``nobody``) and every command runs through ``runuser``. Where no server can start (no binaries,
no such user), :func:`start` raises :class:`Unavailable` saying why, and the fixture skips.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import liveserver


class Unavailable(RuntimeError):
    """No PostgreSQL server can start here; the message says why."""


def binaries() -> Path:
    """The directory of ``initdb`` and ``pg_ctl``: the newest /usr/lib/postgresql/*/bin, or
    wherever PATH finds them."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise Unavailable("no PostgreSQL server binaries (apt-get install -y postgresql)")
    return Path(initdb).resolve().parent


def _major(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


def _user() -> str | None:
    """Who runs the server: the current user, or (as root) ``postgres`` or ``nobody``."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise Unavailable("running as root and there is no 'postgres' or 'nobody' user")


@contextmanager
def start(deadline_s: float = 60.0) -> Iterator[str]:
    """A running server for the duration; yields its SQLAlchemy URL (user ``postgres``, trust
    authentication, database ``postgres``)."""
    bin_dir, user = binaries(), _user()
    prefix = ["runuser", "-u", user, "--"] if user else []
    root = Path(tempfile.mkdtemp(prefix="oip-pg-"))
    if user:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    data, log, port = root / "data", root / "server.log", liveserver.free_port()
    ctl = [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data)]
    started = False
    try:
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
        _run([*prefix, *initdb, "-E", "UTF8", "--locale=C", "--no-sync"], deadline_s)
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        started = True  # from here on, stop it whatever happens (a start past its deadline)
        _run(
            [*ctl, "-l", str(log), "-o", options, "-w", "-t", str(int(deadline_s)), "start"],
            deadline_s + 5,
            log,
        )
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            subprocess.run([*ctl, "-m", "fast", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def _run(argv: list[str], timeout: float, log: Path | None = None) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{Path(argv[0]).name}: {exc}") from None
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
        raise Unavailable(f"{' '.join(argv)} failed: {done.stderr.strip()[-2000:]} {tail}")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for one test module; skipped where none can start, except in
    CI (``CI`` set), where that is a failure: ``.ci/run`` installs the server."""
    try:
        with start() as url:
            yield url
    except Unavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL did not start: {exc}")
        pytest.skip(f"PostgreSQL cannot start here: {exc}")
