"""Following servers past replaced binaries and unknown databases, without BPF: the trace
set that reads several programs as one, the reattacher's bookkeeping, database names looked
up on a miss (bounded), and pg_database's pages as the server writes them."""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

import pytest

from dbprobe.discover.backends import LOOKUP_EVERY_S, DatabaseNames
from dbprobe.discover.processes import ServerProcess
from dbprobe.engines.postgresql import catalog
from dbprobe.errors import DbprobeError
from dbprobe.kernel.maps import KernelTotals, LatencyHistogram, QueryCounters, TxnTotals
from dbprobe.kernel.records import HIST_SLOTS, RawQuery
from dbprobe.kernel.reattach import Reattacher
from dbprobe.kernel.traceset import TraceSet
from dbprobe.model import Source

POSTGRES = "/usr/lib/postgresql/15/bin/postgres"


# -- database names looked up on a miss ---------------------------------------------------------


def test_an_unknown_oid_is_looked_up_once_per_interval() -> None:
    now = [0.0]
    asked = []
    names = DatabaseNames(clock=lambda: now[0])
    names.add_lookup(POSTGRES, lambda oid: asked.append(oid) or None)
    for _ in range(1000):  # a storm of events of a database that cannot be named
        assert names.resolve(POSTGRES, 16384, None) is None
    assert asked == [16384]
    now[0] += LOOKUP_EVERY_S
    assert names.resolve(POSTGRES, 16384, None) is None
    assert asked == [16384, 16384]


def test_a_name_found_is_kept_and_a_live_backend_is_not_looked_up() -> None:
    asked = []
    names = DatabaseNames()
    names.add_lookup(POSTGRES, lambda oid: asked.append(oid) or "created_since")
    assert names.resolve(POSTGRES, 16384, None) == "created_since"
    assert names.resolve(POSTGRES, 16384, None) == "created_since"
    assert names.resolve(POSTGRES, 5, "postgres") == "postgres"
    assert names.resolve("/other/postgres", 16384, None) is None  # no lookup for that binary
    assert asked == [16384]


# -- pg_database's files ------------------------------------------------------------------------


def database_tuple(oid: int, name: str, *, xmax: int = 0, infomask: int = 0) -> bytes:
    # t_xmin, t_xmax, t_cid, t_ctid (6 bytes), t_infomask2, t_infomask, t_hoff = 24, padding
    header = (struct.pack("<III", 700, xmax, 0) + b"\0" * 6 + struct.pack("<HHB", 14, infomask, 24)
              + b"\0")
    columns = struct.pack("<I", oid) + name.encode().ljust(catalog.NAMEDATALEN, b"\0") + \
        struct.pack("<Ii", 10, 6)  # datdba, encoding (UTF8)
    return header + columns


def heap_page(*tuples: bytes) -> bytes:
    page = bytearray(catalog.PAGE_SIZE)
    upper = catalog.PAGE_SIZE
    for index, item in enumerate(tuples):
        upper -= len(item) + (-len(item) % 8)
        page[upper:upper + len(item)] = item
        struct.pack_into("<I", page, 24 + 4 * index, upper | (1 << 15) | (len(item) << 17))
    struct.pack_into("<HH", page, 12, 24 + 4 * len(tuples), upper)
    return bytes(page)


def test_the_live_tuple_of_an_oid_names_it(tmp_path) -> None:
    path = tmp_path / "1262"
    path.write_bytes(heap_page(database_tuple(5, "postgres"),
                               database_tuple(16384, "old_name", xmax=800),  # renamed since
                               database_tuple(16384, "new_name"),
                               database_tuple(16390, "aborted", infomask=catalog.HEAP_XMIN_INVALID)))
    assert catalog._name_in_heap(path, 5) == "postgres"
    assert catalog._name_in_heap(path, 16384) == "new_name"
    assert catalog._name_in_heap(path, 16390) is None
    assert catalog._name_in_heap(path, 1) is None
    assert catalog._name_in_heap(tmp_path / "missing", 5) is None


WAL_PAGE = 8192
WAL_SEGMENT = 4 * WAL_PAGE
SEGMENTS_PER_LOG = 2**32 // WAL_SEGMENT


