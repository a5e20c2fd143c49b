"""Where a statement's time goes: wait events decoded, the record's breakdown, its lines and
JSON, and the wait-event profile's digest."""

from __future__ import annotations

import json
import struct

import pytest

from dbprobe.correlate.fingerprint import fingerprint
from dbprobe.correlate.statements import time_breakdown
from dbprobe.digest.waits import ClassWaitDigest, EventTime, WaitProfile, ranked
from dbprobe.engines.postgresql import wait_events
from dbprobe.engines.registry import engine_for
from dbprobe.kernel import btf
from dbprobe.kernel.records import (QF_BREAKDOWN, WAIT_EVENT_MORE, Breakdown, RawQuery,
                                    decode_query, encode_query)
from dbprobe.model import Query, TimeBreakdown, WaitTime
from dbprobe.render import queries as render
from dbprobe.render import waits as render_waits
from dbprobe.reports.waits import KernelProfile, event_label

PG15 = "15.18"


@pytest.mark.parametrize("info, name", [
    (0x0A000011, "IO:DataFileRead"),
    (0x0A000048, "IO:WALWrite"),
    (0x09000002, "Timeout:PgSleep"),
    (0x06000000, "Client:ClientRead"),
    (0x03000005, "Lock:transactionid"),  # the lock tag type
    (0x03000004, "Lock:tuple"),
    (0x01000008, "LWLock:WALWrite"),  # an individual LWLock
    (0x01000037, "LWLock:WALInsert"),  # a built-in tranche
    (0x01000038, "LWLock:BufferContent"),
    (0x010000A0, "LWLock:extension"),  # an extension's tranche
    (0x04000000, "BufferPin:BufferPin"),
    (0x08000008, "IPC:BufferIO"),
])
def test_wait_events_are_named_as_postgresql_15_names_them(info: int, name: str) -> None:
    assert wait_events.event_name(info, PG15) == name
    assert engine_for("postgresql").wait_event_name(info, PG15) == name


def test_a_version_without_names_shows_the_class_and_the_number() -> None:
    # Names for 12 to 18 are checked in test_wait_event_names.
    assert wait_events.event_name(0x0A000011, "19.1") == "IO:17"
    assert wait_events.event_name(0x03000005, "19.1") == "Lock:transactionid"
    assert wait_events.event_name(0x0C000001, PG15) == "class 0x0c:1"


def _breakdown(**changes) -> Breakdown:
    fields = dict(cpu_ns=12_000_000, off_ns={"io": 1_900_000_000, "lock": 0, "lwlock": 200_000_000,
                                             "client": 0, "runq": 3_000_000, "other": 0},
                  reads=3412, read_bytes=3412 * 8192, read_ns=1_800_000_000,
                  waits=((0x0A000011, 3412, 1_800_000_000), (0x01000037, 20, 200_000_000),
                         (WAIT_EVENT_MORE, 2, 1_000)))
    fields.update(changes)
    return Breakdown(**fields)


def test_the_breakdown_travels_in_the_record_when_its_flag_is_set() -> None:
    raw = RawQuery(pid=1, tid=1, hook=0, start_ns=0, end_ns=2_115_000_000, protocol="simple",
                   flags=QF_BREAKDOWN, text=b"select 1", breakdown=_breakdown())
    assert decode_query(encode_query(raw)) == raw
    without = RawQuery(pid=1, tid=1, hook=0, start_ns=0, end_ns=1, protocol="simple", flags=0,
                       text=b"select 1", breakdown=_breakdown())
    assert decode_query(encode_query(without)).breakdown is None  # no flag: not filled


def test_the_kernels_counts_become_milliseconds_with_named_events() -> None:
    breakdown = time_breakdown(_breakdown(), engine_for("postgresql"), PG15)
    assert (breakdown.cpu_ms, breakdown.io_ms, breakdown.lwlock_ms, breakdown.runq_ms) == (
        12.0, 1900.0, 200.0, 3.0)
    assert breakdown.total_ms == pytest.approx(2115.0)
    assert [wait.event for wait in breakdown.waits] == [
        "IO:DataFileRead", "LWLock:WALInsert", "other wait events"]  # longest first
    assert breakdown.waits[0] == WaitTime("IO:DataFileRead", 3412, 1800.0)


def _query(text: str, breakdown: TimeBreakdown | None, duration_ms: float = 2115.0) -> Query:
    return Query(end=1_700_000_000.0, duration_ms=duration_ms, pid=42, tid=42, ns_pid=None,
                 db="postgresql", database="shop", text=text, fingerprint=fingerprint(text),
                 protocol="simple", mechanism="usdt", error=False, truncated=False,
                 breakdown=breakdown)


