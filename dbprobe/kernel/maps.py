"""Reading what the kernel side produced: ring-buffer records and the counting maps."""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass, fields, replace
from typing import Callable

from dbprobe.errors import DbprobeError

from dbprobe.kernel.records import (HIST_SLOTS, OFF_CPU_CLASSES, PROTOCOLS, Breakdown, RawQuery,
                                    decode)

_NS_PER_US = 1000


@dataclass(frozen=True, slots=True)
class KernelTotals:
    """Counters summed over CPUs since the programs were loaded."""

    queries: int = 0
    query_ns: int = 0
    emitted: int = 0
    lost: int = 0
    slow: int = 0  # statements at or over the query threshold, whether or not delivered

    def __sub__(self, earlier: "KernelTotals") -> "KernelTotals":
        return KernelTotals(*(getattr(self, f.name) - getattr(earlier, f.name) for f in fields(self)))


@dataclass(frozen=True, slots=True)
class LatencyHistogram:
    """Counts of statements per log2 bucket of microseconds, per protocol."""

    slots: dict[str, tuple[int, ...]]

    @classmethod
    def empty(cls) -> "LatencyHistogram":
        return cls({protocol: (0,) * HIST_SLOTS for protocol in PROTOCOLS})

    def __sub__(self, earlier: "LatencyHistogram") -> "LatencyHistogram":
        return LatencyHistogram({
            protocol: tuple(a - b for a, b in zip(counts, earlier.slots[protocol]))
            for protocol, counts in self.slots.items()
        })

    def combined(self) -> tuple[int, ...]:
        return tuple(sum(column) for column in zip(*self.slots.values()))

    @property
    def total(self) -> int:
        return sum(self.combined())


@dataclass(frozen=True, slots=True)
class QueryCounters:
    """The query family's counters: totals and the latency histogram of every statement."""

    totals: KernelTotals
    histogram: LatencyHistogram

    @classmethod
    def empty(cls) -> "QueryCounters":
        return cls(KernelTotals(), LatencyHistogram.empty())

    def __sub__(self, earlier: "QueryCounters") -> "QueryCounters":
        return QueryCounters(self.totals - earlier.totals, self.histogram - earlier.histogram)


@dataclass(frozen=True, slots=True)
class ClassKey:
    """A statement class as the kernel keys it (probes/classes.h)."""

    server: int  # PostgreSQL: the postmaster's pid; MySQL: the server's
    database_oid: int  # PostgreSQL: the database; 0 when unknown
    hash: int


@dataclass(frozen=True, slots=True)
class ClassStats:
    """What the kernel counted of one statement class."""

    calls: int
    total_ns: int
    max_ns: int
    errors: int
    slow: int  # calls at or over the query threshold
    slots: tuple[int, ...]  # calls per log2 slot of microseconds, HIST_SLOTS of them
    # With the breakdown on: where its statements' time went, summed over `timed` of them
    # (every one, unless the kernel's table of threads was full).
    breakdown: Breakdown | None = None
    timed: int = 0

    def __add__(self, other: "ClassStats") -> "ClassStats":
        return ClassStats(self.calls + other.calls, self.total_ns + other.total_ns,
                          max(self.max_ns, other.max_ns), self.errors + other.errors,
                          self.slow + other.slow, tuple(a + b for a, b in zip(self.slots, other.slots)),
                          _summed(self.breakdown, other.breakdown), self.timed + other.timed)

    def __sub__(self, earlier: "ClassStats") -> "ClassStats":
        slots = tuple(a - b for a, b in zip(self.slots, earlier.slots))
        breakdown = (self.breakdown - earlier.breakdown
                     if self.breakdown is not None and earlier.breakdown is not None else self.breakdown)
        return ClassStats(self.calls - earlier.calls, self.total_ns - earlier.total_ns,
                          _max_since(self, earlier, slots), self.errors - earlier.errors,
                          self.slow - earlier.slow, slots, breakdown, self.timed - earlier.timed)


def _summed(one: Breakdown | None, other: Breakdown | None) -> Breakdown | None:
    if one is None or other is None:
        return one if other is None else other
    return one + other


def _max_since(now: ClassStats, earlier: ClassStats, slots: tuple[int, ...]) -> int:
    """The longest call since ``earlier``. The kernel keeps the longest since it started:
    when that grew, it is this window's; else this window's is at most the top of its
    highest slot (and at most the longest ever)."""
    if now.max_ns > earlier.max_ns:
        return now.max_ns
    used = [slot for slot, count in enumerate(slots) if count]
    if not used:
        return 0
    return min(now.max_ns, (1 << used[-1]) * _NS_PER_US)