def wal_segment(directory, number: int, body: bytes, *, lived_as: int | None = None,
                written_pages: int = 4) -> None:
    """A WAL segment file named for segment `number` whose pages hold `body` after their
    headers; their addresses are those of `lived_as` (a segment renamed for reuse), and
    those of an older life after `written_pages` (where the server's writing stopped)."""
    address = (number if lived_as is None else lived_as) * WAL_SEGMENT
    data, at = bytearray(), 0
    for page in range(WAL_SEGMENT // WAL_PAGE):
        page_address = address + page * WAL_PAGE if page < written_pages else page * WAL_PAGE
        first = page == 0
        header = struct.pack("<HHIQI4x", 0xD110, catalog.XLP_LONG_HEADER if first else 0, 1,
                             page_address, 0)
        if first:
            header += struct.pack("<QII", 7, WAL_SEGMENT, WAL_PAGE)
        room = WAL_PAGE - len(header)
        data += header + body[at:at + room].ljust(room, b"\0")
        at += room
    name = f"{1:08X}{number // SEGMENTS_PER_LOG:08X}{number % SEGMENTS_PER_LOG:08X}"
    (directory / name).write_bytes(bytes(data))


@pytest.fixture
def wal(tmp_path):
    directory = tmp_path / "pg_wal"
    directory.mkdir()
    (directory / "archive_status").mkdir()
    return directory


def test_the_wal_names_a_database_created_since_the_last_checkpoint(wal) -> None:
    noise = struct.pack("<I", 16384) + b"\x01\x02" + b"\0" * 200  # the OID as a block's database
    wal_segment(wal, 1, b"x" * 100 + database_tuple(16384, "older"))
    wal_segment(wal, 2, noise + database_tuple(16384, "created_since") + b"\0" * 100)
    assert catalog._name_in_wal(wal, 16384) == "created_since"
    assert catalog._name_in_wal(wal, 16385) is None


def test_segments_kept_for_reuse_and_a_segments_unwritten_pages_are_not_read(wal) -> None:
    # A checkpoint renamed segments 0 and 1 to the names of 3 and 4, old contents and all.
    wal_segment(wal, 2, database_tuple(16384, "created_since").ljust(WAL_PAGE * 2, b"\0")
                + database_tuple(16384, "stale_tail"), written_pages=2)
    wal_segment(wal, 3, database_tuple(16384, "dropped_long_ago"), lived_as=0)
    wal_segment(wal, 4, database_tuple(16385, "dropped_too"), lived_as=1)
    assert catalog._name_in_wal(wal, 16384) == "created_since"
    assert catalog._name_in_wal(wal, 16385) is None


def test_a_tuple_split_over_pages_or_segments_is_whole(wal) -> None:
    across_pages = database_tuple(16384, "across_pages")
    wal_segment(wal, 5, b"\1" * (WAL_PAGE - 40 - 40) + across_pages)
    across_segments = database_tuple(16385, "across_segments")
    end_of_body = WAL_SEGMENT - 40 - 3 * 24
    wal_segment(wal, 6, b"\1" * (end_of_body - 50) + across_segments[:50])
    wal_segment(wal, 7, across_segments[50:])
    assert catalog._name_in_wal(wal, 16384) == "across_pages"
    assert catalog._name_in_wal(wal, 16385) == "across_segments"


def test_a_name_column_is_printable_text_padded_with_nuls() -> None:
    assert catalog._name_at(b"abc".ljust(64, b"\0"), 0) == "abc"
    assert catalog._name_at(b"abc".ljust(63, b"\0") + b"x", 0) is None
    assert catalog._name_at(b"\x1b[31m".ljust(64, b"\0"), 0) is None
    assert catalog._name_at(b"\xff\xfe".ljust(64, b"\0"), 0) is None
    assert catalog._name_at(b"short", 0) is None


# -- the trace set ------------------------------------------------------------------------------


@dataclass
class FakeCollector:
    totals_: KernelTotals
    polled: list = field(default_factory=list)

    def poll(self, timeout_ms: int) -> None:
        self.polled.append(("poll", timeout_ms))

    def drain(self) -> None:
        self.polled.append(("drain",))

    def totals(self) -> KernelTotals:
        return self.totals_

    def query_counters(self) -> QueryCounters:
        histogram = LatencyHistogram.empty()
        first = next(iter(histogram.slots))
        histogram.slots[first] = (self.totals_.queries,) + (0,) * (HIST_SLOTS - 1)
        return QueryCounters(self.totals_, histogram)

    def txn_totals(self) -> TxnTotals:
        return TxnTotals(self.totals_.queries, 0, 0, (1,) * HIST_SLOTS)

    def last_statement(self, pid: int):
        return None


class FakeTrace:
    def __init__(self, queries: int):
        self.targets, self.plans = [], []
        self.sources = {0: Source("postgresql", POSTGRES, "usdt"), 1: Source("postgresql", POSTGRES, "usdt")}
        self.versions = {0: "15.18", 1: "15.18"}
        self.backends, self.databases = object(), DatabaseNames()
        self.probes_attached, self.started = 4, time.time()
        self.collector = FakeCollector(KernelTotals(queries=queries, slow=queries))
        self.handlers = {}
        self.closed = 0

    def on(self, record_type, handler) -> None:
        self.handlers[record_type] = handler

    def describe(self) -> list[str]:
        return ["first"]

    def close(self) -> None:
        self.closed += 1


def raw_query(hook: int) -> RawQuery:
    return RawQuery(pid=10, tid=10, hook=hook, start_ns=0, end_ns=1, protocol="simple", flags=0,
                    text=b"select 1", database_oid=5)


def test_records_of_a_trace_added_later_reach_the_handlers_with_their_own_sources() -> None:
    first, added = FakeTrace(3), FakeTrace(4)
    traces = TraceSet(first)
    seen = []
    traces.on(RawQuery, seen.append)
    traces.add(added)
    first.handlers[RawQuery](raw_query(1))
    added.handlers[RawQuery](raw_query(1))
    assert [record.hook for record in seen] == [1, 3]  # the added program's hooks moved past
    assert sorted(traces.sources) == [0, 1, 2, 3] and sorted(traces.versions) == [0, 1, 2, 3]
    assert traces.collector.totals().queries == 7
    assert traces.collector.query_counters().histogram.total == 7
    assert traces.collector.txn_totals().commits == 7
    assert traces.collector.txn_totals().histogram == (2,) * HIST_SLOTS
    traces.collector.poll(200)
    assert added.collector.polled == [("poll", 200)] and first.collector.polled == [("drain",)]
    traces.close_added()
    assert (first.closed, added.closed) == (0, 1)  # the first is its owner's to close


# -- the reattacher -----------------------------------------------------------------------------


def server(pid: int, binary: str = "/proc/self/exe") -> ServerProcess:
    return ServerProcess(db="postgresql", pid=pid, binary=binary, binary_in_root=POSTGRES,
                         version="15.18", processes=(pid,), container=None, ns_pid=None,
                         data_dir="/data", port=None, user="postgres")


def test_a_new_file_is_attached_once_and_its_trace_joins_the_set() -> None:
    traces = TraceSet(FakeTrace(0))
    added = FakeTrace(1)
    opened, messages, learned = [], [], []
    reattacher = Reattacher(traces, request=None, warn=messages.append,
                            on_attached=lambda *args: learned.append(args),
                            opener=lambda target, request: opened.append(target) or added)
    reattacher.follow(server(11))
    reattacher.follow(server(12))  # the same file: one program serves both
    reattacher.close()  # waits for the attach under way
    assert len(opened) == 1 and opened[0].servers[0].pid == 11
    assert added.closed == 1  # finished but never added: detached on close
    assert messages == [] and learned == []


def test_an_attach_that_finished_is_said_and_one_that_failed_too() -> None:
    traces = TraceSet(FakeTrace(0))
    added = FakeTrace(1)
    messages, learned = [], []

    def opener(target, request):
        if target.servers[0].binary == "/proc/self/exe":
            return added
        raise DbprobeError("the BPF program did not compile: boom")

    reattacher = Reattacher(traces, request=None, warn=messages.append,
                            on_attached=lambda *args: learned.append(args), opener=opener)
    reattacher.follow(server(11))
    reattacher.follow(server(12, binary="/proc/self/cwd"))
    deadline = time.monotonic() + 10
    while len(messages) < 2 and time.monotonic() < deadline:
        reattacher.poll()
        time.sleep(0.01)
    reattacher.close()
    assert messages == [
        f"PostgreSQL server pid 11 is traced again: attached 4 probes to the new {POSTGRES} (version 15.18)",
        f"cannot attach to the new {POSTGRES}: the BPF program did not compile: boom; PostgreSQL "
        f"server pid 12 is not traced: run dbprobe again to trace it"]
    assert traces.traces[-1] is added and learned[0][:2] == ("postgresql", POSTGRES)
    assert added.closed == 0  # the trace set's to close now
