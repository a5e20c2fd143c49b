"""The pure parts of discovery: cgroup paths, NSpid lines, paths and users of servers in a root of
their own, the host path of a server's binary, binaries replaced on disk, --binary's checks."""

from __future__ import annotations

import glob
import os
import shutil
import struct
from pathlib import Path

import pytest

from dbprobe.discover import targets
from dbprobe.discover.processes import (HostBinary, ServerProcess, parse_container_id, parse_ns_pid,
                                        path_in_root, resolve_binary, user_in_passwd)
from dbprobe.discover.replaced import (SCAN_EVERY_S, BinaryWatch, Changes, replaced, restart_path,
                                       untraced_servers, watched_binaries)
from dbprobe.errors import DbprobeError
from tests.support.sdtbin import build_sdt_probes

EM_AARCH64 = 183


@pytest.fixture(scope="module")
def installed_postgres() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        pytest.fail("the tests read the installed PostgreSQL server binary (make setup)", pytrace=False)
    return Path(found[-1])

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


# -- the host path of a server's binary -----------------------------------------------------------

OUR_ROOT, OTHER_ROOT, RUNNING, OTHER_FILE = (1, 1), (1, 2), (2, 10), (2, 11)


def resolved(exe: str, root_link: str, files: dict[str, tuple[int, int]], deleted: bool = False) -> HostBinary:
    return resolve_binary(77, exe, deleted, root_link, identity=files.get)


def test_binary_of_a_server_in_our_root() -> None:
    files = {"/": OUR_ROOT, "/proc/77/root": OUR_ROOT, "/proc/77/exe": RUNNING,
             "/usr/lib/postgresql/15/bin/postgres": RUNNING}
    assert resolved("/usr/lib/postgresql/15/bin/postgres", "/", files) == HostBinary(
        "/usr/lib/postgresql/15/bin/postgres", "/usr/lib/postgresql/15/bin/postgres")


def test_binary_of_a_server_in_a_container() -> None:
    # Its /proc/PID/exe names the path inside; the host has another file at that path.
    files = {"/": OUR_ROOT, "/proc/77/root": OTHER_ROOT, "/proc/77/exe": RUNNING,
             "/usr/sbin/mariadbd": OTHER_FILE, "/proc/77/root/usr/sbin/mariadbd": RUNNING}
    assert resolved("/usr/sbin/mariadbd", "/", files) == HostBinary(
        "/proc/77/root/usr/sbin/mariadbd", "/usr/sbin/mariadbd")


def test_binary_of_a_server_in_a_plain_chroot() -> None:
    # The same mount namespace: /proc/PID/exe names the host's path, under the chroot.
    files = {"/": OUR_ROOT, "/proc/77/root": OTHER_ROOT, "/proc/77/exe": RUNNING,
             "/srv/jail/usr/lib/postgresql/15/bin/postgres": RUNNING,
             "/proc/77/root/usr/lib/postgresql/15/bin/postgres": RUNNING}
    assert resolved("/srv/jail/usr/lib/postgresql/15/bin/postgres", "/srv/jail", files) == HostBinary(
        "/proc/77/root/usr/lib/postgresql/15/bin/postgres", "/usr/lib/postgresql/15/bin/postgres")
    # Never the root's path prefixed twice, which names no file.
    del files["/proc/77/root/usr/lib/postgresql/15/bin/postgres"]
    assert resolved("/srv/jail/usr/lib/postgresql/15/bin/postgres", "/srv/jail", files).host_path == (
        "/srv/jail/usr/lib/postgresql/15/bin/postgres")


def test_binary_deleted_or_named_by_no_path_is_opened_through_proc_exe() -> None:
    files = {"/": OUR_ROOT, "/proc/77/root": OUR_ROOT, "/proc/77/exe": RUNNING,
             "/usr/sbin/mariadbd": OTHER_FILE}
    assert resolved("/usr/sbin/mariadbd", "/", files, deleted=True) == HostBinary(
        "/proc/77/exe", "/usr/sbin/mariadbd")
    # A chroot whose directory the host reaches by another path (a bind mount) names nothing.
    chrooted = {"/": OUR_ROOT, "/proc/77/root": OTHER_ROOT, "/proc/77/exe": RUNNING}
    assert resolved("/mnt/jail/usr/sbin/mariadbd", "/srv/jail", chrooted) == HostBinary(
        "/proc/77/exe", "/mnt/jail/usr/sbin/mariadbd")


# -- choosing targets -----------------------------------------------------------------------------


def server(pid: int, binary: str, db: str = "postgresql", **fields) -> ServerProcess:
    values = dict(db=db, pid=pid, binary=binary, binary_in_root=binary, version="15.18",
                  processes=(pid,), container=None, ns_pid=None, data_dir=None, port=None,
                  user="postgres")
    values.update(fields)
    return ServerProcess(**values)