def test_the_live_line_carries_a_compact_breakdown() -> None:
    breakdown = time_breakdown(_breakdown(), engine_for("postgresql"), PG15)
    line = render.live_line(_query("select * from t where id = 7", breakdown),
                            show_literals=False, width=None)
    assert ("[cpu 12ms io 1.9s(3412 reads) lock 0 lwlock 200ms runq 3.0ms "
            "top IO:DataFileRead 1.8s] select * from t where id = ?") in line
    plain = render.live_line(_query("select 1", None), show_literals=False, width=None)
    assert "[" not in plain


@pytest.mark.parametrize("ms, text", [(0.0, "0"), (0.01, "0"), (0.3, "0.3ms"), (12.4, "12ms"),
                                      (999.0, "999ms"), (1900.0, "1.9s")])
def test_short_durations(ms: float, text: str) -> None:
    assert render.short_ms(ms) == text


def test_the_json_event_gains_the_breakdown() -> None:
    breakdown = time_breakdown(_breakdown(), engine_for("postgresql"), PG15)
    event = json.loads(render.query_json(_query("select 1", breakdown), show_literals=False))
    assert (event["cpu_ms"], event["io_ms"], event["lock_ms"], event["lwlock_ms"],
            event["other_ms"], event["runq_ms"], event["client_ms"]) == (12.0, 1900.0, 0.0, 200.0,
                                                                          0.0, 3.0, 0.0)
    assert (event["reads"], event["read_bytes"], event["write_bytes"]) == (3412, 3412 * 8192, 0)
    assert event["waits"][0] == {"event": "IO:DataFileRead", "count": 3412, "ms": 1800.0}
    plain = json.loads(render.query_json(_query("select 1", None), show_literals=False))
    assert "cpu_ms" not in plain and "waits" not in plain


def test_the_profile_sums_classes_and_names_spans_outside_events() -> None:
    digest = ClassWaitDigest()
    breakdown = time_breakdown(_breakdown(), engine_for("postgresql"), PG15)
    for text in ("select * from t where id = 1", "select * from t where id = 2"):
        digest.add(_query(text, breakdown))
    digest.add(_query("select 2", None))  # no breakdown: not in the profile
    (item,) = digest.ranked()
    assert (item.calls, item.total_ms, item.parts_ms["io"]) == (2, 4230.0, 3800.0)
    assert item.events["IO:DataFileRead"].count == 2 * 3412

    grown = KernelProfile({0x0A000011: (10, 5_000_000), 0xFF000000: (3, 1_000_000)}) - KernelProfile(
        {0x0A000011: (4, 1_000_000)})
    assert grown.sums == {0x0A000011: (6, 4_000_000), 0xFF000000: (3, 1_000_000)}
    assert event_label(0xFF000000, "postgresql", PG15) == "(io, no wait event)"
    assert event_label(0xFF000004, "mariadb", None) == "(runq, no wait event)"
    events = {event_label(key, "postgresql", PG15): EventTime(count, ns / 1e6)
              for key, (count, ns) in grown.sums.items()}
    profile = WaitProfile(1_700_000_000.0, 1_700_000_010.0, ranked(events), digest.ranked())
    text = render_waits.digest_text(profile, width=None)
    assert "IO:DataFileRead" in text and "(io, no wait event)" in text
    assert "select * from t where id = ?" in text
    summary = json.loads(render_waits.summary_json(profile))
    assert summary["waits"][0] == {"event": "IO:DataFileRead", "count": 6, "ms": 4.0}
    assert summary["classes"][0]["calls"] == 2 and summary["total_ms"] == 5.0


def _btf(*types: bytes, strings: bytes) -> bytes:
    body = b"".join(types)
    return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(body), len(body), len(strings)) + body + strings


def test_a_struct_members_offset_is_read_from_btf() -> None:
    strings = b"\0int\0task_struct\0state\0pid\0"
    int_type = struct.pack("<III", 1, 1 << 24, 4) + struct.pack("<I", 32)  # INT, then its 4 bytes
    task = struct.pack("<III", 5, (4 << 24) | 2, 16) + struct.pack("<III", 17, 1, 0) + struct.pack(
        "<III", 23, 1, 96)  # STRUCT of two members: state at bit 0, pid at bit 96
    data = _btf(int_type, task, strings=strings)
    assert btf._member_offset(data, "task_struct", "pid") == 12
    assert btf._member_offset(data, "task_struct", "tgid") is None
    assert btf._member_offset(b"\0" * 24, "task_struct", "pid") is None  # not BTF
