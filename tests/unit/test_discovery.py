"""The pure parts of discovery: PostgreSQL process titles, cgroup paths, NSpid lines, paths and
users of servers in a root of their own."""

from __future__ import annotations

import pytest

from dbprobe.discover.processes import (BackendInfo, parse_container_id, parse_ns_pid, parse_process_title,
                                       path_in_root, user_in_passwd)

PID = 4242


def info(
    kind: str,
    user: str | None = None,
    database: str | None = None,
    client: str | None = None,
    state: str | None = None,
) -> BackendInfo:
    return BackendInfo(pid=PID, kind=kind, user=user, database=database, client=client, state=state)


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        # Client backends, with and without cluster_name.
        (
            "postgres: 15/main: alice shop 127.0.0.1(51234) idle in transaction",
            info("client backend", "alice", "shop", "127.0.0.1(51234)", "idle in transaction"),
        ),
        (
            "postgres: bob db [local] SELECT",
            info("client backend", "bob", "db", "[local]", "SELECT"),
        ),
        (
            "postgres: bob db [local] idle in transaction (aborted)",
            info("client backend", "bob", "db", "[local]", "idle in transaction (aborted)"),
        ),
        (
            "postgres: alice shop ::1(40000) idle",
            info("client backend", "alice", "shop", "::1(40000)", "idle"),
        ),
        (
            "postgres: 16/main: alice shop 2001:db8::5(5433) UPDATE waiting",
            info("client backend", "alice", "shop", "2001:db8::5(5433)", "UPDATE waiting"),
        ),
        (
            "postgres: web app db-7.internal(60001) COMMIT",
            info("client backend", "web", "app", "db-7.internal(60001)", "COMMIT"),
        ),
        (
            "postgres: my cluster: bob db [local] idle",
            info("client backend", "bob", "db", "[local]", "idle"),
        ),
        # Set before any command ran, and with update_process_title = off.
        ("postgres: bob db [local] ", info("client backend", "bob", "db", "[local]", None)),
        # A user may be named like a background process: the client address decides.
        (
            "postgres: checkpointer db [local] idle",
            info("client backend", "checkpointer", "db", "[local]", "idle"),
        ),
        # Walsenders: physical replication has no database, logical may show one.
        (
            "postgres: walsender repl 10.0.0.2(41234) streaming 0/3000148",
            info("walsender", "repl", None, "10.0.0.2(41234)", "streaming 0/3000148"),
        ),
        (
            "postgres: 15/main: walsender repl shop 10.0.0.2(41234) idle",
            info("walsender", "repl", "shop", "10.0.0.2(41234)", "idle"),
        ),
        (
            "postgres: 9.6/main: wal sender process repl [local] streaming 0/3000148",
            info("walsender", "repl", None, "[local]", "streaming 0/3000148"),
        ),
        # Background processes; titles are padded with a space.
        ("postgres: 15/main: checkpointer", info("checkpointer")),
        ("postgres: checkpointer ", info("checkpointer")),
        ("postgres: autovacuum launcher", info("autovacuum launcher")),
        ("postgres: logical replication launcher", info("logical replication launcher")),
        ("postgres: 15/main: background writer ", info("background writer")),
        ("postgres: walwriter ", info("walwriter")),
        ("postgres: autovacuum worker template1", info("autovacuum worker", database="template1")),
        (
            "postgres: 15/main: parallel worker for PID 8723 ",
            info("parallel worker", state="for PID 8723"),
        ),
        (
            "postgres: 16/main: logical replication apply worker for subscription 16394",
            info("logical replication worker", state="for subscription 16394"),
        ),
        (
            "postgres: startup recovering 000000010000000000000003",
            info("startup", state="recovering 000000010000000000000003"),
        ),
        (
            "postgres: walreceiver streaming 0/3000148",
            info("walreceiver", state="streaming 0/3000148"),
        ),
        (
            "postgres: archiver last was 000000010000000000000002",
            info("archiver", state="last was 000000010000000000000002"),
        ),
        # Names before PostgreSQL 11.
        ("postgres: 10/main: checkpointer process", info("checkpointer")),
        ("postgres: wal writer process", info("walwriter")),
        ("postgres: writer process", info("background writer")),
        ("postgres: autovacuum worker process   shop", info("autovacuum worker", database="shop")),
        ("postgres: bgworker: logical replication launcher", info("logical replication launcher")),
        (
            "postgres: 10/main: bgworker: logical replication launcher",
            info("logical replication launcher"),
        ),
        # Extensions' workers carry the name they registered.
        (
            "postgres: TimescaleDB Background Worker Scheduler",
            info("background worker", state="TimescaleDB Background Worker Scheduler"),
        ),
        ("postgres: ", info("unknown")),
    ],
)
def test_process_title(title: str, expected: BackendInfo) -> None:
    assert parse_process_title(PID, title) == expected


@pytest.mark.parametrize(
    "title",
    [
        # The postmaster keeps its command line.
        "/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main",
        "postgres:checkpointer",
        "python3 worker.py postgres: alice",
        "",
    ],
)
def test_not_a_process_title(title: str) -> None:
    assert parse_process_title(PID, title) is None