@pytest.fixture(scope="module")
def elf_file(tmp_path_factory) -> Path:
    return build_sdt_probes(tmp_path_factory.mktemp("elf"))


def test_a_server_whose_binary_cannot_be_read_is_a_warning(monkeypatch, elf_file, tmp_path) -> None:
    missing = str(tmp_path / "gone" / "postgres")
    found = [server(10, str(elf_file)), server(20, missing)]
    monkeypatch.setattr(targets.discovery, "find_servers", lambda: found)
    warnings: list[str] = []

    chosen = targets.choose_targets(pid=None, binary=None, databases=("postgresql",),
                                    warn=warnings.append)

    assert [target.servers for target in chosen] == [(found[0],)]
    assert chosen[0].elf is not None and chosen[0].open_binary() is chosen[0].elf  # parsed once
    assert warnings == [f"PostgreSQL server pid 20 is not traced: cannot read {missing}: "
                        f"No such file or directory"]


def test_no_server_that_can_be_read_is_an_error(monkeypatch, tmp_path) -> None:
    found = [server(20, str(tmp_path / "postgres")), server(30, str(tmp_path / "mariadbd"), "mariadb")]
    monkeypatch.setattr(targets.discovery, "find_servers", lambda: found)
    with pytest.raises(DbprobeError) as raised:
        targets.choose_targets(pid=None, binary=None, databases=("postgresql", "mariadb"),
                               warn=pytest.fail)
    assert str(raised.value) == (
        f"PostgreSQL server pid 20 is not traced: cannot read {tmp_path}/postgres: No such file or "
        f"directory; MariaDB server pid 30 is not traced: cannot read {tmp_path}/mariadbd: No such "
        f"file or directory")


def binary_error(path: str) -> str:
    with pytest.raises(DbprobeError) as raised:
        targets.choose_targets(pid=None, binary=path, databases=("postgresql",))
    return str(raised.value)


def test_binary_that_is_not_a_regular_file(tmp_path) -> None:
    fifo = tmp_path / "postgres.fifo"
    os.mkfifo(fifo)
    assert binary_error(str(fifo)) == f"--binary {fifo}: a named pipe (FIFO), not a server binary"
    assert binary_error("/dev/null") == "--binary /dev/null: a character device, not a server binary"
    assert binary_error(str(tmp_path)) == f"--binary {tmp_path}: a directory, not a server binary"
    assert binary_error(str(tmp_path / "none")) == f"--binary {tmp_path / 'none'}: no such file"


def test_binary_of_another_machine(tmp_path, installed_postgres: Path) -> None:
    foreign = tmp_path / "postgres"
    shutil.copy(installed_postgres, foreign)
    with open(foreign, "r+b") as file:  # e_machine, a 16-bit field at offset 18
        file.seek(18)
        file.write(struct.pack("<H", EM_AARCH64))
    assert binary_error(str(foreign)) == (
        f"--binary {foreign}: built for aarch64, and this machine is {targets.host_machine()}: "
        f"only its own binaries can be traced")
    assert targets.choose_targets(pid=None, binary=str(installed_postgres), databases=("postgresql",))


# -- binaries replaced on disk -------------------------------------------------------------------

TRACED, NEW = (5, 100), (5, 200)
POSTGRES = "/usr/lib/postgresql/15/bin/postgres"


def target_of(*servers: ServerProcess, binary: str = POSTGRES) -> targets.Target:
    return targets.Target(db="postgresql", binary=binary, version="15.18", root="/",
                          servers=servers, file=TRACED)


class Disk:
    """Which file each path names, changed by the test as an upgrade would."""

    def __init__(self, **files: tuple[int, int]):
        self.files = {POSTGRES: TRACED, **{f"/proc/{pid[1:]}/exe": file for pid, file in files.items()}}

    def identity(self, path: str) -> tuple[int, int] | None:
        return self.files.get(path)


