"""A throwaway MariaDB server for the tests: a fresh data directory made by
``mariadb-install-db`` in a private temporary directory, its own port on 127.0.0.1 and its
own unix socket, run as the ``mysql`` OS user. Option files of the host are never read."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dbprobe.demo.server import ThrowawayServer, find_program, run_checked

SBIN_DIRS = ("/usr/sbin", "/usr/libexec", "/usr/local/sbin")


class ThrowawayMariaDB(ThrowawayServer):
    """A temporary MariaDB server run as the ``mysql`` OS user; root connects over its
    socket without a password."""

    kind = "MariaDB"
    directory_prefix = "dbprobe-mariadb-"
    shutdown_signal = signal.SIGTERM  # mariadbd's clean shutdown

    def __init__(
        self,
        *,
        binary: str | Path | None = None,
        port: int | None = None,
        settings: Mapping[str, str] | None = None,
        keep: bool = False,
        base_dir: str | Path | None = None,
    ) -> None:
        super().__init__(
            os_user="mysql", port=port, settings=settings, keep=keep, base_dir=base_dir
        )
        self.binary = Path(binary) if binary else find_program("mariadbd", "mysqld", search=SBIN_DIRS)
        self._client = find_program("mariadb", "mysql")
        self._admin = find_program("mariadb-admin", "mysqladmin")
        self._install_db = find_program("mariadb-install-db", "mysql_install_db")

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    @property
    def socket(self) -> Path:
        return self.workdir / "mariadb.sock"

    @property
    def pid_file(self) -> Path:
        return self.workdir / "mariadbd.pid"

    def _initialise(self) -> None:
        run_checked(
            [
                str(self._install_db),
                "--no-defaults",  # never read the host's /etc/mysql option files
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ],
            what="mariadb-install-db",
            **self._as_server_user(),
        )

    def _server_argv(self) -> list[str]:
        settings = {
            "datadir": str(self.datadir),
            "socket": str(self.socket),
            "port": str(self.port),
            "bind-address": "127.0.0.1",
            "pid-file": str(self.pid_file),
            "innodb-buffer-pool-size": "32M",
            "innodb-flush-log-at-trx-commit": "0",
            **self.settings,
        }
        return [
            str(self.binary),
            "--no-defaults",  # must come first
            *(f"--{name}={value}" for name, value in settings.items()),
        ]

    def _accepts_connections(self) -> bool:
        ping = subprocess.run(
            [*self._client_argv(self._admin), "--connect-timeout=1", "ping"],
            capture_output=True,
        )
        return ping.returncode == 0

    def _client_argv(self, program: Path) -> list[str]:
        return [str(program), "--no-defaults", f"--socket={self.socket}", "--user=root"]

    def sql(self, sql: str, *, database: str | None = None) -> str:
        """Run ``sql`` with the mariadb client in batch mode, without column names; its stdout."""
        argv = [*self._client_argv(self._client), "--batch", "--skip-column-names", "-e", sql]
        if database is not None:
            argv.append(database)
        return run_checked(argv, what="mariadb")

    def run_client(self, argv_tail: list[str], **popen_kw: Any) -> subprocess.Popen[Any]:
        """A mariadb client process connected to this server, e.g. to hold a session open."""
        return subprocess.Popen([*self._client_argv(self._client), *argv_tail], **popen_kw)
