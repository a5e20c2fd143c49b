"""The `top` report without a trace: the kernel's classes, window by window, and
the live screen's state as keys, intervals and warnings arrive (on a terminal stand-in that
records what it was asked to draw; the real one is tested under tmux)."""

from __future__ import annotations

from dbprobe.correlate.fingerprint import fingerprint
from dbprobe.digest.classes import ClassDigest
from dbprobe.discover.backends import BackendDirectory, DatabaseNames
from dbprobe.kernel.maps import ClassCounters, ClassKey, ClassStats
from dbprobe.kernel.records import HIST_SLOTS, RawClassSample
from dbprobe.model import Source
from dbprobe.render.top import TopHeader, TopView
from dbprobe.reports.terminal import RESIZE
from dbprobe.reports.top import KernelClasses, LiveScreen


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTrace:
    """A trace whose class map is set by the test, and whose samples it delivers."""

    def __init__(self) -> None:
        self.sources = {0: Source("postgresql", "/usr/lib/postgresql/15/bin/postgres", "usdt")}
        self.versions = {0: "15.18"}
        self.backends = BackendDirectory()
        self.databases = DatabaseNames()
        self.databases.learn("/usr/lib/postgresql/15/bin/postgres", 16384, "shop")
        self.handlers = {}
        self.collector = self
        self.map = ClassCounters({})

    def on(self, record_type, handler) -> None:
        self.handlers[record_type] = handler

    def drain(self) -> None:
        pass

    def class_counters(self) -> ClassCounters:
        return self.map

    def sample(self, hash_: int, text: bytes) -> None:
        self.handlers[RawClassSample](RawClassSample(pid=1, hook=0, hash=hash_, server=10,
                                                     database_oid=16384, protocol="simple",
                                                     flags=0, text=text))


def stats(calls: int, total_ns: int, slot: int) -> ClassStats:
    slots = [0] * HIST_SLOTS
    slots[slot] = calls
    return ClassStats(calls, total_ns, total_ns // calls, 0, 0, tuple(slots))


def test_the_kernel_classes_of_each_interval_are_what_grew_in_it() -> None:
    clock, trace = Clock(), FakeTrace()
    classes = KernelClasses(trace, clock)
    one, other = ClassKey(10, 16384, 0xA), ClassKey(10, 16384, 0xB)
    trace.sample(0xA, b"select * from t where id = 1")
    trace.sample(0xB, b"select * from t where id in (1, 2)")
    trace.map = ClassCounters({one: stats(3, 3_000_000, 10), other: stats(1, 500_000, 9)}, untracked=2)
    clock.now = 102.0
    first = classes.read()
    assert (first.seconds, first.untracked, first.calls) == (2.0, 2, 4)
    top = first.ranked()[0]
    assert (top.database, top.calls, top.total_ns) == ("shop", 3, 3_000_000)
    assert top.sample == "select * from t where id = 1"
    trace.map = ClassCounters({one: stats(5, 4_000_000, 10), other: stats(1, 500_000, 9)}, untracked=2)
    clock.now = 103.0
    second = classes.read()
    assert (second.seconds, second.untracked, second.calls) == (1.0, 0, 2)
    assert [t.fingerprint.text for t in second.ranked()] == ["select * from t where id = ?"]


class RecordingTerminal:
    def __init__(self, on_message) -> None:
        self.on_message = on_message
        self.pending: list[str] = []
        self.width, self.height = 80, 12
        self.drawn: list[list[str]] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def size(self):
        return self.width, self.height

    def keys(self):
        keys, self.pending = self.pending, []
        return keys

    def draw(self, lines, highlighted=()) -> None:
        self.drawn.append(list(lines))


def interval(database: str, calls: int) -> ClassDigest:
    digest = ClassDigest(seconds=1.0)
    digest.add(fingerprint("select 1"), "select 1", database, calls=calls, total_ns=calls * 1000,
               max_ns=1000, errors=0, slow_calls=0, slots=[0, calls])
    return digest


def live_screen() -> tuple[LiveScreen, RecordingTerminal]:
    made = {}

    def terminal_for(on_message):
        made["terminal"] = RecordingTerminal(on_message)
        return made["terminal"]

    screen = LiveScreen(TopHeader("PostgreSQL server pid 1", 1.0, 0.0), TopView(), terminal_for)
    return screen, made["terminal"]


def test_paused_the_screen_keeps_its_interval_and_shows_the_latest_on_resume() -> None:
    screen, terminal = live_screen()
    with screen:
        assert "waiting for the first interval" in terminal.drawn[-1][1]
        screen.show(interval("shop", 10), 1.0)
        terminal.pending = [" "]
        screen.tick()
        screen.show(interval("shop", 99), 2.0)
        assert "   10.0 " in terminal.drawn[-1][4] and "PAUSED" in terminal.drawn[-1][2]
        terminal.pending = ["p"]
        screen.tick()
        assert "   99.0 " in terminal.drawn[-1][4] and "PAUSED" not in terminal.drawn[-1][2]


def test_d_cycles_through_the_databases_seen_so_far() -> None:
    screen, terminal = live_screen()
    with screen:
        screen.show(interval("shop", 1), 1.0)
        screen.show(interval("app", 1), 2.0)
        terminal.pending = ["d"]
        screen.tick()
        assert "database shop" in terminal.drawn[-1][2]
        terminal.pending = ["d", "d"]
        screen.tick()
        assert "database all" in terminal.drawn[-1][2]


def test_a_resize_redraws_at_the_new_size_and_q_quits() -> None:
    screen, terminal = live_screen()
    with screen:
        drawn = len(terminal.drawn)
        terminal.width, terminal.height, terminal.pending = 50, 6, [RESIZE]
        screen.tick()
        assert len(terminal.drawn) == drawn + 1
        assert len(terminal.drawn[-1]) == 6 and {len(line) for line in terminal.drawn[-1]} == {50}
        terminal.pending = ["q", "3"]
        screen.tick()
        assert screen.quit


def test_a_message_on_stderr_shows_on_the_status_line() -> None:
    screen, terminal = live_screen()
    with screen:
        terminal.on_message("dbprobe: PostgreSQL server pid 1 stopped")
        assert terminal.drawn[-1][2].rstrip().endswith("PostgreSQL server pid 1 stopped")