@dataclass(frozen=True, slots=True)
class ClassCounters:
    """The class map as it stood when read, and its overflow counters."""

    classes: dict[ClassKey, ClassStats]
    untracked: int = 0  # statements of a class the full map had no room for
    samples_deferred: int = 0  # samples the full ring buffer refused (sent again later)
    waits_untracked: int = 0  # a class's wait events the full class_waits map had no room for

    @classmethod
    def empty(cls) -> "ClassCounters":
        return cls({})

    def __sub__(self, earlier: "ClassCounters") -> "ClassCounters":
        grown = {}
        for key, stats in self.classes.items():
            before = earlier.classes.get(key)
            delta = stats if before is None else stats - before
            if delta.calls:
                grown[key] = delta
        return ClassCounters(grown, self.untracked - earlier.untracked,
                             self.samples_deferred - earlier.samples_deferred,
                             self.waits_untracked - earlier.waits_untracked)


@dataclass(frozen=True, slots=True)
class TxnTotals:
    """What the kernel counted of every transaction, whatever its duration."""

    commits: int
    aborts: int
    total_ns: int
    histogram: tuple[int, ...]

    @classmethod
    def empty(cls) -> "TxnTotals":
        return cls(0, 0, 0, (0,) * HIST_SLOTS)

    def __sub__(self, earlier: "TxnTotals") -> "TxnTotals":
        return TxnTotals(self.commits - earlier.commits, self.aborts - earlier.aborts,
                         self.total_ns - earlier.total_ns,
                         tuple(a - b for a, b in zip(self.histogram, earlier.histogram)))


@dataclass(frozen=True, slots=True)
class LastStatement:
    """What the kernel side kept of a backend's current or last statement."""

    text: str
    start_ns: int
    end_ns: int  # when the backend went idle after it; 0 while it runs
    idle_state: int = 0  # the state it went idle in (PostgreSQL's BackendState); 0 before one


@dataclass(frozen=True, slots=True)
class LWLockTotals:
    """LWLock waits counted in the kernel for one tranche and mode."""

    tranche_address: int  # where the tranche's name is in the server's memory
    mode: int
    waits: int
    total_ns: int
    max_ns: int