CONTAINER = "3f1e9c0d5b7a4e2f8c6d1b0a9e8f7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e"
OUTER = "0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d9c0b1a2f3e4d5c6b7a8f9e0d1c"
POD = "pod3c1f7a2e_9d4b_4f1a_8c55_1b2f0e6d9a77"
DOCKER_V1 = (
    "\n".join(
        f"{number}:{controller}:/docker/{CONTAINER}"
        for number, controller in [
            (12, "pids"),
            (11, "memory"),
            (4, "cpu,cpuacct"),
            (1, "name=systemd"),
        ]
    )
    + "\n0::/system.slice/containerd.service\n"
)


@pytest.mark.parametrize(
    ("cgroup", "expected"),
    [
        (DOCKER_V1, CONTAINER[:12]),
        (f"0::/system.slice/docker-{CONTAINER}.scope\n", CONTAINER[:12]),
        (f"0::/docker/{CONTAINER}\n", CONTAINER[:12]),
        (
            f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-{POD}.slice/cri-containerd-{CONTAINER}.scope\n",
            CONTAINER[:12],
        ),
        (f"11:memory:/kubepods/besteffort/{POD.replace('_', '-')}/{CONTAINER}\n", CONTAINER[:12]),
        (f"0::/kubepods.slice/kubepods-{POD}.slice/crio-{CONTAINER}.scope\n", CONTAINER[:12]),
        (f"0::/machine.slice/libpod-{CONTAINER}.scope/container\n", CONTAINER[:12]),
        (
            f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CONTAINER}.scope/container\n",
            CONTAINER[:12],
        ),
        # Docker in docker: the innermost container is the process's own.
        (f"4:memory:/docker/{OUTER}/docker/{CONTAINER}\n", CONTAINER[:12]),
        # conmon watches a podman container from outside it.
        (f"0::/machine.slice/libpod-conmon-{CONTAINER}.scope\n", None),
        # On the host.
        ("0::/system.slice/postgresql@15-main.service\n", None),
        ("0::/\n", None),
        ("9:name=systemd:/\n4:memory:/user.slice/session-3.scope\n0::/\n", None),
        (
            f"0::/system.slice/backup-{CONTAINER}.scope\n",
            None,
        ),  # an id-like name, but no container runtime
        ("", None),
    ],
)
def test_container_id(cgroup: str, expected: str | None) -> None:
    assert parse_container_id(cgroup) == expected


STATUS = """\
Name:\tpostgres
Umask:\t0077
State:\tS (sleeping)
Tgid:\t{pid}
Ngid:\t0
Pid:\t{pid}
PPid:\t1
Uid:\t999\t999\t999\t999
Gid:\t999\t999\t999\t999
NStgid:\t{nspids}
NSpid:\t{nspids}
NSpgid:\t{nspids}
NSsid:\t{nspids}
Threads:\t1
"""


@pytest.mark.parametrize(
    ("nspids", "expected"),
    [
        ("4242", None),  # in our own pid namespace
        ("4242\t1", 1),  # the first process of a container
        ("4242\t87", 87),
        ("4242\t310\t1", 1),  # nested namespaces: the innermost one
    ],
)
def test_ns_pid(nspids: str, expected: int | None) -> None:
    assert parse_ns_pid(STATUS.format(pid=4242, nspids=nspids)) == expected


def test_ns_pid_unknown_before_linux_4_1() -> None:
    status = "".join(
        line + "\n"
        for line in STATUS.format(pid=4242, nspids="4242").splitlines()
        if "NS" not in line
    )
    assert parse_ns_pid(status) is None


@pytest.mark.parametrize(
    ("link", "root_link", "expected"),
    [
        # Chrooted into a directory the host can name: the kernel shows the host's paths.
        ("/srv/jail/usr/sbin/mysqld", "/srv/jail", "/usr/sbin/mysqld"),
        ("/srv/jail/usr/sbin/mysqld", "/srv/jail/", "/usr/sbin/mysqld"),
        ("/srv/jail", "/srv/jail", "/srv/jail"),  # not below its root: left alone
        ("/srv/jail2/usr/sbin/mysqld", "/srv/jail", "/srv/jail2/usr/sbin/mysqld"),
        # A root out of the host's reach (a container's own mount), or the host's own root.
        ("/usr/sbin/mysqld", "/", "/usr/sbin/mysqld"),
    ],
)
def test_path_in_root(link: str, root_link: str, expected: str) -> None:
    assert path_in_root(link, root_link) == expected


def test_user_in_a_roots_passwd() -> None:
    passwd = "root:x:0:0:root:/root:/bin/bash\nmysql:x:999:999::/nonexistent:/usr/sbin/nologin\n"
    assert user_in_passwd(passwd, 999) == "mysql"
    assert user_in_passwd(passwd, 0) == "root"
    assert user_in_passwd(passwd, 1000) is None
    assert user_in_passwd("", 999) is None
