"""Find the database servers running on this host.

Servers are found the way pgrep would find them, by the binary their processes run: a
file named as one of an engine's recipe says (``process_names``). An engine that forks a
process per connection (PostgreSQL) has a main process whose parent does not run that same
binary, and children that do; their process titles are rewritten, so the command line
alone does not identify them. Other servers run one process with many threads. Which
engine a binary belongs to, when a name is shared (``mysqld``), its version says.

Each server's binary is resolved to a path the host can open: the same file its process
runs, whether the server is in a container (its own mount namespace), in a plain chroot or
runs a file deleted since. Its version is read from the binary itself, without running it:
inside a container it may need libraries the host does not have.
"""

from __future__ import annotations

import os
import pwd
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import psutil

from dbprobe.binary.elf import ElfBinary, ElfError
from dbprobe.discover.files import FileIdentity, file_identity
from dbprobe.engines.base import BackendInfo, Engine
from dbprobe.engines.registry import (ENGINES, NAMES, display_names, engine_for, engines_running,
                                      identify, server_binary_names)
from dbprobe.errors import DbprobeError


@dataclass(frozen=True, slots=True)
class ServerProcess:
    """One database server: its main process with its children, or a server's one process."""

    db: str  # an engine's name: "postgresql", "mariadb", "mysql"
    pid: int  # host pid of the postmaster / mysqld / mariadbd
    # A path the host can open to the very file the server runs: the plain path, the path
    # through /proc/PID/root for a server in a root of its own (a container, a chroot), or
    # /proc/PID/exe when nothing else names it.
    binary: str
    binary_in_root: str  # the binary's path as the server sees it
    version: str | None  # "15.18", "10.11.19"; None when the binary does not say
    processes: tuple[int, ...]  # host pids of all its processes, sorted; (pid,) for one-process servers
    container: str | None  # short container id, None when not in a recognised container
    ns_pid: int | None  # pid inside its own pid namespace when it differs from `pid`
    data_dir: str | None  # as the server sees it
    port: int | None  # None when not cheaply known
    user: str  # OS user running it
    binary_deleted: bool = False  # the binary was replaced on disk (upgraded) while it runs
    # Its root directory when it is not the host's: the host's path to it (a chroot), or
    # /proc/PID/root when the host cannot name it (a root in another mount namespace).
    root: str | None = None

    @property
    def proc_root(self) -> str:
        """The root its binary's path is under, as ElfBinary takes it: "/" or /proc/PID/root."""
        return "/" if self.root is None else f"/proc/{self.pid}/root"


def restart_path(server: ServerProcess) -> str:
    """The host path a server started again would run: where its binary is installed, even
    when the file it runs now is only reachable as /proc/PID/exe (deleted), and by the
    host's name for its root when it has one (a chroot's directory outlives the process)."""
    if server.root is None:
        return server.binary_in_root
    return f"{server.root}{server.binary_in_root}"


def find_servers(db: str | None = None) -> list[ServerProcess]:
    """All database servers on the host (only those of `db` if given), sorted by (db, pid)."""
    if db is not None:
        engine_for(db)  # an unknown name is an error
    processes = _scan_server_binaries()
    servers = []
    for leader, members in _group_servers(processes).items():
        server = _describe_server(processes[leader], members)
        if server is not None and (db is None or server.db == db):
            servers.append(server)
    return sorted(servers, key=lambda server: (server.db, server.pid))


def server_for_pid(pid: int) -> ServerProcess:
    """The server `pid` belongs to: its main process or any of its children or threads."""
    comm = _comm_of(pid)
    process_id = _thread_group_of(pid)
    processes = _scan_server_binaries()
    for leader, members in _group_servers(processes).items():
        if process_id in members:
            server = _describe_server(processes[leader], members)
            if server is not None:
                return server
    raise DbprobeError(f"pid {pid} ({comm}) is not a {display_names(NAMES)} server process")


