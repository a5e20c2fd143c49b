"""A real Oracle MySQL server from Debian unstable, run the way a container runtime runs one.

Debian's stable release has no MySQL; its unstable suite has Oracle's (the package
``mysql-server-core``, built from a ``mysql-9.x`` source). ``mysql_rootfs`` bootstraps a
minimal unstable root file system from the host's own Debian mirror (read from its apt
sources), finds the server package in the package lists debootstrap left there, and
installs it with apt inside the root. The result is cached by day under
``tests/.build/mysql/``: about a minute for the first run of a day, nothing for the next
ones. Building is idempotent and safe to race: the root is made in a directory of its own
and renamed into place under a lock, and a second run waits for the first.

``ContainedMySQL`` runs one throwaway server in that root, as a container would: in a pid
and a mount namespace of its own with its own /proc (``unshare --pid --mount --fork
--mount-proc``), chrooted into the root, as the root's ``mysql`` user (a uid the host
does not know), under a shell of the root as the namespace's init (pid 1), as ``docker run
--init`` has one. Its binary, data directory and socket are paths inside the root, so
dbprobe has to find it through ``/proc/PID/root``. It listens on 127.0.0.1 at a free port
and on its unix socket, which the host reaches under the root. Several servers can share
one cached root: each has a directory of its own inside it (``/run/dbprobe-<id>``: data
directory, socket, error log), removed when it stops.

Cleanup on every path: ``stop()`` shuts the server down (SIGTERM, then SIGKILL) and removes
its directory. unshare dies with the test process (PR_SET_PDEATHSIG) and kills the
namespace's init with it (``--kill-child``), and the kernel kills every process of a pid
namespace whose init dies: even a killed test run leaves no server behind. (The death
signal cannot be given to mysqld itself: the kernel clears it when a process changes its
user.) The next run removes the directories of servers whose test process is gone.
"""

from __future__ import annotations

import ctypes
import datetime
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import psutil

from tests.support.apt_sources import debian_mirror
from tests.support.debian_rootfs import apply_slim_configuration, debootstrap, remove_package_caches

REPOSITORY = Path(__file__).resolve().parents[2]
CACHE_DIR = REPOSITORY / "tests" / ".build" / "mysql"
SUITE = "unstable"
# Oracle's server binaries, with or without the series in the name.
SERVER_PACKAGE = re.compile(r"mysql-server-core(?:-\d+(?:\.\d+)*)?")
MYSQLD = "/usr/sbin/mysqld"
INSTALL_TIMEOUT_S = 900
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 60.0
SUN_PATH_MAX = 107  # a unix socket's path, without its NUL
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class MySQLRootfs:
    """A cached root file system with Oracle's MySQL server installed."""

    path: Path
    package: str  # "mysql-server-core"
    package_version: str  # Debian's: "9.7.4-2"
    uid: int  # of the root's mysql user
    gid: int

    @property
    def version(self) -> str:
        """The upstream version, as the server reports it: "9.7.4"."""
        return re.sub(r"^\d+:", "", self.package_version).split("-")[0].split("+")[0]


def mysql_rootfs(progress: Callable[[str], None], cache_dir: Path = CACHE_DIR) -> MySQLRootfs:
    """Today's root file system with the MySQL server, bootstrapped if the cache lacks it."""
    architecture = _host_architecture()
    name = f"{SUITE}-{architecture}-{datetime.date.today():%Y%m%d}"
    entry = cache_dir / name
    if not (entry / "rootfs.json").exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with _locked(cache_dir / ".lock"):
            if not (entry / "rootfs.json").exists():  # another run may have built it meanwhile
                _build(entry, progress)
            _remove_stale(cache_dir, keep=entry)
    else:
        progress(f"mysql root: reusing {name} from the cache")
    details = json.loads((entry / "rootfs.json").read_text())
    return MySQLRootfs(path=entry / "rootfs", package=details["package"],
                       package_version=details["package_version"], uid=details["uid"],
                       gid=details["gid"])


