"""`dbprobe top`'s screen asserted as exact text screenshots at fixed sizes, and its keys.

Each golden line is framed by | so the width is visible: every line is exactly that wide.
Times are local: the tests run in UTC so that the text is the same everywhere.
"""

from __future__ import annotations

import textwrap

import pytest

from dbprobe.correlate.fingerprint import fingerprint
from dbprobe.digest.classes import ClassDigest
from dbprobe.kernel.records import HIST_SLOTS
from dbprobe.render.top import (QUIT, TopHeader, TopView, fit_cells, interval_text, on_key,
                                screen, table_header, table_rows)

ENDED = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
HEADER = TopHeader("PostgreSQL server pid 709", 2.0, ENDED)


pytestmark = pytest.mark.usefixtures("utc")


def _slots(**counts: int) -> list[int]:
    slots = [0] * HIST_SLOTS
    for slot, count in counts.items():
        slots[int(slot[1:])] = count
    return slots


# sample, database, calls, total ns, max ns, errors, log2 slots of microseconds
CLASSES = [
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 4711", "bench", 24_000, 960_000_000,
     2_000_000, 0, _slots(s5=20_000, s6=3_900, s11=100)),
    ("UPDATE pgbench_tellers SET tbalance = tbalance + 12 WHERE tid = 3", "bench", 1_200,
     3_600_000_000, 90_000_000, 4, _slots(s11=1_000, s15=200)),
    ("select pg_sleep(0.25)", "app", 4, 1_004_000_000, 252_000_000, 0, _slots(s18=4)),
    ("insert into audit values (1, 'x\x1b[2J')", None, 10, 5_000_000, 900_000, 10, _slots(s9=10)),
]


def digest(classes=CLASSES, *, seconds: float = 2.0, untracked: int = 0) -> ClassDigest:
    made = ClassDigest(seconds=seconds, untracked=untracked)
    for sample, database, calls, total_ns, max_ns, errors, slots in classes:
        made.add(fingerprint(sample), sample, database, calls=calls, total_ns=total_ns,
                 max_ns=max_ns, errors=errors, slow_calls=0, slots=slots)
    return made


def framed(lines: list[str]) -> str:
    return "\n".join(f"|{line}|" for line in lines)


