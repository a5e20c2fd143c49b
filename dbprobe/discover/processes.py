"""Find the PostgreSQL and MySQL/MariaDB servers running on this host.

Servers are found the way pgrep would find them, by the binary their processes
run. A PostgreSQL postmaster is a process running a ``postgres`` (or
``postmaster``) binary whose parent does not run that same binary; its
backends and auxiliary processes (autovacuum, walwriter, parallel workers...)
are its children running that binary. Their process titles are rewritten, so
the command line alone does not identify them. MySQL (``mysqld``) and MariaDB
(``mariadbd``, or a ``mysqld`` whose version string says MariaDB) run one
process with many threads.

Each binary is resolved through ``/proc/PID/root`` so servers inside
containers can be inspected from the host, and its version is read from the
binary itself, without running it: inside a container it may need libraries
the host does not have.
"""

from __future__ import annotations

import os
import pwd
import re
from collections import defaultdict
from dataclasses import dataclass

import psutil

from dbprobe.binary.elf import ElfBinary, ElfError
from dbprobe.errors import DbprobeError

POSTGRESQL = "postgresql"
MARIADB = "mariadb"
MYSQL = "mysql"
DATABASES = (POSTGRESQL, MARIADB, MYSQL)


@dataclass(frozen=True, slots=True)
class ServerProcess:
    """One database server: a postmaster with its children, or a mysqld/mariadbd."""

    db: str  # POSTGRESQL | MARIADB | MYSQL
    pid: int  # host pid of the postmaster / mysqld / mariadbd
    # A path the host can open: the plain path, /proc/PID/root/... for a server in another
    # root (a container), /proc/PID/exe when the file it runs was deleted.
    binary: str
    binary_in_root: str  # the binary's path as the server sees it
    version: str | None  # "15.18", "10.11.19"; None when the binary does not say
    processes: tuple[int, ...]  # host pids of all its processes, sorted; (pid,) for MySQL/MariaDB
    container: str | None  # short container id, None when not in a recognised container
    ns_pid: int | None  # pid inside its own pid namespace when it differs from `pid`
    data_dir: str | None  # as the server sees it
    port: int | None  # None when not cheaply known
    user: str  # OS user running it
    binary_deleted: bool = False  # the binary was replaced on disk (upgraded) while it runs
    # Its root directory when it is not the host's: the host's path to it (a chroot), or
    # /proc/PID/root when the host cannot name it (a root in another mount namespace).
    root: str | None = None


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """What a PostgreSQL process says about itself in its process title."""

    pid: int
    kind: str  # "client backend", "walsender", "autovacuum worker", "checkpointer"... or "unknown"
    user: str | None = None
    database: str | None = None
    client: str | None = None  # "127.0.0.1(51234)", "::1(5432)", "[local]"
    # What it does: "idle", "idle in transaction (aborted)", "SELECT", "streaming 0/3000148"...
    state: str | None = None


def find_servers(db: str | None = None) -> list[ServerProcess]:
    """All database servers on the host (only those of `db` if given), sorted by (db, pid)."""
    if db is not None and db not in DATABASES:
        raise DbprobeError(f"unknown database {db!r}: expected one of {', '.join(DATABASES)}")
    processes = _scan_server_binaries()
    servers = []
    for leader, members in _group_servers(processes).items():
        server = _describe_server(processes[leader], members)
        if server is not None and (db is None or server.db == db):
            servers.append(server)
    return sorted(servers, key=lambda server: (server.db, server.pid))


def server_for_pid(pid: int) -> ServerProcess:
    """The server `pid` belongs to.

    `pid` may be a postmaster or any of its children, a mysqld/mariadbd or any of its threads.
    """
    comm = _comm_of(pid)
    process_id = _thread_group_of(pid)
    processes = _scan_server_binaries()
    for leader, members in _group_servers(processes).items():
        if process_id in members:
            server = _describe_server(processes[leader], members)
            if server is not None:
                return server
    raise DbprobeError(f"pid {pid} ({comm}) is not a PostgreSQL or MySQL/MariaDB server process")