def backend_info(pid: int) -> BackendInfo | None:
    """What a server's child process is doing, from its process title.

    None when `pid` does not exist or is not a server's child process (the main process
    itself included); kind "unknown" for a child whose title its engine does not read.
    """
    title = _read_process_title(pid)
    if title is None:
        return None
    for engine in ENGINES:
        info = engine.backend_info(pid, title)
        if info is not None:
            return info
    return BackendInfo(pid=pid, kind="unknown") if _is_forked_backend(pid) else None


def ns_pid_of(pid: int) -> int | None:
    """The pid of `pid` inside its innermost pid namespace, or None when that is `pid` itself."""
    status = _read_proc_text(pid, "status")
    if status is None:
        raise DbprobeError(f"no process with pid {pid}")
    return parse_ns_pid(status)


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

_DELETED_SUFFIX = " (deleted)"


@dataclass(frozen=True, slots=True)
class _ServerBinaryProcess:
    """A process running a database server binary, as one scan of /proc saw it."""

    pid: int
    ppid: int
    name: str  # basename of the binary
    # The binary's path as the host's readlink gives it; None when /proc/PID/exe is unreadable.
    exe: str | None
    exe_deleted: bool

    @property
    def forks_backends(self) -> bool:
        return any(engine.forks_backends for engine in engines_running(self.name))