def _build(entry: Path, progress: Callable[[str], None]) -> None:
    mirror = debian_mirror()
    started = time.monotonic()
    progress(f"mysql root: debootstrap {SUITE} from {mirror} (about a minute)")
    partial = entry.with_name(f".{entry.name}.{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        rootfs = partial / "rootfs"
        debootstrap(SUITE, mirror, rootfs, partial / "debootstrap.log")
        (rootfs / "etc/apt/sources.list").write_text(f"deb {mirror} {SUITE} main\n")
        apply_slim_configuration(rootfs)
        # debootstrap's package lists are current: apt finds the server in them.
        package, package_version = _server_package(rootfs)
        progress(f"mysql root: installing {package} {package_version}")
        _in_root(rootfs, ["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
                 partial / "install.log")
        _in_root(rootfs, ["groupadd", "--system", "mysql"], partial / "install.log")
        _in_root(rootfs, ["useradd", "--system", "--gid", "mysql", "--no-create-home",
                          "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", "mysql"],
                 partial / "install.log")
        remove_package_caches(rootfs)
        uid, gid = _user_ids(rootfs, "mysql")
        (partial / "rootfs.json").write_text(json.dumps({
            "package": package, "package_version": package_version, "uid": uid, "gid": gid,
            "mirror": mirror, "seconds": round(time.monotonic() - started, 1)}))
        shutil.rmtree(entry, ignore_errors=True)  # an unfinished build of the same day
        os.rename(partial, entry)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    progress(f"mysql root: {package} {package_version} ready in {time.monotonic() - started:.0f} s")


def _server_package(rootfs: Path) -> tuple[str, str]:
    """The MySQL server package of the root's package lists and its version."""
    names = [name for name in _in_root_output(rootfs, ["apt-cache", "pkgnames", "mysql-server-core"]).split()
             if SERVER_PACKAGE.fullmatch(name)]
    candidates = []
    for name in names:
        policy = _in_root_output(rootfs, ["apt-cache", "policy", name])
        match = re.search(r"^\s*Candidate:\s*(\S+)", policy, re.MULTILINE)
        if match and match.group(1) != "(none)":
            candidates.append((name, match.group(1)))
    if not candidates:
        raise AssertionError(f"Debian {SUITE} has no {SERVER_PACKAGE.pattern} package "
                             f"(apt-cache pkgnames found {names or 'none'})")
    return max(candidates, key=lambda candidate: _version_key(candidate[1]))


def _version_key(version: str) -> list[int]:
    return [int(number) for number in re.findall(r"\d+", version.split(":")[-1])]


def _in_root(rootfs: Path, command: list[str], log: Path) -> None:
    """Run a command chrooted into `rootfs`, in namespaces of its own, so no mount leaks."""
    with log.open("ab") as output:
        output.write(f"# {' '.join(command)}\n".encode())
        output.flush()
        completed = subprocess.run(_namespaced(rootfs, command), stdout=output,
                                   stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S,
                                   env=_root_environment())
    if completed.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise AssertionError(f"{' '.join(command)} in the {SUITE} root failed:\n{tail}")


def _in_root_output(rootfs: Path, command: list[str]) -> str:
    completed = subprocess.run(_namespaced(rootfs, command), capture_output=True, text=True,
                               timeout=120, env=_root_environment())
    if completed.returncode != 0:
        raise AssertionError(f"{' '.join(command)} in the {SUITE} root failed: {completed.stderr.strip()}")
    return completed.stdout


# The namespace's init: runs the command as the given user and waits for it, as root.
INIT_SCRIPT = 'userspec=$1; shift; chroot --userspec="$userspec" / "$@" & wait $!'


def _namespaced(rootfs: Path, command: list[str], userspec: str | None = None) -> list[str]:
    """`command` in new pid and mount namespaces with their own /proc, chrooted into `rootfs`;
    with `userspec` ("uid:gid"), as that user, under a shell of the root as init."""
    if userspec is not None:
        command = ["/bin/sh", "-c", INIT_SCRIPT, "init", userspec, *command]
    return ["unshare", "--pid", "--mount", "--fork", "--kill-child", f"--mount-proc={rootfs}/proc",
            "chroot", str(rootfs), *command]


def _root_environment() -> dict[str, str]:
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": "/root",
            "DEBIAN_FRONTEND": "noninteractive"}


def _user_ids(rootfs: Path, user: str) -> tuple[int, int]:
    for line in (rootfs / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise AssertionError(f"no user {user} in {rootfs}/etc/passwd")


def _host_architecture() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on a file, held for the `with` block."""
    with path.open("a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def _remove_stale(cache_dir: Path, keep: Path) -> None:
    """Earlier days' roots that no live server uses, and builds whose builder is gone."""
    for path in cache_dir.iterdir():
        if path == keep or not path.is_dir():
            continue
        if path.name.startswith("."):
            builder = path.name.rsplit(".", 1)[-1]
            if builder.isdigit() and _alive(int(builder)):
                continue
        elif _servers_in(path / "rootfs"):
            continue
        shutil.rmtree(path, ignore_errors=True)


def _servers_in(rootfs: Path) -> list[Path]:
    """The directories of servers in `rootfs` whose test process is alive."""
    alive = []
    for directory in rootfs.glob("run/dbprobe-*"):
        try:
            owner = int((directory / "owner").read_text())
        except (OSError, ValueError):
            owner = None
        if owner is not None and _alive(owner):
            alive.append(directory)
    return alive


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ContainedMySQL:
    """A throwaway MySQL server in its own pid and mount namespaces, chrooted into `rootfs`."""

    def __init__(self, rootfs: MySQLRootfs):
        self.rootfs = rootfs
        self.name = f"dbprobe-{secrets.token_hex(4)}"
        self.dir_in_root = f"/run/{self.name}"
        self.directory = rootfs.path / self.dir_in_root.lstrip("/")  # as the host sees it
        self.data_dir_in_root = f"{self.dir_in_root}/data"
        self.socket_in_root = f"{self.dir_in_root}/mysqld.sock"
        self.port = free_port()
        self.pid: int | None = None  # mysqld's, on the host
        self._unshare: subprocess.Popen | None = None

    @property
    def socket(self) -> Path:
        """The server's unix socket as the host reaches it: under the root, or else through
        /proc/PID/root when that path is too long for a socket address."""
        under_root = self.directory / "mysqld.sock"
        if len(str(under_root)) <= SUN_PATH_MAX or self.pid is None:
            return under_root
        return Path(f"/proc/{self.pid}/root{self.socket_in_root}")

    @property
    def binary(self) -> Path:
        return self.rootfs.path / MYSQLD.lstrip("/")

    def start(self) -> "ContainedMySQL":
        for stale in self.rootfs.path.glob("run/dbprobe-*"):
            if stale not in _servers_in(self.rootfs.path):
                shutil.rmtree(stale, ignore_errors=True)
        self.directory.mkdir(parents=True)
        (self.directory / "owner").write_text(str(os.getpid()))
        os.chown(self.directory, self.rootfs.uid, self.rootfs.gid)
        try:
            self._initialise()
            self._launch()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _mysqld(self, *options: str) -> list[str]:
        userspec = f"{self.rootfs.uid}:{self.rootfs.gid}"
        return _namespaced(self.rootfs.path, [MYSQLD, "--no-defaults", *options], userspec)

    def _initialise(self) -> None:
        log = self.directory / "initialize.log"
        completed = subprocess.run(
            self._mysqld("--initialize-insecure", f"--datadir={self.data_dir_in_root}",
                         f"--log-error={self.dir_in_root}/initialize.log"),
            capture_output=True, text=True, timeout=START_TIMEOUT_S, env=_root_environment())
        if completed.returncode != 0:
            raise AssertionError(f"mysqld --initialize-insecure failed ({completed.returncode}):\n"
                                 f"{completed.stderr}{_tail(log)}")

    def _launch(self) -> None:
        command = self._mysqld(
            f"--datadir={self.data_dir_in_root}", f"--socket={self.socket_in_root}",
            f"--pid-file={self.dir_in_root}/mysqld.pid", f"--log-error={self.dir_in_root}/error.log",
            f"--port={self.port}", "--bind-address=127.0.0.1", "--mysqlx=OFF", "--skip-log-bin",
            "--secure-file-priv=NULL")
        with (self.directory / "unshare.log").open("wb") as output:
            self._unshare = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output,
                                             stderr=subprocess.STDOUT, env=_root_environment(),
                                             start_new_session=True, preexec_fn=_die_with_parent)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._unshare.poll() is not None:
                raise AssertionError(f"mysqld exited with {self._unshare.returncode} while starting:\n"
                                     f"{self.error_log()}")
            if self.pid is None:
                self.pid = self._mysqld_pid()
            if self.pid is not None and self.socket.exists():
                try:
                    self.connect().close()
                    return
                except Exception:  # not accepting connections yet
                    pass
            time.sleep(0.1)
        raise AssertionError(f"mysqld did not start within {START_TIMEOUT_S} s:\n{self.error_log()}")

    def _mysqld_pid(self) -> int | None:
        """The host pid of mysqld, once the init under unshare has started it."""
        try:
            descendants = psutil.Process(self._unshare.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return None
        for process in descendants:
            try:
                if os.path.realpath(f"/proc/{process.pid}/exe") == os.path.realpath(self.binary):
                    return process.pid
            except OSError:
                continue
        return None

    @property
    def ns_pid(self) -> int:
        """mysqld's pid inside its pid namespace."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("NSpid:")).split()[-1])

    def connect(self, **options):
        """A MySQL Connector/Python session as root, over the unix socket; autocommit on."""
        import mysql.connector

        settings = {"unix_socket": str(self.socket), "user": "root", "use_pure": True,
                    "autocommit": True, **options}
        if "host" in options:  # TCP: never the socket
            settings.pop("unix_socket")
            settings.setdefault("port", self.port)
        return mysql.connector.connect(**settings)

    def sql(self, *statements: str) -> list:
        """Run statements in one session; the rows of the last one."""
        with self.connect() as connection:
            cursor = connection.cursor()
            rows: list = []
            for statement in statements:
                cursor.execute(statement)
                rows = cursor.fetchall() if cursor.with_rows else []
            cursor.close()
        return rows

    def error_log(self) -> str:
        return _tail(self.directory / "error.log") + _tail(self.directory / "unshare.log")

    def stop(self) -> None:
        """Shut the server down and remove its directory; safe to call twice."""
        unshare, self._unshare = self._unshare, None
        try:
            if unshare is not None and unshare.poll() is None:
                if self.pid is not None:
                    try:
                        os.kill(self.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
                try:
                    unshare.wait(STOP_TIMEOUT_S if self.pid is not None else 0.1)
                except subprocess.TimeoutExpired:
                    unshare.kill()  # --kill-child: the namespace's init, and with it mysqld
                    unshare.wait(10)
            if self.pid is not None:
                _wait_gone(self.pid, 10.0)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "ContainedMySQL":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _wait_gone(pid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state in ("Z", "X"):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"mysqld (pid {pid}) is still running after it was stopped")
        time.sleep(0.05)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
    except OSError:
        return ""