def backend_info(pid: int) -> BackendInfo | None:
    """What a PostgreSQL child process is doing, from its process title.

    None when `pid` does not exist or is not a PostgreSQL child process (the
    postmaster itself included); kind "unknown" for a child whose title does
    not follow PostgreSQL's format.
    """
    title = _read_process_title(pid)
    if title is None:
        return None
    info = parse_process_title(pid, title)
    if info is None and _is_postgres_child(pid):
        return BackendInfo(pid=pid, kind="unknown")
    return info


def ns_pid_of(pid: int) -> int | None:
    """The pid of `pid` inside its innermost pid namespace, or None when that is `pid` itself."""
    status = _read_proc_text(pid, "status")
    if status is None:
        raise DbprobeError(f"no process with pid {pid}")
    return parse_ns_pid(status)


# -- process titles ---------------------------------------------------------------------------

_TITLE_PREFIX = "postgres: "

# Process titles of processes that are not client backends, by the name they
# start with, mapped to pg_stat_activity's backend_type. Names before
# PostgreSQL 11 ended in " process"; older bgworker titles started "bgworker: ".
_BACKGROUND_KINDS = {
    "autovacuum launcher": "autovacuum launcher",
    "autovacuum launcher process": "autovacuum launcher",
    "autovacuum worker": "autovacuum worker",
    "autovacuum worker process": "autovacuum worker",
    "logical replication launcher": "logical replication launcher",
    "logical replication worker": "logical replication worker",
    "logical replication apply worker": "logical replication worker",
    "logical replication parallel apply worker": "logical replication worker",
    "logical replication tablesync worker": "logical replication worker",
    "parallel worker": "parallel worker",
    "background writer": "background writer",
    "writer process": "background writer",
    "checkpointer": "checkpointer",
    "checkpointer process": "checkpointer",
    "walwriter": "walwriter",
    "wal writer process": "walwriter",
    "walreceiver": "walreceiver",
    "wal receiver process": "walreceiver",
    "walsummarizer": "walsummarizer",
    "archiver": "archiver",
    "archiver process": "archiver",
    "logger": "logger",
    "logger process": "logger",
    "stats collector": "stats collector",
    "stats collector process": "stats collector",
    "startup": "startup",
    "startup process": "startup",
    "slotsync worker": "slotsync worker",
    "io worker": "io worker",
}
# Longest names first, so "autovacuum worker process" wins over "autovacuum worker".
_BACKGROUND_NAMES = sorted(_BACKGROUND_KINDS, key=len, reverse=True)
_WALSENDER_NAMES = ("walsender", "wal sender process")

# A client's address as the postmaster writes it: "[local]", or host(port).
_CLIENT = re.compile(r"(?:^|\s)(\[local\]|\S+\(\d+\))(?=\s|$)")


def parse_process_title(pid: int, title: str) -> BackendInfo | None:
    """Parse a PostgreSQL process title: ``postgres: [cluster_name: ]<what it is doing>``.

    None when `title` is not a PostgreSQL process title.
    """
    if not title.startswith(_TITLE_PREFIX):
        return None
    rest = _without_cluster_name(title[len(_TITLE_PREFIX) :].strip())
    if not rest:
        return BackendInfo(pid=pid, kind="unknown")
    walsender = _starting_name(rest, _WALSENDER_NAMES)
    if walsender is not None:
        return _parse_client_title(pid, "walsender", rest[len(walsender) :].strip())
    if _CLIENT.search(rest):
        return _parse_client_title(pid, "client backend", rest)
    background = _starting_name(rest, _BACKGROUND_NAMES)
    if background is None:
        # Extensions' background workers are titled with the name they registered.
        return BackendInfo(pid=pid, kind="background worker", state=rest)
    kind = _BACKGROUND_KINDS[background]
    detail = rest[len(background) :].strip() or None
    if kind == "autovacuum worker":
        return BackendInfo(pid=pid, kind=kind, database=detail)
    return BackendInfo(pid=pid, kind=kind, state=detail)


