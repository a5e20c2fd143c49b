"""The alternative to reading ``wait_event_info`` at each context switch: a hardware
watchpoint on each backend's word, the experiment of the README's "Why this mechanism".

``python -m bench.watchpoint trace PID`` watches every child of the postmaster PID whose
``my_wait_event_info`` points into shared memory (its PGPROC): one perf event of type
PERF_TYPE_BREAKPOINT (a 4-byte write watchpoint) per backend, bound to that backend,
opened as the backend appears (the children are polled), running bench/watchpoint.bpf.c at
each trap. It says "probes attached" on stderr once its program is loaded, and on SIGINT
prints a JSON summary: backends watched, traps, the time each perf_event_open took, the
opens refused and the program's runs and run time. With ``--unwritten`` each backend's
watchpoint is on a word it never writes (the postmaster's own wait_event_info, in the
binary's data): no trap, what the watchpoints cost at context switches alone. The benchmark's ``slow-watchpoint`` configuration runs it beside
``dbprobe slow``.

``python bench/watchpoint.py limits`` starts a throwaway cluster and measures what a trap
costs (this process writing a watched word in a loop, with and without the program) and
the debug registers' limits on this machine: watchpoints on one backend until the kernel refuses
one, CPU-wide watchpoints on CPU 0 until refused (and then whether a backend's still
opens), and pgbench with more clients than there are registers, every backend watched.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bcc import BPF  # noqa: E402
from bcc.perf import Perf  # noqa: E402

from bench.procstat import children_of  # noqa: E402
from dbprobe.binary.elf import ElfBinary  # noqa: E402

HERE = Path(__file__).resolve().parent
PROGRAM = HERE / "watchpoint.bpf.c"
WAIT_POINTER = "my_wait_event_info"
POLL_S = 0.01  # how often the postmaster's children are listed
READY_LINE = "watchpoint: probes attached"

PERF_TYPE_BREAKPOINT = 5
HW_BREAKPOINT_W = 2
HW_BREAKPOINT_LEN_4 = 4
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_SET_BPF = 0x40042408
PERF_FLAG_FD_CLOEXEC = 1 << 3

_libc = ctypes.CDLL(None, use_errno=True)


def open_watchpoint(address: int, *, pid: int = -1, cpu: int = -1, program_fd: int | None = None) -> int:
    """A 4-byte write watchpoint at ``address``, bound to task ``pid`` (-1: every task on
    ``cpu``), running the BPF program at each trap; its perf event descriptor. OSError
    with the kernel's errno when refused (ENOSPC: no debug register left)."""
    attr = Perf.perf_event_attr()
    attr.type = PERF_TYPE_BREAKPOINT
    attr.sample_period = 1
    attr.bp_type = HW_BREAKPOINT_W
    attr.bp_addr = address
    attr.bp_len = HW_BREAKPOINT_LEN_4
    attr.exclude_kernel = 1
    attr.exclude_hv = 1
    attr.disabled = 1
    fd = _libc.syscall(Perf.NR_PERF_EVENT_OPEN, ctypes.byref(attr), pid, cpu, -1,
                       PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))
    try:
        if program_fd is not None:
            _ioctl(fd, PERF_EVENT_IOC_SET_BPF, program_fd)
        _ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
    except OSError:
        os.close(fd)
        raise
    return fd


def _ioctl(fd: int, request: int, argument: int) -> None:
    if _libc.ioctl(fd, request, argument) < 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))


class WaitWord:
    """Where ``my_wait_event_info`` points in a process of one postgres binary."""

    def __init__(self, binary: str) -> None:
        with ElfBinary(binary) as elf:
            symbol = elf.symbol(WAIT_POINTER)
            if symbol is None:
                raise LookupError(f"{binary} has no symbol {WAIT_POINTER}")
            self._pie = elf.is_pie
        self._binary = os.path.realpath(binary)
        self._pointer_vaddr = symbol.address

    def address_in(self, pid: int) -> int:
        """The pointer's value in process ``pid``: the address of its wait_event_info."""
        pointer = self._pointer_vaddr + (self._load_base(pid) if self._pie else 0)
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as memory:
            memory.seek(pointer)
            return int.from_bytes(memory.read(8), "little")

    def _load_base(self, pid: int) -> int:
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 6 and int(fields[2], 16) == 0 and fields[5] == self._binary:
                return int(fields[0].split("-")[0], 16)
        raise LookupError(f"{self._binary} is not mapped in pid {pid}")


