"""A throwaway PostgreSQL in a plain chroot, as systemd's RootDirectory= or schroot run one.

The chroot shares the host's mount and pid namespaces: only the server's root directory
differs. Its tree is a copy of the installed server (the binary, the libraries it links,
its share directory, one time zone, a passwd of its own), so its binary is another file
than the host's.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from dbprobe.demo.server import free_local_port, installed_postgres_bindir

START_TIMEOUT_S = 60.0
SERVER_USER = "postgres"
_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")


def linked_libraries(binary: Path) -> list[Path]:
    """The shared objects `binary` loads, as ldd names them (the dynamic loader included)."""
    output = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    return [Path(match.group(1)) for line in output.splitlines() if (match := _LDD_PATH.search(line))]


class ChrootedPostgres:
    """``postgres`` run by ``chroot`` in a directory of its own; stop() removes it all."""

    def __init__(self) -> None:
        self.bindir = installed_postgres_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="dbprobe-chroot-"))
        self.port = free_local_port()
        self._process: subprocess.Popen | None = None

    @property
    def binary_inside(self) -> str:
        return str(self.bindir / "postgres")

    @property
    def binary_on_host(self) -> str:
        return f"{self.root}{self.binary_inside}"

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def __enter__(self) -> ChrootedPostgres:
        try:
            self._build_tree()
            self._initdb()
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _copy_in(self, path: Path) -> None:
        inside = self.root / path.relative_to("/")
        inside.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.copytree(path, inside, dirs_exist_ok=True)
        else:
            shutil.copy2(path, inside)  # the file itself, where a link pointed

    def _build_tree(self) -> None:
        self.root.chmod(0o755)
        binary = self.bindir / "postgres"
        sharedir, pkglibdir = subprocess.run(
            [str(self.bindir / "pg_config"), "--sharedir", "--pkglibdir"], capture_output=True,
            text=True, check=True).stdout.split()
        for path in (binary, *linked_libraries(binary), Path(sharedir), Path(pkglibdir) / "plpgsql.so",
                     Path("/usr/share/zoneinfo/UTC")):
            self._copy_in(path)
        user = pwd.getpwnam(SERVER_USER)  # the root's own users: only the server's
        (self.root / "etc").mkdir()
        (self.root / "etc" / "passwd").write_text(
            f"{SERVER_USER}:x:{user.pw_uid}:{user.pw_gid}::/data:/usr/sbin/nologin\n")
        for directory in ("data", "socket"):
            (self.root / directory).mkdir(mode=0o700)
            shutil.chown(self.root / directory, SERVER_USER, SERVER_USER)

    def _initdb(self) -> None:
        # The host's initdb writes the data directory; only the server runs inside.
        subprocess.run([str(self.bindir / "initdb"), f"--pgdata={self.root / 'data'}", "--auth=trust",
                        "--username=postgres", "--encoding=UTF8", "--locale=C", "--no-sync"],
                       user=SERVER_USER, group=SERVER_USER, cwd=self.root, check=True,
                       capture_output=True, env={**os.environ, "TZ": "UTC"})  # the one zone copied

    def _start(self) -> None:
        settings = {"port": str(self.port), "listen_addresses": "", "unix_socket_directories": "/socket",
                    "timezone": "UTC", "log_timezone": "UTC", "dynamic_shared_memory_type": "mmap",
                    "fsync": "off", "jit": "off"}
        user = pwd.getpwnam(SERVER_USER)
        argv = ["chroot", f"--userspec={user.pw_uid}:{user.pw_gid}", f"--groups={user.pw_gid}", str(self.root),
                self.binary_inside, "-D", "/data"]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        # chroot execs the server: the pid started is the postmaster's.
        self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=open(self.root / "server.log", "wb"),
                                         start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ready():
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = (self.root / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the chrooted PostgreSQL did not start: {log}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            lines = (self.root / "data" / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[0].strip() == str(self.pid) and lines[7].strip() == "ready"

    def connect(self, autocommit: bool = True):
        import psycopg

        return psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres",
                               dbname="postgres", autocommit=autocommit)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        shutil.rmtree(self.root, ignore_errors=True)