def _without_cluster_name(rest: str) -> str:
    cluster_name, separator, after = rest.partition(": ")
    if not separator or _CLIENT.search(cluster_name):
        return rest
    # Before PostgreSQL 11 background workers were titled "bgworker: NAME".
    if cluster_name == "bgworker":
        return after
    return after.removeprefix("bgworker: ")


def _starting_name(text: str, names: tuple[str, ...] | list[str]) -> str | None:
    for name in names:
        if text == name or text.startswith(name + " "):
            return name
    return None


def _parse_client_title(pid: int, kind: str, text: str) -> BackendInfo:
    """``user [database] client [state]``; a physical replication walsender has no database."""
    match = _CLIENT.search(text)
    if match is None:
        return BackendInfo(pid=pid, kind=kind, state=text or None)
    before = text[: match.start()].split()
    state = text[match.end() :].strip() or None
    user = before[0] if before else None
    database = " ".join(before[1:]) or None
    return BackendInfo(
        pid=pid, kind=kind, user=user, database=database, client=match.group(1), state=state
    )


# -- containers and pid namespaces ------------------------------------------------------------

_RUNTIME_MARKERS = ("docker", "containerd", "kubepods", "libpod", "podman", "crio", "nerdctl")
# A cgroup path component naming a container: "<id>", "docker-<id>.scope",
# "cri-containerd-<id>.scope", "crio-<id>.scope", "libpod-<id>.scope"...
_CONTAINER_COMPONENT = re.compile(r"(?:[a-z][a-z-]*-)?([0-9a-f]{64})(?:\.scope)?")


def parse_container_id(cgroup: str) -> str | None:
    """The short (12 hex digits) id of the container a /proc/PID/cgroup text puts its process in."""
    for line in cgroup.splitlines():
        path = line.split(":", 2)[-1]
        if not any(marker in path for marker in _RUNTIME_MARKERS):
            continue
        ids = [
            match.group(1)
            for component in path.split("/")
            # conmon, podman's and CRI-O's container monitor, runs beside the container, not in it.
            if "conmon" not in component and (match := _CONTAINER_COMPONENT.fullmatch(component))
        ]
        if ids:
            # Nested containers: the innermost is the one the process runs in.
            return ids[-1][:12]
    return None


def parse_ns_pid(status: str) -> int | None:
    """From a /proc/PID/status text: the pid in the innermost pid namespace, when it differs."""
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            pids = [int(field) for field in line.split()[1:]]
            return pids[-1] if len(pids) > 1 and pids[-1] != pids[0] else None
    return None  # kernels before 4.1 do not say


def _status_field(status: str, name: str) -> str | None:
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return None


# -- scanning /proc ---------------------------------------------------------------------------

_POSTGRES = "postgres"
_MYSQLD = "mysqld"
_SERVER_BINARY_NAMES = {
    "postgres": _POSTGRES,
    "postmaster": _POSTGRES,
    "mysqld": _MYSQLD,
    "mariadbd": _MYSQLD,
}
_DELETED_SUFFIX = " (deleted)"


@dataclass(frozen=True, slots=True)
class _ServerBinaryProcess:
    """A process running a database server binary, as one scan of /proc saw it."""

    pid: int
    ppid: int
    family: str  # _POSTGRES | _MYSQLD
    name: str  # basename of the binary
    # The binary's path as the process sees it; None when /proc/PID/exe is unreadable.
    exe: str | None
    exe_deleted: bool


