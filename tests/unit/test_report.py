"""Reports asserted by their exact text at a fixed width, and the JSON lines by their fields.

Times are shown in local time: the tests run in UTC so that the text is the same everywhere.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from dbprobe.kernel.maps import KernelTotals, LatencyHistogram
from dbprobe.digest.classes import ClassDigest
from dbprobe.digest.queries import QueryDigest, SlowQuerySummary
from dbprobe.kernel.records import HIST_SLOTS, PROTOCOLS
from dbprobe.correlate.fingerprint import Fingerprint
from dbprobe.model import Query
from dbprobe.render.queries import digest_text, live_header, live_line, query_json, summary_json
from dbprobe.render.text import histogram_text, slot_bounds

END = 1_700_000_000.25  # 2023-11-14 22:13:20.250 UTC
WINDOW_START = 1_700_000_000.0  # 22:13:20
WINDOW_END = 1_700_000_060.0  # 22:14:20

ORDERS = Fingerprint("5f1e9c2b7a3d4e60", "SELECT * FROM orders WHERE id = ?")
STOCK = Fingerprint("c4d3b2a190817263", "UPDATE stock SET n = n - ? WHERE item = ?")
SLEEP = Fingerprint("7e6f5a4b3c2d1e0f", "SELECT pg_sleep(?)")


pytestmark = pytest.mark.usefixtures("utc")


def query(text: str = "SELECT * FROM orders WHERE id = 42", duration_ms: float = 1234.5, *,
          print_as: Fingerprint = ORDERS, end: float = END, pid: int = 4242,
          database: str | None = "shop", protocol: str = "simple", error: bool = False,
          truncated: bool = False, ns_pid: int | None = None) -> Query:
    return Query(end=end, duration_ms=duration_ms, pid=pid, tid=pid + 1, ns_pid=ns_pid,
                 db="postgresql", database=database, text=text, fingerprint=print_as,
                 protocol=protocol, mechanism="usdt", error=error, truncated=truncated)


def histogram(**counts_by_protocol: dict[int, int]) -> LatencyHistogram:
    slots = {}
    for protocol in PROTOCOLS:
        counts = [0] * HIST_SLOTS
        for slot, count in counts_by_protocol.get(protocol, {}).items():
            counts[slot] = count
        slots[protocol] = tuple(counts)
    return LatencyHistogram(slots)


def slow_queries() -> list[Query]:
    return [
        query("SELECT * FROM orders WHERE id = 1", 0.6),
        query("UPDATE stock SET n = n - 1 WHERE item = 'anvil'", 1.0, print_as=STOCK,
              protocol="extended", error=True, database="billing"),
        query("select * from orders where id = 2", 0.9),
        query("SELECT pg_sleep(0.0007)", 0.7, print_as=SLEEP),
    ]


def slots(**counts: int) -> list[int]:
    at = [0] * HIST_SLOTS
    for name, count in counts.items():
        at[int(name[1:])] = count
    return at


def kernel_classes(untracked: int = 0) -> ClassDigest:
    """Every statement of the window by class, as the kernel counts them: 1,200 in three
    classes, the orders class in two kernel classes that share its fingerprint."""
    classes = ClassDigest(untracked=untracked, seconds=60.0)
    classes.add(ORDERS, "SELECT * FROM orders WHERE id = 1", "shop", calls=700, total_ns=4_200_000,
                max_ns=7_900, errors=0, slow_calls=0, slots=slots(s3=700))
    classes.add(ORDERS, "select * from orders where id = 2", "shop", calls=300, total_ns=9_600_000,
                max_ns=900_000, errors=0, slow_calls=2, slots=slots(s5=297, s10=3))
    classes.add(STOCK, "UPDATE stock SET n = n - 1 WHERE item = 'anvil'", "billing", calls=199,
                total_ns=3_200_000, max_ns=1_000_000, errors=1, slow_calls=1,
                slots=slots(s4=198, s10=1))
    classes.add(SLEEP, "SELECT pg_sleep(0.0007)", "shop", calls=1, total_ns=700_000, max_ns=700_000,
                errors=0, slow_calls=1, slots=slots(s10=1))
    return classes


def summary(queries: list[Query] | None = None, *, lost: int = 0, slow: int = 0,
            classes: ClassDigest | None = None) -> SlowQuerySummary:
    digest = QueryDigest()
    for each in slow_queries() if queries is None else queries:
        digest.add(each)
    return SlowQuerySummary(
        started=WINDOW_START, ended=WINDOW_END, threshold_ms=0.5,
        kernel=KernelTotals(queries=1_200, query_ns=24_000_000, emitted=4 + lost, lost=lost, slow=slow),
        histogram=histogram(simple={3: 700, 5: 297, 10: 3}, extended={4: 199, 10: 1}),
        digest=digest, classes=kernel_classes() if classes is None else classes,
    )


# --- live lines ------------------------------------------------------------------------------

HEADER = "TIME         PID     DATABASE     PROTO            MS QUERY"
PREFIX = "22:13:20.250 4242    shop         simple      1234.50 "


@pytest.mark.parametrize("width", [80, None])
def test_live_header(width: int | None) -> None:
    assert live_header(width) == HEADER


def test_live_header_cut_to_a_narrow_terminal() -> None:
    assert live_header(40) == "TIME         PID     DATABASE     PROTO…"


@pytest.mark.parametrize("width", [80, None])
def test_live_line_normalised(width: int | None) -> None:
    line = live_line(query("SELECT pg_sleep(2)", print_as=SLEEP), show_literals=False, width=width)
    assert line == "22:13:20.250 4242    shop         simple      1234.50 SELECT pg_sleep(?)"


def test_live_line_columns_line_up_with_the_header() -> None:
    line = live_line(query(), show_literals=False, width=None)
    assert line.index("4242") == HEADER.index("PID")
    assert line.index("shop") == HEADER.index("DATABASE")
    assert line.index("simple") == HEADER.index("PROTO")
    assert line.index("1234.50") + len("1234.50") == HEADER.index("MS") + len("MS")
    assert line.index("SELECT") == HEADER.index("QUERY")


def test_live_line_with_literals_folds_whitespace() -> None:
    text = "SELECT *\n  FROM orders\tWHERE id = 42 "
    line = live_line(query(text), show_literals=True, width=None)
    assert line == PREFIX + "SELECT * FROM orders WHERE id = 42"


@pytest.mark.parametrize(
    ("error", "truncated", "marks"),
    [(True, False, "[error] "), (False, True, "[truncated] "),
     (True, True, "[error] [truncated] ")],
)
def test_live_line_marks(error: bool, truncated: bool, marks: str) -> None:
    line = live_line(query(error=error, truncated=truncated), show_literals=False, width=None)
    assert line == PREFIX + marks + "SELECT * FROM orders WHERE id = ?"


def test_long_live_line_is_cut_at_the_width() -> None:
    text = "SELECT * FROM orders WHERE customer_id = 42 AND status = 'open'"
    normalised = Fingerprint(ORDERS.id, "SELECT * FROM orders WHERE customer_id = ? AND status = ?")
    cut = live_line(query(text, print_as=normalised), show_literals=False, width=80)
    assert cut == PREFIX + "SELECT * FROM orders WHER…"
    assert len(cut) == 80
    whole = live_line(query(text, print_as=normalised), show_literals=False, width=None)
    assert whole == PREFIX + normalised.text


@pytest.mark.parametrize(
    ("database", "shown"), [(None, "-           "), ("analytics_warehouse", "analytics_w…")])
def test_live_line_database_column(database: str | None, shown: str) -> None:
    line = live_line(query(database=database), show_literals=False, width=None)
    assert line == (
        f"22:13:20.250 4242    {shown} simple      1234.50 SELECT * FROM orders WHERE id = ?")


def test_live_line_small_duration_and_long_pid() -> None:
    line = live_line(query(duration_ms=0.004, pid=4194303, protocol="extended"),
                     show_literals=False, width=None)
    assert line == (
        "22:13:20.250 4194303 shop         extended       0.00 SELECT * FROM orders WHERE id = ?")


# --- the digest -------------------------------------------------------------------------------

OVERALL = [
    "# Slow-query digest, 22:13:20 to 22:14:20 (60.0 s)",
    "# 1,200 statements seen in the kernel (20.0/s, mean 0.020 ms; simple 1,000, extended 200)"
    " in 3 classes",
]
# tabulate's "simple" table: numbers right-aligned, and a numeric column is two characters
# wider than its header; the query text goes on the line under its numbers.
TABLE_HEADER = (
    "  Rank  Query ID            Total ms     %    Calls    Mean ms    p50 ms    p95 ms"
    "    p99 ms    Max ms    Err    Slow")
TABLE_RULE = (
    "------  ----------------  ----------  ----  -------  ---------  --------  --------"
    "  --------  --------  -----  ------")
ROWS = [
    "     1  5f1e9c2b7a3d4e60        13.8  78.0    1,000      0.014     0.007     0.029"
    "     0.032     0.900      0       2",
    "     2  c4d3b2a190817263         3.2  18.1      199      0.016     0.012     0.016"
    "     0.016     1.000      1       1",
    "     3  7e6f5a4b3c2d1e0f         0.7   4.0        1      0.700     0.700     0.700"
    "     0.700     0.700      0       1",
]
QUERY_INDENT = " " * 8  # each class's query goes on the line under its numbers
HISTOGRAM = [
    "Latency of all statements (kernel histogram):",
    "              range      count  distribution",
    "       4 us .. 8 us        700  |****************************************|",
    "      8 us .. 16 us        199  |***********                             |",
    "     16 us .. 32 us        297  |*****************                       |",
    "     32 us .. 64 us          0  |                                        |",
    "    64 us .. 128 us          0  |                                        |",
    "   128 us .. 256 us          0  |                                        |",
    "   256 us .. 512 us          0  |                                        |",
    "  512 us .. 1.02 ms          4  |                                        |",
]


def test_digest_text_without_a_width() -> None:
    assert digest_text(summary(), width=None).split("\n") == [
        *OVERALL,
        "# 4 at or over 0.5 ms; 0 events lost",
        "",
        "Statements by total time (every statement, counted in the kernel):",
        TABLE_HEADER,
        TABLE_RULE,
        ROWS[0],
        QUERY_INDENT + ORDERS.text,
        ROWS[1],
        QUERY_INDENT + STOCK.text,
        ROWS[2],
        QUERY_INDENT + SLEEP.text,
        "",
        *HISTOGRAM,
    ]


def test_digest_text_at_80_columns() -> None:
    # At 80 columns the numbers are cut inside "p95 ms"; the queries under them stay readable.
    lines = digest_text(summary(), width=80).split("\n")
    assert lines[5:12] == [
        TABLE_HEADER[:79] + "…",
        TABLE_RULE[:79] + "…",
        ROWS[0][:79] + "…",
        QUERY_INDENT + ORDERS.text,
        ROWS[1][:79] + "…",
        QUERY_INDENT + STOCK.text,
        ROWS[2][:79] + "…",
    ]
    assert all(len(line) <= 80 for line in lines[4:])


def test_digest_with_literals_shows_each_class_by_its_first_text() -> None:
    lines = digest_text(summary(), width=None, show_literals=True).split("\n")
    assert lines[8] == QUERY_INDENT + "SELECT * FROM orders WHERE id = 1"
    assert lines[10] == QUERY_INDENT + "UPDATE stock SET n = n - 1 WHERE item = 'anvil'"
    assert "anvil" not in digest_text(summary(), width=None)


def test_digest_warns_about_lost_events() -> None:
    lines = digest_text(summary(lost=17), width=None).split("\n")
    assert lines[:5] == [
        *OVERALL,
        "# 4 at or over 0.5 ms; 17 events lost",
        "# WARNING: the ring buffer overflowed: raise --threshold to see every slow query",
        "",
    ]


def test_digest_says_how_many_statements_the_full_class_table_left_out() -> None:
    lines = digest_text(summary(classes=kernel_classes(untracked=42)), width=None).split("\n")
    assert lines[3] == "# 42 statements not tracked by class: the kernel's class table was full"
    record = json.loads(summary_json(summary(classes=kernel_classes(untracked=42)),
                                     show_literals=False))
    assert record["untracked"] == 42


def test_digest_counts_the_slow_statements_whose_events_were_lost() -> None:
    lines = digest_text(summary(lost=17, slow=21), width=None).split("\n")
    assert lines[2] == "# 21 at or over 0.5 ms (4 reached user space); 17 events lost"
    record = json.loads(summary_json(summary(lost=17, slow=21), show_literals=False))
    assert (record["slow"], record["slow_reported"]) == (21, 4)


def test_digest_without_statements() -> None:
    assert digest_text(summary([], classes=ClassDigest()), width=None).split("\n") == [
        OVERALL[0],
        OVERALL[1].replace("in 3 classes", "in 0 classes"),
        "# 0 at or over 0.5 ms; 0 events lost",
        "",
        "No statement completed.",
        "",
        *HISTOGRAM,
    ]


def test_digest_top_cuts_the_table() -> None:
    lines = digest_text(summary(), width=None, top=2).split("\n")
    table_end = lines.index("")  # after the overall lines
    table = lines[table_end + 1:lines.index("", table_end + 1)]
    assert table == [
        "Statements by total time (every statement, counted in the kernel):",
        TABLE_HEADER,
        TABLE_RULE,
        ROWS[0],
        QUERY_INDENT + ORDERS.text,
        ROWS[1],
        QUERY_INDENT + STOCK.text,
        "... and 1 more classes",
    ]


def test_digest_of_an_idle_window() -> None:
    idle = SlowQuerySummary(started=WINDOW_START, ended=WINDOW_START, threshold_ms=100.0,
                            kernel=KernelTotals(), histogram=LatencyHistogram.empty(),
                            digest=QueryDigest(), classes=ClassDigest())
    assert digest_text(idle, width=80).split("\n") == [
        "# Slow-query digest, 22:13:20 to 22:13:20 (0.0 s)",
        "# 0 statements seen in the kernel (0.0/s, mean 0.000 ms) in 0 classes",
        "# 0 at or over 100 ms; 0 events lost",
        "",
        "No statement completed.",
        "",
        "Latency of all statements (kernel histogram):",
        "  (no statements)",
    ]


# --- histograms -------------------------------------------------------------------------------


def counts(at: dict[int, int]) -> list[int]:
    return [at.get(slot, 0) for slot in range(HIST_SLOTS)]


def test_histogram_text_exact() -> None:
    assert histogram_text(counts({0: 3, 2: 6, 3: 12}), unit="us", bar_width=12).split("\n") == [
        "         range      count  distribution",
        "  0 us .. 1 us          3  |***         |",
        "  1 us .. 2 us          0  |            |",
        "  2 us .. 4 us          6  |******      |",
        "  4 us .. 8 us         12  |************|",
    ]


def test_histogram_labels_in_larger_units() -> None:
    lines = histogram_text(counts({21: 1, 22: 1234567}), unit="us", bar_width=4).split("\n")
    assert lines == [
        "            range      count  distribution",
        "  1.05 s .. 2.1 s          1  |    |",
        "  2.1 s .. 4.19 s  1,234,567  |****|",
    ]


def test_histogram_of_nothing() -> None:
    assert histogram_text([0] * HIST_SLOTS, unit="us") == "  (no statements)"


def test_histogram_columns_line_up_across_units() -> None:
    # Labels are not monotonic in length: "1.02 ms .. 2.05 ms" is longer than "524 ms .. 1.05 s".
    lines = histogram_text(counts({11: 3, 14: 1, 20: 2}), unit="us", bar_width=10).split("\n")
    assert len({line.index("|") for line in lines[1:]}) == 1


@pytest.mark.parametrize(
    ("slot", "bounds"), [(0, (0, 1)), (1, (1, 2)), (2, (2, 4)), (10, (512, 1024))])
def test_slot_bounds(slot: int, bounds: tuple[int, int]) -> None:
    assert slot_bounds(slot) == bounds


# --- JSON lines -------------------------------------------------------------------------------

QUERY_FIELDS = {
    "event": str, "ts": str, "pid": int, "tid": int, "db": str, "database": str,
    "duration_ms": float, "query": str, "fingerprint": str, "protocol": str, "source": str,
    "error": bool, "truncated": bool,
}


def test_query_json_fields_and_types() -> None:
    record = json.loads(query_json(query(duration_ms=1234.56789), show_literals=False))
    assert {name: type(value) for name, value in record.items()} == QUERY_FIELDS
    assert record == {
        "event": "query", "ts": "2023-11-14T22:13:20.250000Z", "pid": 4242, "tid": 4243,
        "db": "postgresql", "database": "shop", "duration_ms": 1234.568,
        "query": "SELECT * FROM orders WHERE id = ?", "fingerprint": ORDERS.id,
        "protocol": "simple", "source": "usdt", "error": False, "truncated": False,
    }
    parsed = datetime.fromisoformat(record["ts"].replace("Z", "+00:00"))
    assert parsed == datetime.fromtimestamp(END, tz=timezone.utc)


def test_query_json_literals_only_when_asked() -> None:
    secret = query("SELECT * FROM users WHERE password = 'hunter2'",
                   print_as=Fingerprint(ORDERS.id, "SELECT * FROM users WHERE password = ?"))
    assert "hunter2" not in query_json(secret, show_literals=False)
    assert json.loads(query_json(secret, show_literals=True))["query"] == secret.text


def test_query_json_optional_and_unknown_fields() -> None:
    line = query_json(query(ns_pid=12, database=None, error=True), show_literals=False)
    record = json.loads(line)
    assert (record["ns_pid"], record["database"], record["error"]) == (12, None, True)
    assert "ns_pid" not in json.loads(query_json(query(), show_literals=False))


def test_query_json_keeps_non_ascii_text_readable() -> None:
    line = query_json(query("SELECT 'café'", print_as=Fingerprint(ORDERS.id, "SELECT 'café'")),
                      show_literals=True)
    assert "café" in line
    assert "\n" not in line


def test_summary_json_fields_and_types() -> None:
    record = json.loads(summary_json(summary(lost=2), show_literals=False))
    assert {name: type(value) for name, value in record.items()} == {
        "event": str, "start": str, "end": str, "seconds": float, "threshold_ms": float,
        "statements": int, "statements_by_protocol": dict, "statement_time_ms": float,
        "slow": int, "slow_reported": int, "lost_events": int, "untracked": int,
        "waits_untracked": int, "classes": list,
        "histogram_us": list,
    }
    assert (record["event"], record["start"], record["end"]) == (
        "summary", "2023-11-14T22:13:20.000000Z", "2023-11-14T22:14:20.000000Z")
    assert (record["seconds"], record["threshold_ms"], record["statements"]) == (60.0, 0.5, 1200)
    assert record["statements_by_protocol"] == {"simple": 1000, "extended": 200, "prepared": 0}
    assert (record["statement_time_ms"], record["slow"], record["lost_events"]) == (24.0, 4, 2)
    assert record["histogram_us"] == [
        {"low": 4, "high": 8, "count": 700}, {"low": 8, "high": 16, "count": 199},
        {"low": 16, "high": 32, "count": 297}, {"low": 512, "high": 1024, "count": 4},
    ]
    assert [c["fingerprint"] for c in record["classes"]] == [ORDERS.id, STOCK.id, SLEEP.id]
    orders = record["classes"][0]
    assert {name: orders[name] for name in orders if name != "histogram_us"} == {
        "rank": 1, "fingerprint": ORDERS.id, "query": ORDERS.text, "database": "shop",
        "calls": 1000, "total_ms": 13.8, "share": 0.7797, "mean_ms": 0.014, "p50_ms": 0.007,
        "p95_ms": 0.029, "p99_ms": 0.032, "max_ms": 0.9, "errors": 0, "slow_calls": 2,
    }
    assert orders["histogram_us"] == [{"low": 4, "high": 8, "count": 700},
                                      {"low": 16, "high": 32, "count": 297},
                                      {"low": 512, "high": 1024, "count": 3}]
    stock = record["classes"][1]
    assert (stock["errors"], stock["database"], stock["slow_calls"]) == (1, "billing", 1)


def test_summary_json_sample_only_with_literals() -> None:
    hidden = summary_json(summary(), show_literals=False)
    assert "anvil" not in hidden
    assert all("sample" not in c for c in json.loads(hidden)["classes"])
    shown = json.loads(summary_json(summary(), show_literals=True))
    assert [c["sample"] for c in shown["classes"]] == [
        "SELECT * FROM orders WHERE id = 1",
        "UPDATE stock SET n = n - 1 WHERE item = 'anvil'",
        "SELECT pg_sleep(0.0007)",
    ]


@pytest.mark.parametrize("text", ['SELECT \'a "quoted" word\'', "SELECT 'tab\there'\nFROM t",
                                  "SELECT 'back\\\\slash'", "SELECT 'ünïcödé ✓'", "SELECT '\x01'"])
def test_query_json_is_valid_json_whatever_the_text(text: str) -> None:
    record = json.loads(query_json(query(text), show_literals=True))
    assert record["query"] == " ".join(text.split())