def golden(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


SCREEN_80x24 = """
|dbprobe top  22:13:20  PostgreSQL server pid 709  every 2 s                     |
|12,607 statements/s   2,784 ms/s   4 classes   0 untracked                      |
|sorted by MS/S (total)   database all                                           |
|CALLS/S    MS/S   MEAN    P95    P99 ERR/S DATABASE QUERY                       |
|  600.0   1,800 3.00ms 27.9ms 31.8ms   2.0 bench    UPDATE pgbench_tellers SET …|
|    2.0   502.0  251ms  252ms  252ms     0 app      select pg_sleep(?)          |
| 12,000   480.0   40us   55us   63us     0 bench    SELECT abalance FROM pgbenc…|
|    5.0     2.5  500us  499us  509us   5.0 -        insert into audit values (?…|
|                                                                                |
|                                                                                |
|                                                                                |
|                                                                                |
|                                                                                |
|                                                                                |
|                                                                                |
|                                                                                |
|                                                                                |
|                                                                                |
|                                                                                |
|                                                                                |
|                                                                                |
|                                                                                |
|                                                                                |
|1-5 s S sort   d database   space p pause   q quit                              |
"""


def test_screen_at_80x24_by_total_time() -> None:
    lines = screen(digest(), HEADER, TopView(), width=80, height=24)
    assert framed(lines) == golden(SCREEN_80x24)


SCREEN_132x10_PAUSED = """
|dbprobe top  22:13:20  PostgreSQL server pid 709  every 2 s                                                                         |
|12,607 statements/s   2,784 ms/s   4 classes   0 untracked                                                                          |
|sorted by CALLS/S (calls)   database bench   PAUSED                                                                                 |
|CALLS/S    MS/S   MEAN    P95    P99 ERR/S DATABASE QUERY                                                                           |
| 12,000   480.0   40us   55us   63us     0 bench    SELECT abalance FROM pgbench_accounts WHERE aid = 4711                          |
|  600.0   1,800 3.00ms 27.9ms 31.8ms   2.0 bench    UPDATE pgbench_tellers SET tbalance = tbalance + 12 WHERE tid = 3               |
|                                                                                                                                    |
|                                                                                                                                    |
|                                                                                                                                    |
|1-5 s S sort   d database   space p pause   q quit                                                                                  |
"""


def test_wide_screen_by_calls_of_one_database_with_literals_paused() -> None:
    view = TopView(sort="calls", database="bench", paused=True, show_literals=True)
    lines = screen(digest(), HEADER, view, width=132, height=10)
    assert framed(lines) == golden(SCREEN_132x10_PAUSED)


def test_more_classes_than_rows_end_with_how_many_are_not_shown() -> None:
    many = [(f"select {n} from t{n}", "app", 100 - n, (100 - n) * 1_000_000, 2_000_000, 0,
             _slots(s10=100 - n)) for n in range(30)]
    lines = screen(digest(many), HEADER, TopView(), width=72, height=10)
    assert framed(lines[3:]) == golden("""
        |CALLS/S    MS/S   MEAN    P95    P99 ERR/S DATABASE QUERY               |
        |   50.0    50.0 1.00ms  998us 1.02ms     0 app      select ? from t0    |
        |   49.5    49.5 1.00ms  998us 1.02ms     0 app      select ? from t1    |
        |   49.0    49.0 1.00ms  998us 1.02ms     0 app      select ? from t2    |
        |   48.5    48.5 1.00ms  998us 1.02ms     0 app      select ? from t3    |
        |... and 26 more classes                                                 |
        |1-5 s S sort   d database   space p pause   q quit                      |
    """)


def test_before_the_first_interval_the_screen_says_it_waits() -> None:
    lines = screen(None, HEADER, TopView(), width=50, height=6)
    assert framed(lines) == golden("""
        |dbprobe top  22:13:20  PostgreSQL server pid 709 …|
        |waiting for the first interval                    |
        |sorted by MS/S (total)   database all             |
        |CALLS/S    MS/S   MEAN    P95    P99 ERR/S DATABA…|
        |                                                  |
        |1-5 s S sort   d database   space p pause   q quit|
    """)


def test_an_empty_interval_and_untracked_statements_are_said() -> None:
    header = TopHeader("MariaDB server pid 88", 1.0, ENDED, message="warning: 5 events lost")
    lines = screen(digest([], seconds=1.0, untracked=1_234), header, TopView(database="shop"),
                   width=100, height=6)
    assert framed(lines) == golden("""
        |dbprobe top  22:13:20  MariaDB server pid 88  every 1 s                                             |
        |0 statements/s   0 ms/s   0 classes   1,234 statements untracked                                    |
        |sorted by MS/S (total)   database shop   warning: 5 events lost                                     |
        |CALLS/S    MS/S   MEAN    P95    P99 ERR/S DATABASE QUERY                                           |
        |(no statements in this interval in this database)                                                   |
        |1-5 s S sort   d database   space p pause   q quit                                                  |
    """)


@pytest.mark.parametrize(("width", "height"), [(80, 24), (20, 3), (1, 1), (132, 2)])
def test_every_line_is_the_terminal_width_and_no_more_lines_than_its_height(width, height) -> None:
    lines = screen(digest(), HEADER, TopView(), width=width, height=height)
    assert 0 < len(lines) <= height
    assert {len(line) for line in lines} == {width}


def test_literals_are_hidden_unless_asked_for_and_control_characters_escaped() -> None:
    hidden = table_rows(digest(), TopView())
    shown = table_rows(digest(), TopView(show_literals=True))
    assert not any("4711" in row or "x\\x1b" in row for row in hidden)
    assert any(row.endswith("insert into audit values (1, 'x\\x1b[2J')") for row in shown)
    assert not any("\x1b" in row for row in shown)


def test_names_from_the_traced_machine_are_escaped() -> None:
    unsafe = [("select 1", "db\x07\x1b[31m", 1, 1_000, 1_000, 0, _slots(s1=1))]
    header = TopHeader("PostgreSQL server pid 1 \x1b]0;title\x07", 1.0, ENDED, message="\x1b[2J")
    text = "\n".join(screen(digest(unsafe), header, TopView(), width=200, height=8))
    assert "\x1b" not in text and "\x07" not in text
    assert " db\\x07\\… select ?" in text and "\\x1b]0;title\\x07" in text


def test_the_numbers_line_up_under_their_column_names() -> None:
    header = table_header()
    row = table_rows(digest(), TopView(sort="calls"))[0]
    for name, value in [("CALLS/S", "12,000"), ("MS/S", "480.0"), ("MEAN", "40us"),
                        ("P95", "55us"), ("P99", "63us")]:
        assert row.index(value) + len(value) == header.index(name) + len(name)
    assert row.index("bench") == header.index("DATABASE")
    assert row.index("SELECT") == header.index("QUERY")


def test_plain_table_per_interval_is_never_cut() -> None:
    assert interval_text(digest(), HEADER, TopView(sort="p99")) == golden("""
        # 22:13:20  12,607 statements/s   2,784 ms/s   4 classes   0 untracked
        CALLS/S    MS/S   MEAN    P95    P99 ERR/S DATABASE QUERY
            2.0   502.0  251ms  252ms  252ms     0 app      select pg_sleep(?)
          600.0   1,800 3.00ms 27.9ms 31.8ms   2.0 bench    UPDATE pgbench_tellers SET tbalance = tbalance + ? WHERE tid = ?
            5.0     2.5  500us  499us  509us   5.0 -        insert into audit values (?+)
         12,000   480.0   40us   55us   63us     0 bench    SELECT abalance FROM pgbench_accounts WHERE aid = ?
    """) + "\n"


def test_wide_characters_take_two_cells_and_combining_marks_none() -> None:
    assert fit_cells("select 注文 from t", 12) == "select 注文…"
    assert fit_cells("select 注文", 8) == "select …"  # the wide character does not fit half
    assert fit_cells("cafe\u0301", 6) == "cafe\u0301  "
    assert fit_cells("注文", 1) == "…"
    wide = [("select * from 注文 where id = 1", "shop", 1, 1_000, 1_000, 0, _slots(s1=1))]
    row = screen(digest(wide), HEADER, TopView(), width=69, height=6)[4]
    assert row == "    0.5     0.0    1us    1us    1us     0 shop     select * from 注…"
    assert len(row) == 68  # characters; 69 cells


# Keys ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "sort"), [("1", "total"), ("2", "mean"), ("3", "calls"),
                                           ("4", "p99"), ("5", "errors")])