def _scan_server_binaries() -> dict[int, _ServerBinaryProcess]:
    """Every process but ours running a postgres, postmaster, mysqld or mariadbd binary."""
    own_pid = os.getpid()
    found = {}
    for process in psutil.process_iter(["ppid", "name"]):
        if process.pid == own_pid:
            continue
        try:
            exe_link = os.readlink(f"/proc/{process.pid}/exe")
        except PermissionError:
            exe_link = None  # not root: fall back on the command name
        except OSError:
            continue  # a kernel thread, or gone
        exe = exe_link.removesuffix(_DELETED_SUFFIX) if exe_link is not None else None
        name = os.path.basename(exe) if exe is not None else process.info["name"]
        family = _SERVER_BINARY_NAMES.get(name or "")
        if family is None or process.info["ppid"] is None:
            continue
        found[process.pid] = _ServerBinaryProcess(
            pid=process.pid,
            ppid=process.info["ppid"],
            family=family,
            name=name,
            exe=exe,
            exe_deleted=exe_link is not None and exe_link.endswith(_DELETED_SUFFIX),
        )
    return found


def _group_servers(processes: dict[int, _ServerBinaryProcess]) -> dict[int, tuple[int, ...]]:
    """Leader pid (postmaster, mysqld, mariadbd) -> sorted pids of all its processes."""
    children: dict[int, list[int]] = defaultdict(list)
    for process in processes.values():
        parent = processes.get(process.ppid)
        if _is_postmaster_child(process, parent):
            children[process.ppid].append(process.pid)
    leaders = set(processes) - {pid for pids in children.values() for pid in pids}
    return {leader: tuple(sorted([leader, *children[leader]])) for leader in leaders}


def _is_postmaster_child(
    process: _ServerBinaryProcess, parent: _ServerBinaryProcess | None
) -> bool:
    return (
        process.family == _POSTGRES
        and parent is not None
        and parent.family == _POSTGRES
        and (parent.exe == process.exe if process.exe is not None else parent.name == process.name)
    )


def _is_postgres_child(pid: int) -> bool:
    try:
        ppid = psutil.Process(pid).ppid()
        exe = os.readlink(f"/proc/{pid}/exe")
        parent_exe = os.readlink(f"/proc/{ppid}/exe")
    except (psutil.Error, OSError):
        return False
    name = os.path.basename(exe.removesuffix(_DELETED_SUFFIX))
    return _SERVER_BINARY_NAMES.get(name) == _POSTGRES and exe == parent_exe


def _comm_of(pid: int) -> str:
    if pid <= 0:
        raise DbprobeError(f"no process with pid {pid}")
    try:
        return psutil.Process(pid).name()
    except psutil.NoSuchProcess:
        raise DbprobeError(f"no process with pid {pid}") from None
    except psutil.AccessDenied:
        raise DbprobeError(f"cannot inspect pid {pid}: permission denied (run as root)") from None


def _thread_group_of(pid: int) -> int:
    """The process a thread id belongs to (itself for a process)."""
    status = _read_proc_text(pid, "status")
    tgid = _status_field(status, "Tgid") if status is not None else None
    return int(tgid) if tgid else pid


def _read_proc_text(pid: int, name: str) -> str | None:
    try:
        with open(f"/proc/{pid}/{name}", encoding="utf-8", errors="replace") as file:
            return file.read()
    except OSError:
        return None


