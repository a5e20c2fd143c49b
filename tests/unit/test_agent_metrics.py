"""The metrics as Prometheus reads them: prometheus_client's exposition, parsed back."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dbprobe.agent.classes import ClassCounts
from dbprobe.agent.events import EventSink, with_server
from dbprobe.agent.metrics import (BUCKET_BOUNDS, AgentCollector, AgentView, BinaryView, ServerView,
                                   buckets, registry_for)
from dbprobe.agent.stats import AgentStats, BinaryLabel, Distribution, KernelCounts
from dbprobe.kernel.records import HIST_SLOTS, Breakdown
from dbprobe.model import WaitTime

SERVER = "/var/lib/postgresql/15/main"
LABEL = BinaryLabel("postgresql", "/usr/lib/postgresql/15/bin/postgres", "")


def slots(**counts: int) -> tuple[int, ...]:
    found = [0] * HIST_SLOTS
    for slot, number in counts.items():
        found[int(slot.removeprefix("s"))] = number
    return tuple(found)


def sample_view() -> AgentView:
    stats = AgentStats(top_k=10)
    server = stats.server(SERVER)
    server.classes.add(ClassCounts(SERVER, "1a2b3c4d5e6f7a8b", "SELECT * FROM t WHERE id = ?",
                                   3, 600_000_000, 1, slots(s18=3)))
    waits = server.lock_waits.setdefault(("transactionid", "ShareLock"), Distribution())
    waits.add(300_000_000)
    server.deadlocks = 1
    server.idle_in_txn_ns = 2_500_000_000
    binary = stats.binary(LABEL)
    binary.live[1] = KernelCounts(statements={"simple": 5, "extended": 2, "prepared": 0},
                                  statement_ns=700_000_000, statement_slots=list(slots(s5=4, s18=3)),
                                  emitted=4, lost=1, commits=6, aborts=1, txn_ns=800_000_000,
                                  txn_slots=list(slots(s6=7)))
    binary.retired = KernelCounts(statements={"simple": 10, "extended": 0, "prepared": 0},
                                  statement_ns=1_000_000, statement_slots=list(slots(s5=10)))
    binary.families, binary.probes, binary.attaches = ("query", "locks", "txn"), 19, 2
    stats.events["query"] = 3
    view = ServerView(SERVER, "postgresql", "attached", 4242, "15.18", 5432, "", LABEL.path,
                      ("query", "locks", "txn"))
    return AgentView(stats, [view], [BinaryView(LABEL, "attached")],
                     {"query": 100_000_000, "txn": 0, "locks": 0}, 10)


def scrape(view: AgentView) -> dict[str, list]:
    registry = registry_for(AgentCollector(threading.Lock(), lambda: view))
    text = generate_latest(registry).decode()
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def one(found: dict[str, list], name: str, **labels: str) -> float:
    values = [value for sample_labels, value in found[name]
              if all(sample_labels.get(k) == v for k, v in labels.items())]
    assert len(values) == 1, (name, labels, found.get(name))
    return values[0]


def test_buckets_are_the_kernel_slots_cumulated() -> None:
    assert BUCKET_BOUNDS[:3] == ("1e-06", "2e-06", "4e-06") and BUCKET_BOUNDS[-1] == "67.108864"
    cumulative = buckets(slots(s0=1, s3=2, s40=5))
    assert cumulative[0] == ("1e-06", 1) and cumulative[3] == ("8e-06", 3)
    assert cumulative[-2] == ("67.108864", 3)  # slot 40 lies beyond the last bound shown
    assert cumulative[-1] == ("+Inf", 8)


def test_per_server_class_metrics() -> None:
    found = scrape(sample_view())
    labels = {"db_system": "postgresql", "server": SERVER, "fingerprint": "1a2b3c4d5e6f7a8b"}
    assert one(found, "dbprobe_class_calls_total", **labels) == 3
    assert one(found, "dbprobe_class_seconds_total", **labels) == 0.6
    assert one(found, "dbprobe_class_errors_total", **labels) == 1
    assert one(found, "dbprobe_class_duration_seconds_bucket", le="0.131072", **labels) == 0
    assert one(found, "dbprobe_class_duration_seconds_bucket", le="0.262144", **labels) == 3
    assert one(found, "dbprobe_class_duration_seconds_count", **labels) == 3
    assert one(found, "dbprobe_class_info", query="SELECT * FROM t WHERE id = ?", **labels) == 1


def test_lock_transaction_and_server_metrics() -> None:
    found = scrape(sample_view())
    lock = {"server": SERVER, "lock_kind": "transactionid", "mode": "ShareLock"}
    assert one(found, "dbprobe_lock_waits_total", **lock) == 1
    assert one(found, "dbprobe_lock_wait_seconds_total", **lock) == 0.3
    assert one(found, "dbprobe_lock_wait_duration_seconds_bucket", le="0.524288", **lock) == 1
    assert one(found, "dbprobe_deadlocks_total", server=SERVER) == 1
    assert one(found, "dbprobe_idle_in_transaction_seconds_total", server=SERVER) == 2.5
    assert one(found, "dbprobe_server_info", server=SERVER, db_version="15.18", server_port="5432") == 1
    assert one(found, "dbprobe_server_state", server=SERVER, dbprobe_server_state="attached") == 1
    assert one(found, "dbprobe_server_state", server=SERVER, dbprobe_server_state="error") == 0
    assert one(found, "dbprobe_servers", state="attached") == 1


def test_per_binary_kernel_counts_add_retired_programs() -> None:
    found = scrape(sample_view())
    binary = {"binary": LABEL.path, "db_system": "postgresql"}
    assert one(found, "dbprobe_statements_total", protocol="simple", **binary) == 15
    assert one(found, "dbprobe_statements_total", protocol="extended", **binary) == 2
    assert one(found, "dbprobe_statement_duration_seconds_count", **binary) == 17
    assert one(found, "dbprobe_statement_seconds_total", **binary) == 0.701
    assert one(found, "dbprobe_transactions_total", outcome="commit", **binary) == 6
    assert one(found, "dbprobe_transaction_duration_seconds_bucket", le="6.4e-05", **binary) == 7
    assert one(found, "dbprobe_events_lost_total", **binary) == 1
    assert one(found, "dbprobe_probes", **binary) == 19
    assert one(found, "dbprobe_binary_state", dbprobe_binary_state="attached", **binary) == 1


def test_the_agents_own_state() -> None:
    view = sample_view()
    view.stats.untracked_statements, view.stats.untracked_waits = 7, 2
    found = scrape(view)
    assert one(found, "dbprobe_map_overflows_total", map="classes") == 7
    assert one(found, "dbprobe_map_overflows_total", map="class_waits") == 2
    assert one(found, "dbprobe_threshold_seconds", family="query") == 0.1
    assert one(found, "dbprobe_events_written_total", event="query") == 3
    assert one(found, "dbprobe_config_last_reload_successful") == 1
    assert one(found, "process_cpu_seconds_total") > 0
    assert one(found, "process_resident_memory_bytes") > 1e6


def test_a_class_text_is_cut_and_label_values_are_escaped() -> None:
    view = sample_view()
    text = 'SELECT "a\\b" FROM t WHERE x = ? ' + "AND y = ? " * 200
    view.stats.server(SERVER).classes.add(ClassCounts(SERVER, "ffffffffffffffff", text, 1, 10**9, 0,
                                                      slots(s20=1)))
    [shown] = [labels["query"] for labels, _ in scrape(view)["dbprobe_class_info"]
               if labels["fingerprint"] == "ffffffffffffffff"]
    assert shown == text[:512]


def test_events_carry_the_server(tmp_path: Path) -> None:
    line = with_server('{"event": "query", "pid": 1}', 'a "quoted" dir')
    assert json.loads(line) == {"event": "query", "pid": 1, "server": 'a "quoted" dir'}
    said = []
    path = tmp_path / "events.jsonl"
    sink = EventSink(str(path), said.append)
    assert sink.write(line)
    sink.flush()
    path.rename(tmp_path / "events.jsonl.1")  # logrotate
    sink.reopen(str(path))
    sink.write('{"event": "deadlock"}')
    sink.close()
    assert json.loads(path.read_text()) == {"event": "deadlock"}
    assert said == []


def test_a_failing_event_file_is_said_once(tmp_path: Path) -> None:
    said = []
    sink = EventSink("/dev/full", said.append)
    for _ in range(3):
        sink.write('{"event": "query"}')
        sink.flush()
    assert len(said) == 1 and "No space left on device" in said[0]
    sink.close()


def test_where_each_class_time_went_with_the_breakdown_on() -> None:
    view = sample_view()
    parts = Breakdown(cpu_ns=40_000_000, off_ns={"io": 500_000_000, "lock": 60_000_000},
                      read_bytes=8192 * 100, write_bytes=4096)
    view.stats.server(SERVER).classes.add(ClassCounts(SERVER, "9f8e7d6c5b4a3928", "SELECT sum(x) FROM big",
                                                      2, 600_000_000, 0, slots(s19=2), parts,
                                                      (WaitTime("IO:DataFileRead", 100, 450.0),)))
    found = scrape(view)
    labels = {"db_system": "postgresql", "server": SERVER, "fingerprint": "9f8e7d6c5b4a3928"}
    assert one(found, "dbprobe_class_cpu_seconds_total", **labels) == 0.04
    assert one(found, "dbprobe_class_off_cpu_seconds_total", reason="io", **labels) == 0.5
    assert one(found, "dbprobe_class_off_cpu_seconds_total", reason="lock", **labels) == 0.06
    assert one(found, "dbprobe_class_off_cpu_seconds_total", reason="runq", **labels) == 0
    assert one(found, "dbprobe_class_read_bytes_total", **labels) == 819_200
    assert one(found, "dbprobe_class_write_bytes_total", **labels) == 4096
    assert one(found, "dbprobe_class_wait_events_total", wait_event="IO:DataFileRead", **labels) == 100
    assert one(found, "dbprobe_class_wait_event_seconds_total", wait_event="IO:DataFileRead", **labels) == 0.45
    # A class of a program without the breakdown has no such series.
    without = {"db_system": "postgresql", "server": SERVER, "fingerprint": "1a2b3c4d5e6f7a8b"}
    assert not [value for sample_labels, value in found["dbprobe_class_cpu_seconds_total"]
                if all(sample_labels.get(k) == v for k, v in without.items())]
