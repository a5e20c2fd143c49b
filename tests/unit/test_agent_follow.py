"""Following the host without BPF: server names, the cheap look, and each binary's states."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from dbprobe.agent.config import AgentConfig
from dbprobe.agent.follow import (ATTACHED, ATTACHING, ERROR, Attached, Follower, matches,
                                  retry_delay, targets_of)
from dbprobe.agent.scan import ProcessWatch
from dbprobe.agent.servers import FORGET_AFTER_S, ServerDirectory, parent_pid, server_id
from dbprobe.agent.stats import AgentStats
from dbprobe.discover.processes import ServerProcess
from dbprobe.errors import DbprobeError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def server(binary: Path, pid: int, data_dir: str = "/srv/pg/main", **changes) -> ServerProcess:
    found = ServerProcess(db="postgresql", pid=pid, binary=str(binary), binary_in_root=str(binary),
                          version="15.18", processes=(pid,), container=None, ns_pid=None,
                          data_dir=data_dir, port=5433, user="postgres")
    return replace(found, **changes)


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    path = tmp_path / "bin" / "postgres"
    path.parent.mkdir()
    path.write_bytes(b"\x7fELF stand-in")
    return path


# -- names and pids ------------------------------------------------------------------------

def test_a_server_is_named_by_its_data_directory_and_container(binary: Path) -> None:
    assert server_id(server(binary, 1)) == "/srv/pg/main"
    assert server_id(server(binary, 1, container="6ebdfeb70104")) == "6ebdfeb70104:/srv/pg/main"
    assert server_id(server(binary, 1, data_dir=None)) == "port 5433"
    assert server_id(server(binary, 7, data_dir=None, port=None)) == "pid 7"


def test_restarts_keep_the_name_and_pids_find_their_server(binary: Path) -> None:
    parents = {201: 100, 202: 100, 301: 300}
    clock = Clock()
    directory = ServerDirectory(clock=clock, read_parent=parents.get)
    started, stopped = directory.update([server(binary, 100)])
    assert [known.id for known in started] == ["/srv/pg/main"] and stopped == []
    assert directory.server_of(201) == "/srv/pg/main"  # a backend: its parent is the postmaster
    assert directory.server_of(100) == "/srv/pg/main"
    assert directory.server_of(301) is None
    started, stopped = directory.update([])
    assert [known.id for known in stopped] == ["/srv/pg/main"] and not directory.running()
    started, stopped = directory.update([server(binary, 300)])  # restarted: a new pid
    assert [known.id for known in started] == ["/srv/pg/main"]
    assert directory.server_of(301) == "/srv/pg/main"
    assert directory.server_of(202) is None  # the old postmaster's backend is forgotten
    directory.update([])
    clock.now += FORGET_AFTER_S
    directory.update([])
    assert directory.servers == {}


def test_the_parent_of_a_real_process() -> None:
    import os
    assert parent_pid(os.getpid()) == os.getppid()
    assert parent_pid(0) is None


def test_servers_are_grouped_by_the_file_they_run(tmp_path: Path, binary: Path) -> None:
    link = tmp_path / "postgres-link"
    link.symlink_to(binary)
    other = tmp_path / "other-postgres"
    other.write_bytes(b"another file")
    targets = targets_of([server(binary, 1, data_dir="/a"), server(link, 2, data_dir="/b"),
                          server(other, 3, data_dir="/c")])
    assert sorted(len(target.servers) for target in targets.values()) == [1, 2]


def test_patterns_of_binaries_to_follow() -> None:
    assert matches("/usr/lib/postgresql/15/bin/postgres", ())
    assert matches("/usr/lib/postgresql/15/bin/postgres", ("/usr/lib/postgresql/*",))
    assert not matches("/opt/pg/bin/postgres", ("/usr/lib/postgresql/*", "/usr/sbin/mariadbd"))


# -- the cheap look ------------------------------------------------------------------------

def test_the_look_sees_leaders_come_and_go_and_ignores_backends() -> None:
    clock = Clock()
    processes = {1: ("/sbin/init", 0)}
    watch = ProcessWatch(clock=clock, list_pids=lambda: set(processes),
                         read_exe=lambda pid: processes.get(pid, (None, None))[0],
                         read_parent=lambda pid: processes.get(pid, (None, None))[1])
    assert not watch.changed()
    processes[100] = ("/usr/lib/postgresql/15/bin/postgres", 1)
    assert watch.changed()  # a postmaster
    processes[101] = ("/usr/lib/postgresql/15/bin/postgres", 100)
    assert not watch.changed()  # its backend
    del processes[101]
    assert not watch.changed()
    processes[200] = ("/bin/sh", 1)  # pg_ctl's shell, about to exec postgres
    assert not watch.changed()
    processes[200] = ("/usr/lib/postgresql/15/bin/postgres", 1)
    clock.now += 1.0
    assert watch.changed()  # seen again while young
    del processes[100]
    assert watch.changed()


# -- each binary's states ------------------------------------------------------------------

class FakeTrace:
    def __init__(self) -> None:
        self.probes_attached = 4
        self.plans = []
        self.closed = threading.Event()
        self.servers_told: list[int] = []  # the pids the kernel was told are servers

    def close(self) -> None:
        self.closed.set()

    def add_servers(self, servers) -> None:
        self.servers_told += [server.pid for server in servers]


class FakeTraced:
    def __init__(self, trace: FakeTrace, label, families) -> None:
        self.trace, self.label, self.families = trace, label, families
        self.config = None
        self.server_ids = ()
        self.finished = False

    def finish(self) -> None:
        self.finished = True


class Opener:
    """Stands in for compiling and attaching: fails while `failing` is set; attaches a
    spare (taking it) when `spare_for` holds the families asked for."""

    def __init__(self) -> None:
        self.failing: str | None = None
        self.calls = []
        self.spare_for: set[tuple[str, ...]] = set()

    def __call__(self, target, families, config) -> Attached:
        self.calls.append((target.binary, families, config))
        if self.failing:
            raise DbprobeError(self.failing)
        if families in self.spare_for:
            self.spare_for.discard(families)
            return Attached(FakeTrace(), families, 0.001, from_spare=True)
        return Attached(FakeTrace(), families, 0.01)


class Preparer:
    """Stands in for compiling a spare: records what it was asked for, and when."""

    def __init__(self, opener: Opener) -> None:
        self.calls = []
        self._opener = opener

    def __call__(self, target, families, config) -> float | None:
        self.calls.append((target.binary, families, len(self._opener.calls)))
        if families in self._opener.spare_for:
            return None
        self._opener.spare_for.add(families)
        return 1.5


def follower_for(config: AgentConfig, clock: Clock, opener: Opener, log: list[str],
                 preparer: Preparer | None = None) -> Follower:
    return Follower(config, AgentStats(top_k=config.top_k), FakeTraced, log.append, clock=clock,
                    opener=opener, preparer=preparer or Preparer(opener))


def settle(follower: Follower) -> None:
    """Let the worker and the follower go on until nothing is left to do now."""
    deadline = time.monotonic() + 10
    while True:
        while any(f.job is not None and not f.job.done() for f in follower.binaries.values()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        spare = follower._spare_job
        while spare is not None and not spare.done():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        follower.poll()
        if all(f.job is None and not (f.stale and f.retry_at <= follower._clock())
               for f in follower.binaries.values()) and follower._spare_job is None:
            return


def test_one_attach_per_binary_serves_every_server(binary: Path) -> None:
    clock, opener, log = Clock(), Opener(), []
    follower = follower_for(AgentConfig(watch=()), clock, opener, log)
    follower.reconcile([server(binary, 1, data_dir="/a"), server(binary, 2, data_dir="/b")])
    [followed] = follower.binaries.values()
    assert followed.state == ATTACHING
    settle(follower)
    assert followed.state == ATTACHED
    # Statements first, which compiles fastest; then every family, replacing it.
    assert [call[1] for call in opener.calls] == [("query",), ("query", "locks", "txn")]
    assert followed.traced.families == ("query", "locks", "txn")
    assert followed.traced.server_ids == ("/a", "/b")
    assert {1, 2} <= set(followed.traced.trace.servers_told)  # their statements are theirs
    follower.reconcile([server(binary, 1, data_dir="/a")])  # nothing attached twice
    settle(follower)
    assert len(opener.calls) == 2 and followed.traced.server_ids == ("/a",)
    assert any("attached postgresql" in line and "4 probes attached" in line for line in log)
    follower.close()
    assert followed.traced.finished and followed.traced.trace.closed.is_set()


def test_a_watched_binary_no_server_runs_yet_is_attached_with_every_family_at_once(binary: Path) -> None:
    from dbprobe.agent import follow
    clock, opener, log = Clock(), Opener(), []
    follower = follower_for(AgentConfig(watch=(str(binary),)), clock, opener, log)
    original = follow.identify_binary
    follow.identify_binary = lambda path: ("postgresql", "15.18")
    try:
        follower.reconcile([])
    finally:
        follow.identify_binary = original
    settle(follower)
    assert [call[1] for call in opener.calls] == [("query", "locks", "txn")]
    [followed] = follower.binaries.values()
    assert followed.watched and followed.state == ATTACHED
    follower.close()


def test_a_binary_no_server_runs_is_detached_after_a_while(binary: Path) -> None:
    clock, opener, log = Clock(), Opener(), []
    follower = follower_for(AgentConfig(watch=(), detach_after_s=30.0), clock, opener, log)
    follower.reconcile([server(binary, 1)])
    settle(follower)
    traced = follower.traced()[0]
    follower.reconcile([])
    clock.now += 29
    follower.reconcile([])
    assert follower.traced() == [traced]  # a restart comes back in time
    follower.reconcile([server(binary, 2)])
    follower.reconcile([])
    clock.now += 30
    follower.reconcile([])
    assert follower.binaries == {} and traced.finished
    assert traced.trace.closed.wait(5)
    assert any("detaching from" in line and "no server runs it" in line for line in log)
    follower.close()


def test_a_replaced_binary_is_detached_at_once(binary: Path) -> None:
    clock, opener, log = Clock(), Opener(), []
    follower = follower_for(AgentConfig(watch=()), clock, opener, log)
    follower.reconcile([server(binary, 1)])
    settle(follower)
    old = follower.traced()[0]
    fresh = binary.with_name("postgres.new")
    fresh.write_bytes(binary.read_bytes())
    fresh.replace(binary)  # an upgrade: a new inode at the same path
    follower.reconcile([server(binary, 2)])  # restarted on the new file
    settle(follower)
    assert old.finished and old.trace.closed.wait(5)
    [followed] = follower.binaries.values()
    assert followed.state == ATTACHED and followed.traced is not old
    assert len(opener.calls) == 4  # twice: statements first, then every family
    follower.close()


def test_a_binary_that_cannot_be_traced_is_retried_with_backoff(binary: Path, tmp_path: Path) -> None:
    clock, opener, log = Clock(), Opener(), []
    follower = follower_for(AgentConfig(watch=()), clock, opener, log)
    good = tmp_path / "good" / "postgres"
    good.parent.mkdir()
    good.write_bytes(b"another build")
    opener.failing = "cannot trace query: no probes"
    follower.reconcile([server(binary, 1, data_dir="/bad")])
    settle(follower)
    [bad] = follower.binaries.values()
    assert bad.state == ERROR and bad.failures == 1
    settle(follower)
    assert len(opener.calls) == 1  # not retried before its time
    opener.failing = None
    follower.reconcile([server(binary, 1, data_dir="/bad"), server(good, 2, data_dir="/good")])
    settle(follower)
    states = {f.target.binary: f.state for f in follower.binaries.values()}
    assert states == {str(binary): ERROR, str(good): ATTACHED}  # the others carry on
    clock.now += retry_delay(1)
    follower.poll()
    settle(follower)
    assert bad.state == ATTACHED
    assert sum("cannot trace postgresql" in line for line in log) == 1
    assert follower._stats.binary(bad.label).attach_errors == 1
    follower.close()


def test_backoff_doubles_up_to_a_minute() -> None:
    assert [retry_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_a_reload_that_changes_tracing_reattaches_keeping_the_old_program_meanwhile(binary: Path) -> None:
    clock, opener, log = Clock(), Opener(), []
    config = AgentConfig(watch=())
    follower = follower_for(config, clock, opener, log)
    follower.reconcile([server(binary, 1)])
    settle(follower)
    old = follower.traced()[0]
    follower.reconfigure(replace(config, top_k=5))
    follower.poll()
    settle(follower)
    assert follower.traced() == [old] and old.config.top_k == 5  # nothing to rebuild
    faster = replace(config, thresholds_ns={**config.thresholds_ns, "query": 0})
    opener.failing = "the kernel refused it"
    follower.reconfigure(faster)
    settle(follower)
    assert follower.traced() == [old]  # a failed re-attach keeps the running program
    opener.failing = None
    clock.now += retry_delay(1)
    settle(follower)
    [new] = follower.traced()
    assert new is not old and old.finished and opener.calls[-1][2] is faster
    assert opener.calls[-1][1] == ("query", "locks", "txn")
    follower.close()


def test_a_spare_of_the_query_program_is_compiled_once_no_attach_waits(binary: Path, tmp_path: Path) -> None:
    clock, opener, log = Clock(), Opener(), []
    preparer = Preparer(opener)
    follower = follower_for(AgentConfig(watch=()), clock, opener, log, preparer)
    follower.reconcile([server(binary, 1)])
    settle(follower)
    # After both attaches of the binary, never between them: the full one was waiting.
    assert [call[1:] for call in preparer.calls] == [(("query",), 2)]
    assert any("compiled a spare query program for the next binary of the build of "
               f"{binary} in 1.50 s" in line for line in log)
    # A copy of the binary (a new file, the same build) is attached with the spare first.
    copy = tmp_path / "copy" / "postgres"
    copy.parent.mkdir()
    copy.write_bytes(binary.read_bytes())
    follower.reconcile([server(binary, 1), server(copy, 2, data_dir="/srv/copy")])
    settle(follower)
    assert [call[1] for call in opener.calls[2:]] == [("query",), ("query", "locks", "txn")]
    assert any(f"{copy} (" in line and "(a compiled program ready for this build)" in line
               for line in log)
    stats = follower._stats.binary(follower.binaries[next(i for i, f in follower.binaries.items()
                                                          if f.target.binary == str(copy))].label)
    assert stats.spare_attaches == 1 and stats.attaches == 2
    assert stats.first_attach_seconds == 0.001 and stats.attach_seconds == 0.01
    # The spare taken, another is compiled for the next copy.
    assert "query" in {families[0] for families in opener.spare_for}
    assert [call[0] for call in preparer.calls[-1:]] == [str(copy)]
    follower.close()


def test_no_spare_is_compiled_with_spare_programs_0_and_a_reload_to_0_closes_them(binary: Path) -> None:
    clock, opener, log = Clock(), Opener(), []
    preparer = Preparer(opener)
    config = AgentConfig(watch=(), spare_programs=0)
    follower = follower_for(config, clock, opener, log, preparer)
    follower.reconcile([server(binary, 1)])
    settle(follower)
    assert len(opener.calls) == 2 and preparer.calls == []
    follower.reconfigure(replace(config, spare_programs=2))
    settle(follower)
    assert [call[1] for call in preparer.calls] == [("query",)] and follower.spares.limit == 2
    closed = []
    follower.spares.clear = lambda: closed.append("clear")
    follower.reconfigure(replace(config, spare_programs=0))
    settle(follower)
    for job in follower._closing:
        job.result(10)
    assert closed == ["clear"] and len(preparer.calls) == 1
    follower.close()


def test_spares_are_closed_by_a_reload_that_changes_tracing_and_at_exit(binary: Path) -> None:
    clock, opener, log = Clock(), Opener(), []
    config = AgentConfig(watch=())
    follower = follower_for(config, clock, opener, log)
    closed = []
    follower.spares.clear = lambda: closed.append("clear")
    follower.spares.close = lambda: closed.append("close")
    follower.reconcile([server(binary, 1)])
    settle(follower)
    follower.reconfigure(replace(config, top_k=5))
    settle(follower)
    assert closed == []  # nothing that is compiled changed
    follower.reconfigure(replace(config, thresholds_ns={**config.thresholds_ns, "query": 0}))
    settle(follower)
    assert closed == ["clear"]
    follower.close()
    assert closed == ["clear", "close"]


def test_families_a_server_does_not_have_are_left_out(tmp_path: Path) -> None:
    clock, opener, log = Clock(), Opener(), []
    mariadbd = tmp_path / "mariadbd"
    mariadbd.write_bytes(b"mariadb stand-in")
    follower = follower_for(AgentConfig(watch=()), clock, opener, log)
    follower.reconcile([server(mariadbd, 5, db="mariadb")])
    settle(follower)
    assert opener.calls[-1][1] == ("query", "locks")  # MariaDB has no txn recipe
    follower.close()
    follower = follower_for(AgentConfig(watch=(), families=("txn",)), clock, opener, log)
    follower.reconcile([server(mariadbd, 5, db="mariadb")])
    [followed] = follower.binaries.values()
    assert followed.state == ERROR and "none of the families txn exists for mariadb" in followed.error
    follower.close()