def _read_process_title(pid: int) -> str | None:
    """The process title: what the kernel shows as its command line, up to the first NUL."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            data = file.read()
    except OSError:
        return None
    return data.split(b"\0", 1)[0].decode("utf-8", errors="replace")


# -- describing a server ----------------------------------------------------------------------

# Command-line options that make the server binary do a one-off job (print its
# version, bootstrap a new cluster...) rather than serve clients.
_ONE_OFF_OPTIONS = {
    _POSTGRES: frozenset(
        {"--boot", "--check", "-C", "--describe-config", "-V", "--version", "-?", "--help"}
    ),
    _MYSQLD: frozenset(
        {
            "--bootstrap",
            "--initialize",
            "--initialize-insecure",
            "-V",
            "--version",
            "-?",
            "--help",
            "--print-defaults",
        }
    ),
}


def _describe_server(
    leader: _ServerBinaryProcess, members: tuple[int, ...]
) -> ServerProcess | None:
    """The ServerProcess led by `leader`; None when it is not a server or it is gone."""
    pid = leader.pid
    try:
        process = psutil.Process(pid)
        argv = process.cmdline()
        status = _read_proc_text(pid, "status")
        if status is None:
            return None
        if not _is_serving(leader.family, argv):
            return None
        root_link = _root_link(pid)
        exe = path_in_root(leader.exe, root_link) if leader.exe is not None else None
        binary_in_root = exe or _argv0_path(argv) or leader.name
        binary = _host_path_of_binary(leader, binary_in_root)
        root = _root_directory(pid, root_link)
        db, version = _identify(leader)
        if leader.family == _POSTGRES:
            settings = _postgres_settings(argv)
            data_dir = _postgres_data_dir(process, settings, root_link)
            port = _postgres_port(pid, settings, data_dir)
        else:
            data_dir = _mysqld_data_dir(process, argv, root_link)
            port = _mysqld_port(argv)
    except psutil.NoSuchProcess:
        return None
    return ServerProcess(
        db=db,
        pid=pid,
        binary=binary,
        binary_in_root=binary_in_root,
        version=version,
        processes=members,
        container=parse_container_id(_read_proc_text(pid, "cgroup") or ""),
        ns_pid=parse_ns_pid(status),
        data_dir=data_dir,
        port=port,
        user=_user_name(status, None if root is None else (_read_proc_text(pid, "root/etc/passwd") or "")),
        binary_deleted=leader.exe_deleted,
        root=root,
    )


def _is_serving(family: str, argv: list[str]) -> bool:
    # A backend whose postmaster died is reparented to a process that does not run its binary.
    if family == _POSTGRES and " ".join(argv).startswith(_TITLE_PREFIX):
        return False
    return not any(argument in _ONE_OFF_OPTIONS[family] for argument in argv[1:])


def _argv0_path(argv: list[str]) -> str | None:
    return argv[0] if argv and os.path.isabs(argv[0]) else None


def _host_path_of_binary(leader: _ServerBinaryProcess, binary_in_root: str) -> str:
    if leader.exe_deleted:
        return f"/proc/{leader.pid}/exe"  # the only name left for the file it runs
    if _shares_our_root(leader.pid):
        return binary_in_root
    return f"/proc/{leader.pid}/root{binary_in_root}"


def path_in_root(path: str, root_link: str) -> str:
    """A path read from /proc/PID/exe or /proc/PID/cwd, as the process itself names it.

    The kernel writes these links, and /proc/PID/root (`root_link`), relative to the
    reader's root: a process chrooted into a directory the host can name shows the host's
    path (/srv/jail/usr/sbin/mysqld for /usr/sbin/mysqld, with root /srv/jail); a process
    whose root the host cannot reach shows its own paths, with root "/".
    """
    root = root_link.rstrip("/")
    if root and path.startswith(root + "/"):
        return path[len(root):]
    return path


def _root_link(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/root")
    except PermissionError:
        return "/"  # not root: the host's root is the best guess, as in _shares_our_root
    except (FileNotFoundError, ProcessLookupError):
        raise psutil.NoSuchProcess(pid) from None


def _root_directory(pid: int, root_link: str) -> str | None:
    """The process's root as the host names it; None when it is the host's own."""
    if _shares_our_root(pid):
        return None
    try:
        if root_link != "/" and os.path.samefile(root_link, f"/proc/{pid}/root"):
            return root_link
    except OSError:
        pass  # the host has no such directory, or it is another one (another mount there)
    return f"/proc/{pid}/root"


def _shares_our_root(pid: int) -> bool:
    try:
        theirs = os.stat(f"/proc/{pid}/root")
    except PermissionError:
        return True  # cannot tell without root; the plain path is the best guess
    except (FileNotFoundError, ProcessLookupError):
        raise psutil.NoSuchProcess(pid) from None  # it exited since the scan
    ours = os.stat("/")
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)


def _user_name(status: str, passwd: str | None = None) -> str:
    """The name of the process's user; `passwd`: its own root's /etc/passwd, when it has a root of its own."""
    uids = _status_field(status, "Uid")
    uid = int(uids.split()[0]) if uids else -1
    if passwd is not None:
        return user_in_passwd(passwd, uid) or str(uid)
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def user_in_passwd(passwd: str, uid: int) -> str | None:
    """The name an /etc/passwd text gives to `uid`."""
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[2] == str(uid):
            return fields[0]
    return None



def _postgres_settings(argv: list[str]) -> dict[str, str]:
    """Settings on a postgres command line, from -D, -p, -c name=value and --name=value.

    -D is kept as "-D": it names the configuration directory, usually the data directory.
    """
    settings = {}
    flags = {"-D": "-D", "-p": "port"}
    arguments = iter(argv[1:])
    for argument in arguments:
        if argument in flags or argument == "-c":
            value = next(arguments, "")
        elif argument[:2] in flags or argument[:2] == "-c":
            argument, value = argument[:2], argument[2:]
        elif argument.startswith("--") and "=" in argument:
            name, _, value = argument[2:].partition("=")
            settings[name.replace("-", "_")] = value
            continue
        else:
            continue
        if argument == "-c":
            name, _, value = value.partition("=")
            settings[name.replace("-", "_")] = value
        else:
            settings[flags[argument]] = value
    return settings


def _postgres_data_dir(process: psutil.Process, settings: dict[str, str],
                       root_link: str = "/") -> str | None:
    data_dir = (
        settings.get("data_directory")
        or settings.get("-D")
        or _environment_variable(process, "PGDATA")
    )
    if data_dir is None or not os.path.isabs(data_dir):
        # The postmaster works in its data directory; a relative path was relative to its starter.
        return _working_directory(process, root_link)
    return data_dir


def _postgres_port(pid: int, settings: dict[str, str], data_dir: str | None) -> int | None:
    port = settings.get("port")
    if port is None and data_dir is not None:
        port = _port_from_postmaster_pid_file(pid, data_dir)
    return int(port) if port and port.isdigit() else None


def _port_from_postmaster_pid_file(pid: int, data_dir: str) -> str | None:
    """postmaster.pid's fourth line is the port the postmaster listens on."""
    path = os.path.join(data_dir, "postmaster.pid")
    if not _shares_our_root(pid):
        path = f"/proc/{pid}/root{path}"
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            lines = file.read().splitlines()
    except OSError:
        return None
    return lines[3].strip() if len(lines) > 3 else None