class Collector:
    """Delivers ring-buffer records to a callback and reads the kernel's counters."""

    def __init__(self, bpf, on_record: Callable[[RawQuery], None]):
        self._bpf = bpf
        self._on_record = on_record
        self._failure: BaseException | None = None
        self._checked: set[str] = set()
        bpf["events"].open_ring_buffer(self._deliver)

    def _deliver(self, _ctx, data, size) -> int:
        # An exception cannot cross the C callback: keep it, stop this poll, raise after.
        try:
            record = decode(data, size)
            if record is not None:
                self._on_record(record)
            return 0
        except BaseException as error:
            self._failure = error
            return -1

    def poll(self, timeout_ms: int) -> None:
        """Wait up to timeout_ms for records and deliver all that are ready."""
        self._bpf.ring_buffer_poll(timeout_ms)
        self._raise_failure()

    def drain(self) -> None:
        """Deliver what is already in the ring buffer without waiting."""
        self._bpf.ring_buffer_consume()
        self._raise_failure()

    def _raise_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def totals(self) -> KernelTotals:
        return KernelTotals(**self.summed("totals"))

    def table(self, name: str):
        """A map, once its BCC mirror is checked to be the size of the kernel's values: a
        mirror that is smaller (BCC cannot size some C types) would be overrun by a read."""
        bpf_table = self._bpf[name]
        if name not in self._checked:
            # A per-CPU map's Leaf is one value per CPU; sLeaf is the value.
            mirrored = ctypes.sizeof(getattr(bpf_table, "sLeaf", bpf_table.Leaf))
            kernel = map_value_size(bpf_table.map_fd)
            if kernel is not None and mirrored != kernel:
                raise DbprobeError(f"map {name}: BCC mirrors its values in {mirrored} bytes, "
                                   f"the kernel keeps {kernel}")
            self._checked.add(name)
        return bpf_table

    def lookup(self, table: str, key: int):
        """A map's value for an integer key, as BCC's ctypes leaf; None when absent."""
        bpf_table = self.table(table)
        try:
            return bpf_table[bpf_table.Key(key)]
        except KeyError:
            return None

    def items(self, table: str) -> list:
        """A hash map's (key, value) pairs, as BCC's ctypes objects."""
        return list(self.table(table).items())

    def counts(self, table: str, slots: int) -> tuple[int, ...]:
        """A per-CPU array of counters, summed over CPUs."""
        bpf_table = self.table(table)
        return tuple(sum(bpf_table.getvalue(bpf_table.Key(index))) for index in range(slots))

    def summed(self, table: str) -> dict[str, int]:
        """Slot 0 of a per-CPU array of structs of counters, each field summed over CPUs."""
        bpf_table = self.table(table)
        per_cpu = bpf_table.getvalue(bpf_table.Key(0))
        return {name: sum(getattr(cpu, name) for cpu in per_cpu) for name, _ in per_cpu[0]._fields_}

    def query_counters(self) -> QueryCounters:
        return QueryCounters(self.totals(), self.histogram())

    def txn_totals(self) -> TxnTotals:
        counters = self.summed("txn_totals")
        return TxnTotals(counters["commits"], counters["aborts"], counters["total_ns"],
                         self.counts("txn_hist", HIST_SLOTS))

    def last_statement(self, pid: int) -> LastStatement | None:
        """A PostgreSQL backend's current or last statement, as its slot keeps it."""
        slot = self.lookup("pg_backends", pid)
        if slot is None:
            return None
        text = bytes(slot.ev.text)[: min(slot.ev.text_len, len(slot.ev.text))]
        return LastStatement(text=text.decode("utf-8", errors="replace"), start_ns=slot.ev.start_ns,
                             end_ns=slot.end_ns, idle_state=slot.idle_state)

    def lwlock_totals(self) -> list[LWLockTotals]:
        return [LWLockTotals(key.tranche, key.mode, value.waits, value.total_ns, value.max_ns)
                for key, value in self.items("pg_lwlock_totals")]

    def class_counters(self) -> ClassCounters:
        """Every statement class the kernel counted, and what it could not count."""
        table = self.table("classes")
        read = getattr(table, "items_lookup_batch", None)
        try:
            pairs = list(read()) if read is not None else list(table.items())
        except Exception:  # a kernel without batch lookups of hash maps
            pairs = list(table.items())
        waits = self._class_waits()
        classes = {}
        for key, value in pairs:
            class_key = ClassKey(key.server, key.database, key.hash)
            breakdown, timed = _class_time(value)
            if breakdown is not None and class_key in waits:
                breakdown = replace(breakdown, waits=tuple(waits[class_key]))
            classes[class_key] = ClassStats(value.calls, value.total_ns, value.max_ns, value.errors,
                                            value.slow, tuple(value.hist), breakdown, timed)
        counts = self.summed("class_counts")
        return ClassCounters(classes, counts["untracked"], counts["samples_deferred"],
                             counts["waits_untracked"])

    def _class_waits(self) -> dict[ClassKey, list[tuple[int, int, int]]]:
        """Each class's (wait event, count, ns), with the breakdown on (class_waits)."""
        found: dict[ClassKey, list[tuple[int, int, int]]] = {}
        if not self._has("class_waits"):
            return found
        for key, value in self.table("class_waits").items():
            found.setdefault(ClassKey(key.server, key.database, key.hash), []).append(
                (key.event, value.count, value.ns))
        return found

    def delete_classes(self, keys) -> None:
        """Forget classes (idle ones): a class seen again starts afresh, its sample sent again."""
        table = self.table("classes")
        for key in keys:
            try:
                del table[table.Key(key.hash, key.server, key.database_oid)]
            except KeyError:
                pass
        if self._has("class_waits"):
            waits, forgotten = self.table("class_waits"), set(keys)
            for wait_key in [k for k in waits.keys()
                             if ClassKey(k.server, k.database, k.hash) in forgotten]:
                try:
                    del waits[wait_key]
                except KeyError:
                    pass

    def _has(self, table: str) -> bool:
        try:
            self._bpf[table]
        except KeyError:
            return False
        return True

    def histogram(self) -> LatencyHistogram:
        counts = self.counts("query_hist", len(PROTOCOLS) * HIST_SLOTS)
        return LatencyHistogram({
            protocol: tuple(counts[number * HIST_SLOTS:(number + 1) * HIST_SLOTS])
            for number, protocol in enumerate(PROTOCOLS)
        })


def _class_time(value) -> tuple[Breakdown | None, int]:
    """A class's summed breakdown and how many statements it sums, when the program counts
    one (probes/classes.h, struct dbp_class_time)."""
    time = getattr(value, "time", None)
    if time is None:
        return None, 0
    breakdown = Breakdown(cpu_ns=time.cpu_ns, off_ns=dict(zip(OFF_CPU_CLASSES, time.off_ns)),
                          reads=time.reads, read_bytes=time.read_bytes, read_ns=time.read_ns,
                          writes=time.writes, write_bytes=time.write_bytes, write_ns=time.write_ns,
                          workers=time.workers, workers_cpu_ns=time.workers_cpu_ns,
                          workers_io_ns=time.workers_io_ns, workers_read_bytes=time.workers_read_bytes)
    return breakdown, time.statements


def map_value_size(fd: int) -> int | None:
    """The size of a BPF map's values, as the kernel tells it in the map fd's fdinfo."""
    try:
        with open(f"/proc/self/fdinfo/{fd}") as info:
            found = re.search(r"^value_size:\s*(\d+)", info.read(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) if found else None