class Watcher:
    """Watchpoints on the backends of one postmaster, opened as the backends appear."""

    def __init__(self, postmaster: int, *, unwritten: bool = False) -> None:
        self.postmaster = postmaster
        self.unwritten = unwritten  # watch a word the backends never write instead
        self.words = WaitWord(os.readlink(f"/proc/{postmaster}/exe"))
        self.unset = self.words.address_in(postmaster)  # the postmaster's own, not shared
        self.bpf = BPF(src_file=str(PROGRAM))
        self.program = self.bpf.load_func(b"on_wait_event_write", BPF.PERF_EVENT)
        self.table = self.bpf[b"watched"]
        self.fds: dict[int, int] = {}  # backend pid -> perf event descriptor
        self.open_ns: list[int] = []
        self.refused: dict[int, str] = {}

    def poll(self) -> None:
        children = set(children_of(self.postmaster))
        for pid in children - self.fds.keys() - self.refused.keys():
            self._watch(pid)
        for pid in self.fds.keys() - children:
            os.close(self.fds.pop(pid))

    def _watch(self, pid: int) -> None:
        try:
            word = self.words.address_in(pid)
        except (OSError, LookupError):
            return  # exited, or not yet exec'd into postgres's mappings
        if word == self.unset or word == 0:
            return  # before InitProcess: not yet its PGPROC's word; next poll
        key = self.table.Key(pid)
        entry = self.table.Leaf()
        entry.word = word
        self.table[key] = entry
        watched = self.unset if self.unwritten else word
        started = time.perf_counter_ns()
        try:
            self.fds[pid] = open_watchpoint(watched, pid=pid, program_fd=self.program.fd)
        except OSError as error:
            self.refused[pid] = errno.errorcode.get(error.errno, str(error.errno))
            return
        self.open_ns.append(time.perf_counter_ns() - started)

    def traps(self) -> dict[int, int]:
        return {key.value: leaf.traps for key, leaf in self.table.items()}

    def summary(self) -> dict:
        traps = self.traps()
        opens = sorted(self.open_ns)
        return {"event": "summary", "backends": len(traps), "traps": sum(traps.values()),
                "traps_per_backend": {str(pid): count for pid, count in sorted(traps.items())},
                "open_us_median": round(statistics.median(opens) / 1e3, 1) if opens else None,
                "open_us_max": round(opens[-1] / 1e3, 1) if opens else None,
                "refused": {str(pid): name for pid, name in self.refused.items()},
                **self.program_stats(), "lost_events": 0}

    def program_stats(self) -> dict:
        """The program's runs and run time so far (the kernel's statistics, when on)."""
        text = Path(f"/proc/self/fdinfo/{self.program.fd}").read_text()
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {"bpf_runs": int(fields.get("run_cnt", "0")),
                "bpf_run_ns": int(fields.get("run_time_ns", "0"))}

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()
        self.bpf.cleanup()


def trace(postmaster: int, *, unwritten: bool = False) -> int:
    watcher = Watcher(postmaster, unwritten=unwritten)
    try:
        print(READY_LINE, file=sys.stderr, flush=True)
        try:
            while True:
                watcher.poll()
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            pass
        print(json.dumps(watcher.summary()), flush=True)
    finally:
        watcher.close()
    return 0


# --- the limits of the debug registers --------------------------------------------------

def limits() -> dict:
    from bench import pgbench
    from bench.bpfstats import bpf_stats
    from bench.cluster import BenchServer

    found: dict = {}
    with bpf_stats(), BenchServer(scale=1, warmup_seconds=0) as server:
        watcher = Watcher(server.pid)
        try:
            found["trap_cost_in_this_process"] = _trap_cost(watcher)
            found["on_one_backend"] = _one_backend(server, watcher)
            found["cpu_wide_on_cpu0"] = _cpu_wide(server, watcher)
            found["pgbench_8_clients"] = _many_backends(server, watcher, pgbench)
        finally:
            watcher.close()
    return found