def _mysqld_option(argv: list[str], long_name: str, short_flag: str) -> str | None:
    """A mysqld option given as --name=value, --name value, -Xvalue or -X value; the last counts."""
    value = None
    arguments = iter(argv[1:])
    for argument in arguments:
        if argument.startswith(f"--{long_name}="):
            value = argument.partition("=")[2]
        elif argument in (f"--{long_name}", short_flag):
            value = next(arguments, None)
        elif argument.startswith(short_flag) and not argument.startswith("--"):
            value = argument[len(short_flag) :]
    return value


def _mysqld_data_dir(process: psutil.Process, argv: list[str], root_link: str = "/") -> str | None:
    data_dir = _mysqld_option(argv, "datadir", "-h")
    if data_dir is None or not os.path.isabs(data_dir):
        return _working_directory(process, root_link)  # mysqld works in its data directory
    return data_dir


def _mysqld_port(argv: list[str]) -> int | None:
    port = _mysqld_option(argv, "port", "-P")
    return int(port) if port and port.isdigit() else None


def _environment_variable(process: psutil.Process, name: str) -> str | None:
    try:
        return process.environ().get(name)
    except psutil.AccessDenied:
        return None


def _working_directory(process: psutil.Process, root_link: str = "/") -> str | None:
    """As the process names it (see path_in_root)."""
    try:
        return path_in_root(process.cwd(), root_link)
    except psutil.AccessDenied:
        return None