def test_number_keys_choose_the_sort(key: str, sort: str) -> None:
    assert on_key(TopView(sort="mean" if sort == "total" else "total"), key, []).sort == sort


def test_s_and_shift_s_cycle_through_the_sorts() -> None:
    view = TopView()
    seen = []
    for _ in range(5):
        view = on_key(view, "s", [])
        seen.append(view.sort)
    assert seen == ["mean", "calls", "p99", "errors", "total"]
    assert on_key(TopView(), "S", []).sort == "errors"


def test_d_cycles_through_the_databases_then_all_of_them() -> None:
    view, shown = TopView(), []
    for _ in range(3):
        view = on_key(view, "d", ["app", "bench"])
        shown.append(view.database)
    assert shown == ["app", "bench", None]
    assert on_key(TopView(database="gone"), "d", ["app"]).database == "app"
    assert on_key(TopView(), "d", []).database is None


@pytest.mark.parametrize("key", [" ", "p"])
def test_space_and_p_pause_and_resume(key: str) -> None:
    paused = on_key(TopView(), key, [])
    assert paused.paused and not on_key(paused, key, []).paused


def test_q_quits_and_other_keys_change_nothing() -> None:
    assert on_key(TopView(), "q", []) is QUIT
    assert on_key(TopView(sort="p99"), "x", []) == TopView(sort="p99")