def _scan_server_binaries() -> dict[int, _ServerBinaryProcess]:
    """Every process but ours running a binary of a name some engine's servers run."""
    own_pid = os.getpid()
    names = server_binary_names()
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
        if name not in names or process.info["ppid"] is None:
            continue
        found[process.pid] = _ServerBinaryProcess(
            pid=process.pid,
            ppid=process.info["ppid"],
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
        if _is_forked_child(process, parent):
            children[process.ppid].append(process.pid)
    leaders = set(processes) - {pid for pids in children.values() for pid in pids}
    return {leader: tuple(sorted([leader, *children[leader]])) for leader in leaders}


def _is_forked_child(process: _ServerBinaryProcess, parent: _ServerBinaryProcess | None) -> bool:
    return (
        process.forks_backends
        and parent is not None
        and (parent.exe == process.exe if process.exe is not None else parent.name == process.name)
    )


def _is_forked_backend(pid: int) -> bool:
    """Whether `pid` is a child its parent forked from the same server binary."""
    try:
        ppid = psutil.Process(pid).ppid()
        exe = os.readlink(f"/proc/{pid}/exe")
        parent_exe = os.readlink(f"/proc/{ppid}/exe")
    except (psutil.Error, OSError):
        return False
    name = os.path.basename(exe.removesuffix(_DELETED_SUFFIX))
    return exe == parent_exe and any(engine.forks_backends for engine in engines_running(name))


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


def _describe_server(leader: _ServerBinaryProcess, members: tuple[int, ...]) -> ServerProcess | None:
    """The ServerProcess led by `leader`; None when it is not a server or it is gone."""
    pid = leader.pid
    try:
        process = psutil.Process(pid)
        argv = process.cmdline()
        status = _read_proc_text(pid, "status")
        if status is None:
            return None
        identified = _identify(leader)
        if identified is None:
            return None
        engine, version = identified
        if not engine.is_serving(argv):
            return None
        root_link = _root_link(pid)
        binary = _binary_of(leader, argv, root_link)
        root = _root_directory(pid, root_link)
        settings = engine.settings(_RunningProcess(process, argv, root_link, root is not None))
        passwd = _read_proc_text(pid, "root/etc/passwd") or "" if root is not None else None
    except psutil.NoSuchProcess:
        return None
    return ServerProcess(
        db=engine.name,
        pid=pid,
        binary=binary.host_path,
        binary_in_root=binary.path_in_root,
        version=version,
        processes=members,
        container=parse_container_id(_read_proc_text(pid, "cgroup") or ""),
        ns_pid=parse_ns_pid(status),
        data_dir=settings.data_dir,
        port=settings.port,
        user=_user_name(status, passwd),
        binary_deleted=leader.exe_deleted,
        root=root,
    )


class _RunningProcess:
    """A server's main process, as its engine reads it (engines.base.RunningServer)."""

    def __init__(self, process: psutil.Process, argv: list[str], root_link: str, own_root: bool):
        self._process = process
        self.argv = argv
        self._root_link = root_link
        self._own_root = own_root

    def environment_variable(self, name: str) -> str | None:
        try:
            return self._process.environ().get(name)
        except psutil.AccessDenied:
            return None

    def working_directory(self) -> str | None:
        try:
            return path_in_root(self._process.cwd(), self._root_link)
        except psutil.AccessDenied:
            return None

    def read_text(self, path: str) -> str | None:
        host_path = f"/proc/{self._process.pid}/root{path}" if self._own_root else path
        try:
            with open(host_path, encoding="utf-8", errors="replace") as file:
                return file.read()
        except OSError:
            return None


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


# -- a root of its own ------------------------------------------------------------------------


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
        return "/"  # not root: the host's root is the best guess
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


# -- the binary a server runs, as the host can open it ----------------------------------------


@dataclass(frozen=True, slots=True)
class HostBinary:
    host_path: str  # what the host opens and attaches to
    path_in_root: str  # the path as the server sees it


def _binary_of(leader: _ServerBinaryProcess, argv: list[str], root_link: str) -> HostBinary:
    if leader.exe is None:  # not root: only its command name or argv[0] is known
        path = argv[0] if argv and os.path.isabs(argv[0]) else leader.name
        return HostBinary(path, path)
    try:
        return resolve_binary(leader.pid, leader.exe, leader.exe_deleted, root_link)
    except (FileNotFoundError, ProcessLookupError):
        raise psutil.NoSuchProcess(leader.pid) from None  # it exited since the scan


def resolve_binary(pid: int, exe: str, deleted: bool, root_link: str, *,
                   identity: Callable[[str], FileIdentity | None] = file_identity) -> HostBinary:
    """The host's path to the file process `pid` runs, whose /proc/PID/exe link reads `exe`.

    The link is written relative to the reader's root (see path_in_root). In our own root
    the plain path names the file; in a root of its own (a container, a chroot) its path
    inside that root, opened through /proc/PID/root. The path chosen is one that names the
    very file /proc/PID/exe opens, the host's own path as a last try (a chroot whose
    directory moved); when none does (a deleted file), /proc/PID/exe itself.
    """
    inside = path_in_root(exe, root_link)
    running = identity(f"/proc/{pid}/exe")
    if identity(f"/proc/{pid}/root") == identity("/"):
        candidates = [exe]
    else:
        candidates = [f"/proc/{pid}/root{inside}", exe]
    if not deleted and running is not None:
        for host_path in candidates:
            if identity(host_path) == running:
                return HostBinary(host_path, inside)
    return HostBinary(f"/proc/{pid}/exe", inside)  # the only name left for the file it runs


# -- which engine, and its version, from the binary -------------------------------------------

_version_cache: dict[tuple[FileIdentity, int, str], str | None] = {}


def _identify(leader: _ServerBinaryProcess) -> tuple[Engine, str | None] | None:
    # /proc/PID/exe opens the very file it runs, in a container, a chroot or deleted alike.
    return identify(leader.name, lambda engine: _file_version(
        f"/proc/{leader.pid}/exe", f"/proc/{leader.pid}/root", engine))


def _file_version(path: str, root: str, engine: Engine) -> str | None:
    """The version `engine` finds in the binary at `path`, cached per binary file."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    key = ((found.st_dev, found.st_ino), found.st_mtime_ns, engine.name)
    if key not in _version_cache:
        try:
            _version_cache[key] = engine.find_version(ElfBinary(path, root=root))
        except ElfError:
            return None  # the process exited meanwhile, or the file is unreadable: not cached
    return _version_cache[key]


def identify_binary(path: str, root: str = "/") -> tuple[str | None, str | None]:
    """(db, version) of a server binary that need not be running; (None, None) if it is none."""
    identified = identify(os.path.basename(path), lambda engine: _file_version(path, root, engine))
    if identified is None:
        return None, None
    engine, version = identified
    return engine.name, version