# -- database and version, from the binary ----------------------------------------------------

# The version strings in each server's .rodata. They are matched whole (NUL
# before them) because the binaries also hold messages like "upgrading to
# PostgreSQL 9.1." and "for example 10.1.1-MariaDB-mariadb1precise-log".
_POSTGRESQL_VERSION = rb"(?:^|\x00)PostgreSQL (\d+(?:\.\d+)+|\d+(?:devel|beta\d+|rc\d+)) "
_MARIADB_VERSION = rb"\x00(\d+\.\d+\.\d+)-MariaDB"
_MYSQL_VERSION = rb"\x00((?:5\.[5-7]|[89]\.\d+)\.\d+)(?:-[^\x00\s]*)?\x00"
# InnoDB's name for the server that wrote a redo log, "MySQL 9.7.4" (LOG_HEADER_CREATOR),
# is in every MySQL binary since 5.7, whole. MySQL 9's version string is not: the linker
# keeps "9.7.4" only as the tail of that name, and the string of its own next to it is
# the version with its update number, "9.7.4.0". So this is looked for first.
_MYSQL_INNODB_CREATOR = rb"\x00MySQL (\d+\.\d+\.\d+)\x00"

_version_cache: dict[tuple[int, int, int, bytes], str | None] = {}


def _identify(leader: _ServerBinaryProcess) -> tuple[str, str | None]:
    """(db, version) of a server, from the binary it runs."""
    if leader.family == _POSTGRES:
        return POSTGRESQL, _binary_version(leader.pid, _POSTGRESQL_VERSION)
    mariadb_version = _binary_version(leader.pid, _MARIADB_VERSION)
    if mariadb_version is not None or leader.name == "mariadbd":
        return MARIADB, mariadb_version
    return MYSQL, (_binary_version(leader.pid, _MYSQL_INNODB_CREATOR)
                   or _binary_version(leader.pid, _MYSQL_VERSION))


def _binary_version(pid: int, pattern: bytes) -> str | None:
    """The version `pattern` finds in the binary `pid` runs, cached per binary file."""
    # /proc/PID/exe opens the very file it runs, in a container or deleted alike.
    return _file_version(f"/proc/{pid}/exe", f"/proc/{pid}/root", pattern)


def _file_version(path: str, root: str, pattern: bytes) -> str | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key = (stat.st_dev, stat.st_ino, stat.st_mtime_ns, pattern)
    if key not in _version_cache:
        try:
            binary = ElfBinary(path, root=root)
            _version_cache[key] = binary.find_version_string(pattern)
        except ElfError:
            return None  # the process exited meanwhile, or the file is unreadable: not cached
    return _version_cache[key]


def identify_binary(path: str, root: str = "/") -> tuple[str | None, str | None]:
    """(db, version) of a server binary that need not be running; (None, None) if it is none."""
    family = _SERVER_BINARY_NAMES.get(os.path.basename(path))
    postgres_version = _file_version(path, root, _POSTGRESQL_VERSION)
    if postgres_version is not None or family == _POSTGRES:
        return POSTGRESQL, postgres_version
    mariadb_version = _file_version(path, root, _MARIADB_VERSION)
    if mariadb_version is not None:
        return MARIADB, mariadb_version
    if family == _MYSQLD:
        return MYSQL, (_file_version(path, root, _MYSQL_INNODB_CREATOR)
                       or _file_version(path, root, _MYSQL_VERSION))
    return None, None
