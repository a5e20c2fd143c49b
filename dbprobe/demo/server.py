"""Throwaway PostgreSQL servers for the demo, the tests and the benchmarks, and the
lifecycle every throwaway server shares (the tests' other servers build on it).

Each server is real: a fresh data directory made by the server's own tool (``initdb``)
in a private temporary directory, its own port on 127.0.0.1 and its own unix socket, run
as the server's OS user. Nothing here reads or touches the clusters and servers already
on the host: option files are ignored and the default ports refused.

Every exit path cleans up: ``stop()`` asks for a fast shutdown, kills the server's process
group if that does not finish in time, and removes the temporary directory; servers still
running when the interpreter exits are stopped by an ``atexit`` handler.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dbprobe.errors import DbprobeError

if TYPE_CHECKING:
    import psycopg

DEFAULT_SERVER_PORTS = frozenset({5432, 3306})
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.05
LOG_TAIL_LINES = 15


# --- helpers shared by every server -------------------------------------------------


@dataclass(frozen=True, slots=True)
class OsUser:
    """The unprivileged account a server runs as when we are root."""

    name: str
    uid: int
    gid: int

    def popen_kwargs(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def service_user(name: str) -> OsUser | None:
    """The OS user to run a server as: ``name`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise DbprobeError(
            f"there is no '{name}' OS user to run the server as; install the server package"
            " (make setup)"
        ) from None
    return OsUser(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid)


def as_user_kwargs(user: OsUser | None) -> dict[str, Any]:
    return user.popen_kwargs() if user is not None else {}


def free_local_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def checked_port(port: int | None) -> int:
    if port is None:
        return free_local_port()
    if port in DEFAULT_SERVER_PORTS:
        raise DbprobeError(
            f"port {port} is a database server's default port; a throwaway server never uses it"
        )
    return port


def private_directory(prefix: str, owner: OsUser | None, base_dir: str | Path | None) -> Path:
    """A new mode-0700 directory owned by ``owner``."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base_dir))
    if owner is not None:
        os.chown(path, owner.uid, owner.gid)
    path.chmod(0o700)
    return path


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    tail = text.strip().splitlines()[-lines:]
    return " | ".join(tail) if tail else "(empty server log)"


def error_summary(output: str) -> str:
    """The line of a program's output that says what went wrong: its first error line,
    else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if re.search(r"error|fatal", line, re.IGNORECASE):
            return line
    return lines[-1] if lines else "(no output)"


def run_checked(argv: list[str], *, what: str, **run_kw: Any) -> str:
    """Run a helper program to completion; its stdout, or DbprobeError with its last words."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, **run_kw)
    except OSError as error:
        raise DbprobeError(f"{what}: cannot run {argv[0]}: {error.strerror}") from None
    if done.returncode != 0:
        raise DbprobeError(f"{what} failed: {error_summary(done.stderr or done.stdout)}")
    return done.stdout


def find_program(*candidates: str, search: tuple[str, ...] = ()) -> Path:
    """The first candidate found on PATH or in the extra ``search`` directories."""
    for name in candidates:
        found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(search))
        if found:
            return Path(found)
    raise DbprobeError(f"{candidates[0]} is not installed (make setup installs it)")


# --- the lifecycle common to every server -------------------------------------------

_running_servers: set[ThrowawayServer] = set()
ServerT = TypeVar("ServerT", bound="ThrowawayServer")


@atexit.register
def _stop_servers_left_running() -> None:
    for server in list(_running_servers):
        server.stop()


class ThrowawayServer:
    """Start, stop and restart one server process in its own temporary directory.

    Subclasses say how to initialise a data directory, which command line runs the server,
    how to tell that it accepts connections and which signal asks for a fast shutdown.
    """

    kind = "server"
    directory_prefix = "dbprobe-server-"
    shutdown_signal = signal.SIGTERM

    def __init__(
        self,
        *,
        os_user: str,
        port: int | None,
        settings: Mapping[str, str] | None,
        keep: bool,
        base_dir: str | Path | None,
    ) -> None:
        self.port: int = checked_port(port)
        self.settings: dict[str, str] = dict(settings or {})
        self.keep = keep
        self._base_dir = base_dir
        self._os_user = service_user(os_user)
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # Subclass hooks.
    def _initialise(self) -> None:
        raise NotImplementedError

    def _server_argv(self) -> list[str]:
        raise NotImplementedError

    def _accepts_connections(self) -> bool:
        raise NotImplementedError

    # Lifecycle.
    def start(self: ServerT) -> ServerT:
        if self.running:
            return self
        self._workdir = private_directory(self.directory_prefix, self._os_user, self._base_dir)
        _running_servers.add(self)
        try:
            self._initialise()
            self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Fast shutdown, then remove the temporary directory unless ``keep``. Idempotent."""
        self._shut_down()
        _running_servers.discard(self)
        if self._workdir is not None and not self.keep:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def leave_running(self) -> None:
        """Keep the server and its directory after this process exits (``demo --keep``)."""
        _running_servers.discard(self)

    def restart(self, settings: Mapping[str, str] | None = None) -> None:
        """Restart on the same data directory, with ``settings`` added to the current ones."""
        if not self.running:
            raise DbprobeError(f"the throwaway {self.kind} server is not running")
        self.settings.update(settings or {})
        self._shut_down()
        self._launch()

    def __enter__(self: ServerT) -> ServerT:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # State.
    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        """The pid of the server's main process (postmaster, mariadbd)."""
        if self._process is None:
            raise DbprobeError(f"the throwaway {self.kind} server is not running")
        return self._process.pid

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise DbprobeError(f"the throwaway {self.kind} server was never started")
        return self._workdir

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    # Process handling.
    def _as_server_user(self) -> dict[str, Any]:
        return {**as_user_kwargs(self._os_user), "cwd": self.workdir}

    def _launch(self) -> None:
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self._server_argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed whole if need be
                **self._as_server_user(),
            )
        self._wait_until_accepting()

    def _wait_until_accepting(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._accepts_connections():
            if self._process.poll() is not None:
                raise DbprobeError(
                    f"the throwaway {self.kind} server exited at start: {log_tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                raise DbprobeError(
                    f"the throwaway {self.kind} server did not accept connections within"
                    f" {START_TIMEOUT_S:.0f}s: {log_tail(self.log_path)}"
                )
            time.sleep(POLL_INTERVAL_S)

    def _shut_down(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        clean = False
        if process.poll() is None:
            process.send_signal(self.shutdown_signal)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
                clean = True
            except subprocess.TimeoutExpired:
                pass
        if not clean:
            # Timed out, or the main process died before us: its children may linger.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


# --- PostgreSQL ---------------------------------------------------------------------


def installed_postgres_bindir() -> Path:
    """The newest installed PostgreSQL's bindir (Debian layout first, then pg_config)."""
    candidates = [
        path.parent
        for path in Path("/usr/lib/postgresql").glob("*/bin/postgres")
        if path.parent.parent.name.isdigit()
    ]
    if candidates:
        return max(candidates, key=lambda bindir: int(bindir.parent.name))
    pg_config = shutil.which("pg_config")
    if pg_config:
        bindir = Path(run_checked([pg_config, "--bindir"], what="pg_config").strip())
        if (bindir / "postgres").exists():
            return bindir
    raise DbprobeError("PostgreSQL is not installed (make setup installs it)")


class ThrowawayPostgres(ThrowawayServer):
    """A temporary PostgreSQL cluster run as the ``postgres`` OS user."""

    kind = "PostgreSQL"
    directory_prefix = "dbprobe-pg-"
    shutdown_signal = signal.SIGINT  # PostgreSQL's "fast" shutdown
    superuser = "postgres"

    def __init__(
        self,
        *,
        bindir: str | Path | None = None,
        port: int | None = None,
        settings: Mapping[str, str] | None = None,
        keep: bool = False,
        base_dir: str | Path | None = None,
    ) -> None:
        super().__init__(
            os_user="postgres", port=port, settings=settings, keep=keep, base_dir=base_dir
        )
        self.bindir = Path(bindir) if bindir is not None else installed_postgres_bindir()

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.workdir / "socket"

    @property
    def dsn(self) -> str:
        return (
            f"host={self.socket_dir} port={self.port} user={self.superuser} dbname=postgres"
        )

    def _initialise(self) -> None:
        self.socket_dir.mkdir(mode=0o700)
        if self._os_user is not None:
            os.chown(self.socket_dir, self._os_user.uid, self._os_user.gid)
        run_checked(
            [
                str(self.bindir / "initdb"),
                f"--pgdata={self.datadir}",
                f"--username={self.superuser}",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            what="initdb",
            **self._as_server_user(),
        )

    def _server_argv(self) -> list[str]:
        settings = {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "off",
            **self.settings,
        }
        argv = [str(self.bindir / "postgres"), "-D", str(self.datadir)]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        return argv

    def _accepts_connections(self) -> bool:
        # As pg_ctl does: the postmaster writes "ready" as the status line of postmaster.pid.
        try:
            lines = (self.datadir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[0].strip() == str(self.pid) and lines[7].strip() == "ready"

    def run_as_postgres(self, argv: list[str], **popen_kw: Any) -> subprocess.Popen[Any]:
        """Start a program as the postgres OS user, with PGHOST/PGPORT/PGUSER/PGDATABASE
        pointing at this server. A bare program name of the bindir (``pgbench``, ``psql``)
        is taken from the bindir."""
        program = self.bindir / argv[0]
        if os.sep not in argv[0] and program.exists():
            argv = [str(program), *argv[1:]]
        env = {
            **os.environ,
            "PGHOST": str(self.socket_dir),
            "PGPORT": str(self.port),
            "PGUSER": self.superuser,
            "PGDATABASE": "postgres",
            **popen_kw.pop("env", {}),
        }
        return subprocess.Popen(argv, env=env, **{**self._as_server_user(), **popen_kw})

    def psql(self, sql: str, *, dbname: str = "postgres", check: bool = True) -> str:
        """Run ``sql`` with psql (unaligned, tuples only, stop on error); its stdout."""
        process = self.run_as_postgres(
            ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", dbname],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stdout, stderr = process.communicate(sql)
        if check and process.returncode != 0:
            raise DbprobeError(f"psql failed: {error_summary(stderr)}")
        return stdout

    def connect(self, *, autocommit: bool = True, dbname: str = "postgres") -> psycopg.Connection:
        try:
            import psycopg
        except ImportError:
            raise DbprobeError("psycopg is not installed: pip install psycopg[binary]") from None
        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=self.superuser,
            dbname=dbname,
            autocommit=autocommit,
        )


# --- where an installed PostgreSQL keeps its files --------------------------------


@dataclass(frozen=True, slots=True)
class PostgresLayout:
    """Where an installed PostgreSQL keeps its programs, shared files and modules."""

    bindir: Path
    sharedir: Path
    pkglibdir: Path

    @classmethod
    def of(cls, bindir: Path) -> PostgresLayout:
        pg_config = bindir / "pg_config"
        if not pg_config.exists():
            raise DbprobeError(f"no pg_config in {bindir}: cannot tell where its files are")
        sharedir, pkglibdir = run_checked(
            [str(pg_config), "--sharedir", "--pkglibdir"], what="pg_config"
        ).split()
        return cls(bindir=bindir, sharedir=Path(sharedir), pkglibdir=Path(pkglibdir))

    @property
    def prefix(self) -> Path:
        return Path(os.path.commonpath([self.bindir, self.sharedir, self.pkglibdir]))