def _idle_backend(server, watcher: Watcher) -> tuple[subprocess.Popen, int]:
    """A psql session sleeping in the server; its backend's pid (a new child whose word is
    its PGPROC's)."""
    before = set(children_of(server.pid))
    session = server.server.run_as_postgres(["psql", "-X", "-q", "-c", "SELECT pg_sleep(20)"],
                                            stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for pid in set(children_of(server.pid)) - before:
            if _cmdline(pid).endswith("SELECT") and watcher.words.address_in(pid) != watcher.unset:
                return session, pid
        time.sleep(0.05)
    session.kill()
    raise RuntimeError("no backend for the psql session")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace").replace("\0", " ").strip()
    except OSError:
        return ""


def _one_backend(server, watcher: Watcher) -> dict:
    """Watchpoints on one backend's word, one after the other, until one is refused."""
    session, pid = _idle_backend(server, watcher)
    word, fds, refused = watcher.words.address_in(pid), [], None
    try:
        while len(fds) < 16 and refused is None:
            try:
                fds.append(open_watchpoint(word, pid=pid))
            except OSError as error:
                refused = errno.errorcode.get(error.errno, str(error.errno))
    finally:
        for fd in fds:
            os.close(fd)
        session.kill()
        session.wait()
    return {"opened": len(fds), "then": refused}


def _cpu_wide(server, watcher: Watcher) -> dict:
    """CPU-wide watchpoints on CPU 0 until refused; then a backend's own watchpoint."""
    session, pid = _idle_backend(server, watcher)
    word, fds, refused = watcher.words.address_in(pid), [], None
    try:
        while len(fds) < 16 and refused is None:
            try:
                fds.append(open_watchpoint(word, cpu=0))
            except OSError as error:
                refused = errno.errorcode.get(error.errno, str(error.errno))
        try:
            os.close(open_watchpoint(word, pid=pid))
            backend = "opened"
        except OSError as error:
            backend = "refused: " + errno.errorcode.get(error.errno, str(error.errno))
    finally:
        for fd in fds:
            os.close(fd)
        session.kill()
        session.wait()
    return {"opened": len(fds), "then": refused, "a backend's while CPU 0 is full": backend}


def _trap_cost(watcher: Watcher, writes: int = 200_000, trials: int = 3) -> dict:
    """ns per write of a 4-byte word by this process: unwatched, watched with no program,
    watched with the program (its map entry in place), trials interleaved; medians."""
    word = ctypes.c_int(0)
    address = ctypes.addressof(word)
    tid = threading.get_native_id()
    entry = watcher.table.Leaf()
    entry.word = address
    watcher.table[watcher.table.Key(tid)] = entry

    def loop() -> float:
        started = time.perf_counter_ns()
        for value in range(writes):
            word.value = value
        return (time.perf_counter_ns() - started) / writes

    def watched(program_fd: int | None) -> float:
        fd = open_watchpoint(address, pid=tid, program_fd=program_fd)
        try:
            return loop()
        finally:
            os.close(fd)

    times: dict[str, list[float]] = {"plain": [], "trap": [], "trap+program": []}
    runs_before = watcher.program_stats()
    for _ in range(trials):
        times["plain"].append(loop())
        times["trap"].append(watched(None))
        times["plain"].append(loop())
        times["trap+program"].append(watched(watcher.program.fd))
    runs = {name: watcher.program_stats()[name] - runs_before[name] for name in runs_before}
    trapped = watcher.traps().get(tid, 0)
    del watcher.table[watcher.table.Key(tid)]
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {"writes_per_trial": writes, "ns_per_write": {k: round(v, 1) for k, v in medians.items()},
            "trap_ns": round(medians["trap"] - medians["plain"]),
            "trap_and_program_ns": round(medians["trap+program"] - medians["plain"]),
            "program_traps_counted": trapped,
            "program_run_ns_per_trap": round(runs["bpf_run_ns"] / runs["bpf_runs"]) if runs["bpf_runs"] else None}


def _many_backends(server, watcher: Watcher, pgbench) -> dict:
    """pgbench -c 8 on the machine's CPUs, every backend watched: do all of them trap?"""
    stop = threading.Event()

    def keep_watching() -> None:
        while not stop.is_set():
            watcher.poll()
            time.sleep(POLL_S)

    poller = threading.Thread(target=keep_watching)
    poller.start()
    try:
        result = pgbench.run_pgbench(server.server, pgbench.Workload("simple", 8, 4))
    finally:
        stop.set()
        poller.join()
    summary = watcher.summary()
    backends = {pid: count for pid, count in summary["traps_per_backend"].items()
                if count > 1000}  # pgbench's, not the auxiliary processes'
    return {"cpus": os.cpu_count(), "backends_watched": summary["backends"],
            "busy_backends": len(backends), "traps_of_busy_backends": sorted(backends.values()),
            "transactions": result.transactions,
            "traps_per_transaction": round(sum(backends.values()) / result.transactions, 2),
            "refused": summary["refused"], "open_us_median": summary["open_us_median"],
            "open_us_max": summary["open_us_max"]}


def main(argv: list[str]) -> int:
    if argv[:1] == ["trace"] and len(argv) in (2, 3) and argv[1].isdigit() \
            and argv[2:] in ([], ["--unwritten"]):
        return trace(int(argv[1]), unwritten=argv[2:] == ["--unwritten"])
    if argv == ["limits"]:
        print(json.dumps(limits(), indent=2))
        return 0
    print("usage: python -m bench.watchpoint trace PID [--unwritten] | limits", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
