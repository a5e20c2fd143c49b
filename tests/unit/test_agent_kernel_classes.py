"""The agent's per-class counts from the kernel's class map: what grew at each drain, named
by server and sample, and idle classes deleted from the map so that it never fills up."""

from __future__ import annotations

from dbprobe.agent.classes import EVICT_IDLE_S, KernelClasses
from dbprobe.discover.backends import BackendDirectory, DatabaseNames
from dbprobe.kernel.maps import ClassCounters, ClassKey, ClassStats
from dbprobe.kernel.records import HIST_SLOTS, RawClassSample
from dbprobe.model import Source

BINARY = "/usr/lib/postgresql/15/bin/postgres"


class FakeTrace:
    def __init__(self) -> None:
        self.sources = {0: Source("postgresql", BINARY, "usdt")}
        self.versions = {0: "15.18"}
        self.backends = BackendDirectory()
        self.databases = DatabaseNames()
        self.handlers = {}
        self.collector = self
        self.map: dict[ClassKey, ClassStats] = {}
        self.deleted: list[ClassKey] = []

    def on(self, record_type, handler) -> None:
        self.handlers[record_type] = handler

    def class_counters(self) -> ClassCounters:
        return ClassCounters(dict(self.map), untracked=3)

    def delete_classes(self, keys) -> None:
        for key in keys:
            self.deleted.append(key)
            del self.map[key]


def stats(calls: int) -> ClassStats:
    slots = [0] * HIST_SLOTS
    slots[5] = calls
    return ClassStats(calls, calls * 20_000, 20_000, 0, 0, tuple(slots))


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_drain_hands_out_what_grew_named_by_server_and_sample() -> None:
    trace, clock = FakeTrace(), Clock()
    servers = {700: "/srv/main"}
    classes = KernelClasses(trace, servers.get, lambda: "/srv/only", clock)
    known, unknown = ClassKey(700, 5, 0xA), ClassKey(0, 5, 0xB)
    trace.handlers[RawClassSample](RawClassSample(1, 0, 0xA, 700, 5, "simple", 0,
                                                  b"select * from t where id = 1"))
    trace.map = {known: stats(4), unknown: stats(2)}
    first = {(c.server, c.text): c.calls for c in classes.drain()}
    assert first == {("/srv/main", "select * from t where id = ?"): 4,
                     ("/srv/only", "(statements of every other class)"): 2}
    assert classes.untracked == 3
    trace.map[known] = stats(10)
    assert [(c.server, c.calls) for c in classes.drain()] == [("/srv/main", 6)]


def test_a_class_idle_long_enough_leaves_the_map_and_counts_afresh_when_seen_again() -> None:
    trace, clock = FakeTrace(), Clock()
    classes = KernelClasses(trace, {700: "/srv/main"}.get, lambda: None, clock)
    key = ClassKey(700, 5, 0xA)
    trace.map = {key: stats(4)}
    classes.drain()
    clock.now += EVICT_IDLE_S - 1
    assert classes.drain() == [] and trace.deleted == []
    clock.now += 2
    assert classes.drain() == [] and trace.deleted == [key] and trace.map == {}
    trace.map = {key: stats(1)}  # the kernel made it again, from zero
    assert [c.calls for c in classes.drain()] == [1]


def test_a_class_of_a_server_not_named_yet_is_handed_out_once_it_is() -> None:
    """A server just started on a new binary may count statements before the agent's scan
    names it: what it counted waits for the name rather than being dropped."""
    trace, clock = FakeTrace(), Clock()
    servers: dict[int, str] = {}
    classes = KernelClasses(trace, servers.get, lambda: None, clock)
    key = ClassKey(900, 5, 0xA)
    trace.map = {key: stats(3)}
    assert classes.drain() == []
    trace.map = {key: stats(5)}
    assert classes.drain() == []
    servers[900] = "/srv/new"
    assert [(c.server, c.calls) for c in classes.drain()] == [("/srv/new", 5)]
    trace.map = {key: stats(6)}
    assert [(c.server, c.calls) for c in classes.drain()] == [("/srv/new", 1)]
