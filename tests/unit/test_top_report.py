"""The `top` report without a trace: classes counted from statements, window by window, and
the live screen's state as keys, intervals and warnings arrive (on a terminal stand-in that
records what it was asked to draw; the real one is tested under tmux)."""

from __future__ import annotations

from dbprobe.correlate.fingerprint import fingerprint
from dbprobe.digest.classes import ClassDigest
from dbprobe.model import Query
from dbprobe.render.top import TopHeader, TopView
from dbprobe.reports.terminal import RESIZE
from dbprobe.reports.top import LiveScreen, StatementClasses


def query(text: str, duration_ms: float, database: str | None = "shop", error: bool = False) -> Query:
    return Query(end=0.0, duration_ms=duration_ms, pid=1, tid=1, ns_pid=None, db="postgresql",
                 database=database, text=text, fingerprint=fingerprint(text), protocol="simple",
                 mechanism="usdt", error=error, truncated=False)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_statement_classes_count_each_window_and_the_lost_as_untracked() -> None:
    clock, lost = Clock(), [7]
    classes = StatementClasses(lambda: lost[0], clock)
    classes.add(query("select * from t where id = 1", 0.5))
    classes.add(query("select * from t where id = 2", 3.0, error=True))
    classes.add(query("select * from t where id = 3", 0.2, database="app"))
    clock.now, lost[0] = 102.0, 10
    first = classes.read()
    assert (first.seconds, first.untracked, first.calls) == (2.0, 3, 3)
    shop = first.ranked()[0]
    assert (shop.database, shop.calls, shop.errors, shop.total_ns, shop.max_ns) == \
        ("shop", 2, 1, 3_500_000, 3_000_000)
    assert shop.sample == "select * from t where id = 1"  # the first text seen
    assert shop.slots[9] == 1 and shop.slots[12] == 1  # 500 us in [256, 512), 3 ms in [2048, 4096)
    clock.now = 103.0
    second = classes.read()
    assert (second.seconds, second.untracked, second.classes) == (1.0, 0, {})


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