def test_a_replaced_binary_is_told_once_then_the_server_running_the_new_file() -> None:
    disk = Disk()
    running: list[ServerProcess] = [server(10, POSTGRES)]
    now = [0.0]
    watch = BinaryWatch([target_of(running[0])], identity=disk.identity, find_servers=lambda: running,
                        clock=lambda: now[0])
    assert watch.check() == Changes([], [])
    assert watch.restart_is_traced(running[0]) is True

    disk.files[POSTGRES] = NEW  # the package manager renames the new file into place
    disk.files["/proc/10/exe"] = TRACED  # what the old server still runs, deleted
    running[:] = [server(10, "/proc/10/exe", binary_in_root=POSTGRES, binary_deleted=True)]
    assert watch.check() == Changes([
        f"{POSTGRES} was replaced on disk by a new file (as an upgrade installs it); the probes "
        f"stay on the old one, so a PostgreSQL server started from it now is not traced until "
        f"dbprobe has attached to the new file"], [])
    assert watch.check() == Changes([], [])
    assert watch.restart_is_traced(running[0]) is False

    restarted = server(11, POSTGRES)  # a new pid, the new file
    running[:] = [restarted]
    disk.files["/proc/11/exe"] = NEW
    now[0] += SCAN_EVERY_S - 0.1
    assert watch.check() == Changes([], [])  # servers are looked for less often than the file
    now[0] += 0.1
    assert watch.check() == Changes([f"PostgreSQL server pid 11 runs the new {POSTGRES} and is not "
                                     f"traced yet: attaching to the new file"], [restarted])
    assert watch.check() == Changes([], [])

    watch.traced_now("postgresql", POSTGRES, NEW)  # its program is attached
    assert watch.restart_is_traced(restarted) is True
    running[:] = [restarted, server(12, POSTGRES)]  # another server of the new file
    disk.files["/proc/12/exe"] = NEW
    now[0] += SCAN_EVERY_S
    assert watch.check() == Changes([], [])


def test_a_stopped_server_makes_the_next_check_look_for_servers() -> None:
    disk = Disk()
    disk.files[POSTGRES] = NEW
    scans = []
    watch = BinaryWatch([target_of(server(10, POSTGRES))], identity=disk.identity,
                        find_servers=lambda: scans.append(1) or [], clock=lambda: 0.0)
    watch.check()
    watch.check()
    assert len(scans) == 1
    watch.scan_soon()
    watch.check()
    assert len(scans) == 2


def test_only_the_servers_wanted_are_untraced() -> None:
    # Under -p: the traced server restarted, not another cluster of the same binary.
    disk = Disk(p11=NEW, p12=NEW)
    disk.files[POSTGRES] = NEW
    ours, other = server(11, POSTGRES), server(12, POSTGRES)
    watch = BinaryWatch([target_of(server(10, POSTGRES))], identity=disk.identity,
                        find_servers=lambda: [ours, other], clock=lambda: 0.0,
                        wanted=lambda candidate: candidate.pid == 11)
    assert watch.check().untraced == [ours]


def test_a_path_between_unlink_and_rename_is_not_replaced_yet() -> None:
    disk = Disk()
    watch = BinaryWatch([target_of(server(10, POSTGRES))], identity=disk.identity,
                        find_servers=pytest.fail)
    del disk.files[POSTGRES]
    assert watch.check() == Changes([], [])


def test_binary_target_watches_the_file_given() -> None:
    # --binary: no server yet, the path given is the one servers start from.
    disk = Disk()
    watch = BinaryWatch([target_of(binary=POSTGRES)], identity=disk.identity, find_servers=lambda: [])
    disk.files[POSTGRES] = NEW
    assert len(watch.check().messages) == 1


def test_a_server_running_a_deleted_binary_restarts_on_the_new_file() -> None:
    # Upgraded before dbprobe started: the probes are on the file it runs, through /proc/PID/exe.
    deleted = server(10, "/proc/10/exe", binary_in_root=POSTGRES, binary_deleted=True)
    disk = Disk()
    disk.files[POSTGRES] = NEW
    watched = watched_binaries([target_of(deleted, binary="/proc/10/exe")])
    assert [(binary.path, binary.traced) for binary in watched] == [(POSTGRES, TRACED)]
    assert restart_path(server(10, "/proc/10/exe", binary_in_root="/usr/sbin/x",
                               root="/proc/10/root")) == "/proc/10/root/usr/sbin/x"
    # A chroot's directory, as the host names it, outlives the server.
    assert restart_path(server(10, "/proc/10/root/usr/sbin/x", binary_in_root="/usr/sbin/x",
                               root="/srv/jail")) == "/srv/jail/usr/sbin/x"
    assert [binary for binary, _ in replaced(watched, disk.identity)] == watched


def test_untraced_servers_are_those_of_a_watched_path_on_another_file() -> None:
    disk = Disk(p10=TRACED, p11=NEW)
    disk.files["/opt/other/postgres"] = OTHER_FILE
    watched = watched_binaries([target_of(server(10, POSTGRES))])
    servers = [server(10, "/proc/10/exe", binary_in_root=POSTGRES, binary_deleted=True),
               server(11, POSTGRES), server(12, "/opt/other/postgres")]
    disk.files[POSTGRES] = NEW
    assert untraced_servers(watched, servers, disk.identity) == [servers[1]]


def test_target_label_names_its_servers_or_its_binary() -> None:
    assert target_of(server(10, POSTGRES)).label == "PostgreSQL server pid 10"
    assert target_of(server(10, POSTGRES), server(11, POSTGRES)).label == "PostgreSQL servers pid 10, 11"
    assert target_of().label == f"PostgreSQL binary {POSTGRES}"
