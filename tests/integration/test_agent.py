"""``dbprobe agent`` for real: one agent runs through the whole module, a real Prometheus
scrapes it, and the servers around it start, restart, crash, stop, get upgraded and appear.

Every server here runs from a private copy of its server's files (a PostgreSQL tree copied
with its USDT probes, a copy of mariadbd), and the agent follows only that copy
(``binaries``): the other servers and tracers of the machine are left alone. Its query
threshold is 0, so the per-class counts see every statement (until the kernel counts
statements by class, only those at or over the threshold reach user space). The tests run
in order; each fault test ends with a statement traced after the fault, seen both as an
event and in the metrics.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from dbprobe.binary.elf import ElfBinary
from dbprobe.correlate.fingerprint import fingerprint
from dbprobe.demo.server import ThrowawayPostgres, find_program, installed_postgres_bindir
from dbprobe.discover.processes import identify_binary
from dbprobe.kernel.program import Parameters, build_program
from dbprobe.recipes.bind import plan_family
from dbprobe.recipes.load import load_recipe
from tests.support.mariadb import SBIN_DIRS, ThrowawayMariaDB
from tests.support.agent import (AgentProcess, Prometheus, copy_postgres_tree, perf_event_fds,
                                 read_events, replace_file_with_copy, uprobe_events_of, wait_for)
from tests.support.sdtbin import compile_c
from tests.support.tracing import semaphore_value

REPOSITORY = Path(__file__).resolve().parents[2]
DASHBOARD = REPOSITORY / "docker" / "grafana" / "dbprobe.json"
ATTACH_TIMEOUT_S = 120.0  # compiling a program takes seconds, more on a busy machine
SLOW = "SELECT pg_sleep(0.2)"
SLOW_CLASS = fingerprint(SLOW).id
FAST_CLASS = fingerprint("SELECT count(*) FROM agent_fast WHERE id = 1").id
WAITER = "UPDATE agent_accounts SET balance = balance + 1 WHERE id = 1"
N_SLOW, M_FAST, K_WAITS = 6, 200, 3
HOLD_S = 0.3


def full_probes(binary_path: str) -> int:
    """The probes one program of query, locks and txn attaches to a PostgreSQL binary."""
    binary = ElfBinary(binary_path)
    recipe = load_recipe("postgresql")
    version = identify_binary(binary_path)[1]
    plans = [plan_family(recipe, family, binary, version) for family in ("query", "locks", "txn")]
    return sum(len(hook.sites) for hook in build_program(plans, Parameters()).hooks)


FULL_PROBES = full_probes(str(installed_postgres_bindir() / "postgres"))
# With breakdown = true a program also holds a perf event for the entry and the exit of each
# file call it follows (probes/waits.h), beside its uprobes.
BREAKDOWN_TRACEPOINTS = 2 * len(re.findall(r"^WAITS_SYSCALL\(", (REPOSITORY / "probes" / "waits.h").read_text(),
                                           re.M))


@pytest.fixture(scope="module")
def root():
    if os.geteuid() != 0:
        pytest.skip("needs root and BPF (CI runs as root)")
    path = Path(tempfile.mkdtemp(prefix="dbprobe-agent-test-"))
    path.chmod(0o755)  # the servers' OS users run programs from it
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_bindir(root: Path) -> Path:
    return copy_postgres_tree(root / "pg")


def agent_config(root: Path, pg_bindir: Path, **overrides: str) -> str:
    values = {"top_k": "20", "query": '"0"', "breakdown": "true", **overrides}
    return f'''
listen = "127.0.0.1:0"
events = "{root / 'events.jsonl'}"
binaries = ["{root}/*"]
watch = ["{pg_bindir / 'postgres'}"]
top_k = {values['top_k']}
breakdown = {values['breakdown']}
detach_after = "3s"
[thresholds]
query = {values['query']}
txn = "0"
locks = "0"
'''


@pytest.fixture(scope="module")
def agent(root: Path, pg_bindir: Path):
    config = root / "agent.toml"
    config.write_text(agent_config(root, pg_bindir))
    running = AgentProcess(["agent", "--config", str(config)], config)
    try:
        wait_for(lambda: running.value("dbprobe_binary_state", binary=str(pg_bindir / "postgres"),
                                       dbprobe_binary_state="attached"),
                 ATTACH_TIMEOUT_S, f"the watched binary was not attached:\n{running.stderr}")
        yield running
    finally:
        running.kill()


@pytest.fixture(scope="module")
def prometheus(root: Path, agent: AgentProcess):
    workdir = root / "prometheus"
    workdir.mkdir()
    server = Prometheus(workdir, [agent.address])
    try:
        wait_for(server.targets_up, 30, "Prometheus did not scrape the agent")
        yield server
    finally:
        server.stop()


class Postgres(ThrowawayPostgres):
    """A throwaway server that pg_ctl may restart, stop and start behind its back. Its
    cluster is made by the installed PostgreSQL, as a cluster made long before would be:
    initdb's own statements are not traced, since they run another binary."""

    def _initialise(self) -> None:
        runs_from, self.bindir = self.bindir, installed_postgres_bindir()
        try:
            super()._initialise()
        finally:
            self.bindir = runs_from

    def pg_ctl(self, *action: str) -> None:
        # pg_ctl start reads the settings from the data directory only: pass the command
        # line's (port, socket directory) again. restart takes them from postmaster.opts.
        options = ["-o", shlex.join(self._server_argv()[3:])] if action == ("start",) else []
        done = self.run_as_postgres(["pg_ctl", "-D", str(self.datadir), "-w", "-t", "60", "-m", "fast",
                                     "-l", str(self.workdir / "pg_ctl.log"), *options, *action],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output = done.communicate(timeout=120)[0]
        assert done.returncode == 0, f"pg_ctl {' '.join(action)}: {output}"

    @property
    def postmaster(self) -> int:
        return int((self.datadir / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            self.run_as_postgres(["pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).wait(60)
        super().stop()


class Timeline:
    """What the agent said of the servers' pids, scrape after scrape, from a thread."""

    def __init__(self, agent: AgentProcess, every_s: float = 0.05):
        self.seen: list[tuple[float, dict[str, float]]] = []
        self._agent = agent
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            attached = {s.labels["server"] for s in self._agent.samples("dbprobe_server_state")
                        if s.labels["dbprobe_server_state"] == "attached" and s.value == 1}
            pids = {s.labels["server"]: s.value for s in self._agent.samples("dbprobe_server_pid")
                    if s.labels["server"] in attached}
            self.seen.append((time.time(), pids))
            self._stop.wait(self._every_s)

    def first(self, server: str, pid: int) -> float | None:
        """When the agent first said `server` ran as `pid`, attached (None: not yet)."""
        return next((at for at, pids in list(self.seen) if pids.get(server) == pid), None)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture(scope="module")
def pg(agent: AgentProcess, pg_bindir: Path, root: Path):
    """Server A, started once the agent runs."""
    server = Postgres(bindir=pg_bindir, base_dir=root)
    server.timeline = Timeline(agent)
    try:
        server.start()
        server.psql("CREATE TABLE agent_fast (id int PRIMARY KEY); "
                    "INSERT INTO agent_fast SELECT generate_series(1, 1000); "
                    "CREATE TABLE agent_accounts (id int PRIMARY KEY, balance int); "
                    "INSERT INTO agent_accounts VALUES (1, 0)")
        yield server
    finally:
        server.timeline.stop()
        server.stop()


def server_name(server: ThrowawayPostgres | ThrowawayMariaDB) -> str:
    return str(server.datadir)


def events_of(root: Path, server: str, kind: str = "query") -> list[dict]:
    return [event for event in read_events(root / "events.jsonl")
            if event["event"] == kind and event.get("server") == server]


def slow_statement_traced(agent: AgentProcess, root: Path, server, sql: str = SLOW,
                          db: str = "postgresql") -> dict:
    """Run one slow statement; its event and its class's count in the metrics."""
    name = server_name(server)
    text = fingerprint(sql, double_quoted_strings=db != "postgresql")
    before = agent.value("dbprobe_class_calls_total", server=name, fingerprint=text.id)

    def events() -> list[dict]:
        return [e for e in events_of(root, name) if e["query"] == text.text and e["duration_ms"] >= 150]

    earlier = len(events())
    if db == "postgresql":
        with server.connect() as conn:
            conn.execute(sql)
    else:
        server.sql(sql)
    found = wait_for(lambda: len(events()) > earlier and events(), 10,
                     f"no event for {sql} on {name}:\n{agent.stderr}")
    event = found[-1]
    wait_for(lambda: agent.value("dbprobe_class_calls_total", server=name, fingerprint=text.id) >= before + 1,
             20, f"{sql} not counted for {name} (the class may wait for the next rerank)")
    assert event["db"] == db and event["source"] in ("usdt", "uprobe")
    return event


def state_of(agent: AgentProcess, server: str) -> str | None:
    for sample in agent.samples("dbprobe_server_state", server=server):
        if sample.value == 1:
            return sample.labels["dbprobe_server_state"]
    return None


# -- following the host ----------------------------------------------------------------------

def test_a_server_started_after_the_agent_is_traced_from_its_first_statement(agent, pg, root):
    name = server_name(pg)
    started = psutil.Process(pg.pid).create_time()
    wait_for(lambda: state_of(agent, name) == "attached", 10, f"{name} not attached:\n{agent.stderr}")
    # Scraped every 50 ms from before the start: when the agent had the server attached.
    seen_at = wait_for(lambda: pg.timeline.first(name, pg.pid), 5,
                       f"{pg.timeline.seen[-3:]}\n{agent.stderr}")
    pg.timeline.stop()
    known_after = seen_at - started
    print(f"\nserver attached {known_after:.2f} s after its postmaster started")
    assert known_after <= 2.0, known_after
    # The statements made just after the start (the fixture's set-up) were traced.
    wait_for(lambda: [e for e in events_of(root, name) if e["query"].startswith("CREATE TABLE agent_fast")],
             5, f"the first statements were not traced: {read_events(root / 'events.jsonl')[-5:]}\n{agent.stderr}")
    assert agent.value("dbprobe_server_pid", server=name) == pg.pid
    slow_statement_traced(agent, root, pg)


def test_promql_answers_match_a_known_workload(agent, pg, prometheus, root):
    name = server_name(pg)
    binary = str(pg.bindir / "postgres")
    where = f'server="{name}"'
    # Each class once, so that each has its series before the counted workload.
    with pg.connect() as conn:
        conn.execute(SLOW)
        conn.execute("SELECT count(*) FROM agent_fast WHERE id = 1")
    wait_for(lambda: all(prometheus.query(f'dbprobe_class_calls_total{{{where},fingerprint="{fp}"}}')
                         for fp in (SLOW_CLASS, FAST_CLASS)), 40, "the classes have no series in Prometheus")
    time.sleep(2.5)
    t0 = time.time()
    time.sleep(0.5)
    with unprepared(pg) as conn:
        for _ in range(N_SLOW):
            conn.execute(SLOW)
        for number in range(M_FAST):
            conn.execute(f"SELECT count(*) FROM agent_fast WHERE id = {number}")
    for _ in range(K_WAITS):
        wait_behind_a_row_lock(pg)
    time.sleep(3.5)  # three scrapes
    t1 = time.time()
    window = f"{round(t1 - t0) + 1}s"

    def delta(expression: str) -> float:
        later, earlier = prometheus.scalar(expression, at=t1), prometheus.scalar(expression, at=t0)
        assert later is not None and earlier is not None, expression
        return later - earlier

    slow = f'dbprobe_class_calls_total{{{where},fingerprint="{SLOW_CLASS}"}}'
    fast = f'dbprobe_class_calls_total{{{where},fingerprint="{FAST_CLASS}"}}'
    assert delta(slow) == N_SLOW
    assert delta(fast) == M_FAST
    assert N_SLOW * 0.7 <= prometheus.scalar(f"increase({slow}[{window}])", at=t1) <= N_SLOW * 1.5
    fast_rate = prometheus.scalar(f"rate({fast}[{window}])", at=t1)
    assert M_FAST * 0.7 <= fast_rate * (t1 - t0) <= M_FAST * 1.5, fast_rate
    # Latency from the log2 buckets: the right order of magnitude.
    def quantile(q: float, fingerprint_id: str) -> float:
        return prometheus.scalar(
            f'histogram_quantile({q}, sum by (le) (increase(dbprobe_class_duration_seconds_bucket'
            f'{{{where},fingerprint="{fingerprint_id}"}}[{window}])))', at=t1)
    assert 0.1 <= quantile(0.5, SLOW_CLASS) <= 0.5
    assert quantile(0.99, FAST_CLASS) < 0.01
    assert 0.19 * N_SLOW <= delta(f'dbprobe_class_seconds_total{{{where},fingerprint="{SLOW_CLASS}"}}') < 0.5 * N_SLOW
    # Where the slow class's time went (breakdown = true): asleep, off CPU, neither I/O nor a lock.
    slow_class = f'{where},fingerprint="{SLOW_CLASS}"'
    asleep = delta(f'dbprobe_class_off_cpu_seconds_total{{{slow_class},reason="other"}}')
    assert 0.19 * N_SLOW <= asleep < 0.5 * N_SLOW, asleep
    assert delta(f'dbprobe_class_cpu_seconds_total{{{slow_class}}}') < 0.1 * asleep
    in_pg_sleep = delta(f'dbprobe_class_wait_event_seconds_total{{{slow_class},wait_event="Timeout:PgSleep"}}')
    assert 0.19 * N_SLOW <= in_pg_sleep <= asleep * 1.01, in_pg_sleep
    assert delta(f'sum(dbprobe_class_off_cpu_seconds_total{{{slow_class},reason=~"io|lock|lwlock"}})') < 0.1 * asleep
    # Lock waits counted, by kind and mode, and their time.
    waits = (f'sum(dbprobe_lock_waits_total{{{where},lock_kind="transactionid",mode="ShareLock"}})'
             f' or vector(0)')
    assert delta(waits) == K_WAITS
    waited = delta(f'sum(dbprobe_lock_wait_seconds_total{{{where}}}) or vector(0)')
    assert HOLD_S * 0.8 * K_WAITS <= waited < 2.0 * K_WAITS, waited
    # What the kernel counts for the binary: every statement and transaction.
    statements = delta(f'sum(dbprobe_statements_total{{binary="{binary}"}})')
    assert statements >= N_SLOW + M_FAST + 4 * K_WAITS, statements
    assert delta(f'sum(dbprobe_transactions_total{{binary="{binary}",outcome="commit"}})') >= M_FAST
    p50 = prometheus.scalar(f'histogram_quantile(0.5, sum by (le) (increase('
                            f'dbprobe_statement_duration_seconds_bucket{{binary="{binary}"}}[{window}])))', at=t1)
    assert p50 < 0.01, p50
    assert prometheus.scalar(f'sum(dbprobe_events_lost_total{{binary="{binary}"}})') == 0
    # The events, as --json would print them, with the server named.
    slow_events = [e for e in events_of(root, name) if e["query"] == "SELECT pg_sleep(?)"
                   and t0 <= _epoch(e["ts"]) <= t1]
    assert len(slow_events) == N_SLOW and all(e["duration_ms"] >= 200 for e in slow_events)
    lock_events = [e for e in events_of(root, name, "lock_wait") if t0 <= _epoch(e["ts"]) <= t1]
    assert len(lock_events) == K_WAITS
    assert all(e["query"] == "UPDATE agent_accounts SET balance = balance + ? WHERE id = ?"
               and e["mode"] == "ShareLock" and e["blockers"] for e in lock_events), lock_events
    # The class's text, normalised, in the info metric only.
    [info] = prometheus.query(f'dbprobe_class_info{{{where},fingerprint="{FAST_CLASS}"}}')
    assert info["metric"]["query"] == "SELECT count(*) FROM agent_fast WHERE id = ?"


def unprepared(server: ThrowawayPostgres):
    """A connection that never prepares statements behind our back (psycopg prepares a
    query run five times, and the round trip that prepares it counts as a statement)."""
    conn = server.connect()
    conn.prepare_threshold = None
    return conn


def wait_behind_a_row_lock(server: ThrowawayPostgres) -> None:
    """One session holds the row for HOLD_S while another waits for it."""
    holder = server.connect(autocommit=False)
    try:
        holder.execute("UPDATE agent_accounts SET balance = balance - 1 WHERE id = 1")
        release = threading.Timer(HOLD_S, holder.commit)
        release.start()
        with server.connect() as waiter:
            waiter.execute(WAITER)
        release.join()
    finally:
        holder.close()


def _epoch(iso: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def dashboard_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((panel["title"], target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") == "query":
            query = variable["query"]
            expression = query["query"] if isinstance(query, dict) else query
            found.append((f"variable {variable['name']}", _label_values_query(expression)))
    return found


def _label_values_query(expression: str) -> str:
    """label_values(METRIC, LABEL) as Grafana asks it: the series of METRIC."""
    match = re.fullmatch(r"label_values\((?P<metric>.+),\s*\w+\)", expression.strip())
    return match.group("metric") if match else expression


def test_every_dashboard_expression_returns_data(agent, pg, prometheus):
    expressions = dashboard_expressions()
    assert len(expressions) >= 12
    metrics_used = set()
    for title, expression in expressions:
        concrete = (expression.replace("$__rate_interval", "1m").replace("$server", ".+")
                    .replace("$binary", ".+").replace("$db_system", ".+"))
        metrics_used.update(re.findall(r"\b(dbprobe_\w+|process_\w+)", concrete))
        result = prometheus.query(concrete)
        assert result, f"panel {title!r}: {concrete} returned no data"
    exposed = {re.sub(r"_(bucket|count|sum|total|info)$", "", name) for name in
               re.findall(r"^(\w+)", agent.scrape(), re.M)}
    for metric in metrics_used:
        assert re.sub(r"_(bucket|count|sum|total|info)$", "", metric) in exposed, metric


# -- faults, with the agent running throughout ------------------------------------------------

def test_pg_ctl_restart(agent, pg, root):
    name, before = server_name(pg), pg.postmaster
    attaches = agent.value("dbprobe_attaches_total", binary=str(pg.bindir / "postgres"))
    restarted = time.time()
    pg.pg_ctl("restart")
    assert pg.postmaster != before
    wait_for(lambda: agent.value("dbprobe_server_pid", server=name) == pg.postmaster, 10,
             f"the agent did not follow the restart:\n{agent.stderr}")
    event = slow_statement_traced(agent, root, pg)
    assert _epoch(event["ts"]) > restarted
    # The same binary: the same program serves the restarted server.
    assert agent.value("dbprobe_attaches_total", binary=str(pg.bindir / "postgres")) == attaches


def test_a_backend_killed_with_kill_9(agent, pg, root):
    name, postmaster = server_name(pg), pg.postmaster
    victim = pg.connect()
    backend = victim.execute("SELECT pg_backend_pid()").fetchone()[0]
    os.kill(backend, signal.SIGKILL)
    # The postmaster ends every backend and reinitialises; connections work again after.
    wait_for(lambda: _connects(pg), 30, "the server did not come back from the crash")
    assert pg.postmaster == postmaster
    event = slow_statement_traced(agent, root, pg)
    assert event["pid"] != backend
    assert state_of(agent, name) == "attached"


def _connects(server: ThrowawayPostgres) -> bool:
    try:
        with server.connect() as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:
        return False


def test_stopped_and_started_again(agent, pg, root):
    name = server_name(pg)
    pg.pg_ctl("stop")
    wait_for(lambda: state_of(agent, name) == "gone", 10, f"the agent did not see the stop:\n{agent.stderr}")
    assert agent.value("dbprobe_servers", state="gone") >= 1
    pg.pg_ctl("start")
    wait_for(lambda: state_of(agent, name) == "attached", 10, f"the agent did not see the start:\n{agent.stderr}")
    slow_statement_traced(agent, root, pg)


def test_the_binary_replaced_by_a_copy_and_the_server_restarted_on_it(agent, pg, root):
    binary = pg.bindir / "postgres"
    attaches = agent.value("dbprobe_attaches_total", binary=str(binary))
    old_inode = binary.stat().st_ino
    pg.pg_ctl("stop")
    replace_file_with_copy(binary)  # as a package upgrade does: a new inode at the same path
    assert binary.stat().st_ino != old_inode
    replaced = time.monotonic()
    # A watched file: its new inode is attached as soon as it is in place.
    wait_for(lambda: agent.value("dbprobe_attaches_total", binary=str(binary)) > attaches,
             ATTACH_TIMEOUT_S, f"the new file was not attached:\n{agent.stderr}")
    print(f"\nreplaced file attached {time.monotonic() - replaced:.1f} s after it was put in place")
    assert "its file was replaced or removed" in agent.stderr  # the old file's program went
    pg.pg_ctl("start")
    wait_for(lambda: state_of(agent, server_name(pg)) == "attached", 10,
             f"the server on the new file is not attached:\n{agent.stderr}")
    slow_statement_traced(agent, root, pg)
    # Nothing attached twice: the agent holds the perf events of one full program.
    wait_for(lambda: perf_event_fds(agent.pid) - BREAKDOWN_TRACEPOINTS == agent.value("dbprobe_probes")
             == FULL_PROBES, ATTACH_TIMEOUT_S, f"uprobes left over from the old file:\n{agent.stderr}")


def test_mariadb_started_beside_postgresql(agent, pg, root):
    copy = root / "mariadb" / "mariadbd"
    copy.parent.mkdir()
    copy.parent.chmod(0o755)
    shutil.copy2(find_program("mariadbd", "mysqld", search=SBIN_DIRS), copy)
    with ThrowawayMariaDB(binary=copy, base_dir=root) as mariadb:
        name = server_name(mariadb)
        started = psutil.Process(mariadb.pid).create_time()
        wait_for(lambda: state_of(agent, name) == "attached", ATTACH_TIMEOUT_S,
                 f"MariaDB was not attached:\n{agent.stderr}")
        # A binary never seen before: found, compiled for (statements first) and attached.
        print(f"\nMariaDB attached {time.time() - started:.1f} s after its start (a new binary)")
        copy_label = {"binary": str(copy), "db_system": "mariadb"}
        wait_for(lambda: agent.value("dbprobe_attaches_total", **copy_label) == 2, ATTACH_TIMEOUT_S,
                 f"MariaDB's locks were not attached after its statements:\n{agent.stderr}")
        print(f"MariaDB fully attached {time.time() - started:.1f} s after its start")
        event = slow_statement_traced(agent, root, mariadb, "SELECT SLEEP(0.2)", db="mariadb")
        assert event["protocol"] == "simple"
        assert agent.value("dbprobe_statements_total", db_system="mariadb") >= 1
        slow_statement_traced(agent, root, pg)  # PostgreSQL goes on alongside
    wait_for(lambda: state_of(agent, name) == "gone", 10, "the stopped MariaDB is not gone")


SPARE_COMPILED = re.compile(r"compiled a spare query program for the next binary of the build of "
                            r"(?P<binary>\S+) in (?P<seconds>[\d.]+) s")


def test_a_server_on_a_copy_of_the_tree_is_attached_with_the_spare_program(agent, pg, pg_bindir, root):
    # Once the watched binary was attached, a spare of its query program was compiled.
    wait_for(lambda: agent.value("dbprobe_spare_programs") >= 1, ATTACH_TIMEOUT_S,
             f"no spare program was compiled:\n{agent.stderr}")
    [compiled_s] = [float(m["seconds"]) for m in SPARE_COMPILED.finditer(agent.stderr)
                    if m["binary"] == str(pg_bindir / "postgres")]
    # The watched binary's first program, compiled for it when the agent started.
    from_scratch_s = agent.value("dbprobe_first_attach_duration_seconds", binary=str(pg_bindir / "postgres"))
    bindir = copy_postgres_tree(root / "copied")  # the same build, a path no `watch` names
    copy = bindir / "postgres"
    label = {"binary": str(copy), "db_system": "postgresql"}
    with Postgres(bindir=bindir, base_dir=root) as server:
        name = server_name(server)
        wait_for(lambda: state_of(agent, name) == "attached", ATTACH_TIMEOUT_S,
                 f"the server on the copy was not attached:\n{agent.stderr}")
        attached_s = wait_for(lambda: agent.value("dbprobe_first_attach_duration_seconds", **label), 10,
                              "no attach time for the copy")
        print(f"\ncopy attached in {attached_s:.2f} s with the spare program; compiling that program "
              f"took {compiled_s:.2f} s, the watched binary's first attach {from_scratch_s:.2f} s")
        assert agent.value("dbprobe_spare_attaches_total", **label) == 1
        assert re.search(rf"attached postgresql \S* {re.escape(str(copy))} \(query via usdt\) in [\d.]+ s "
                         rf"\(a compiled program ready for this build\)", agent.stderr), agent.stderr
        assert attached_s < 0.5 * compiled_s and attached_s < 0.5 * from_scratch_s
        # Statements are traced from then on (by the spare, unless every family is in already).
        with server.connect() as conn:
            conn.execute(SLOW)
        wait_for(lambda: [e for e in events_of(root, name) if e["query"] == "SELECT pg_sleep(?)"], 10,
                 f"no event from the copy's server:\n{agent.stderr}")
        wait_for(lambda: agent.value("dbprobe_statements_total", **label) >= 1, 10,
                 "the copy's statements are not counted by its binary")
        # And by class, under their server, even when counted before a scan named it.
        wait_for(lambda: agent.value("dbprobe_class_calls_total", server=name, fingerprint=SLOW_CLASS) >= 1,
                 10, f"the copy's statement is not counted in its class:\n{agent.stderr}")
        # Every family follows, compiled as usual; and a new spare for the next copy.
        wait_for(lambda: agent.value("dbprobe_attaches_total", **label) == 2, ATTACH_TIMEOUT_S,
                 f"the copy's full program was not attached:\n{agent.stderr}")
        slow_statement_traced(agent, root, server)
        wait_for(lambda: agent.value("dbprobe_spare_programs") >= 1 and len(
            [m for m in SPARE_COMPILED.finditer(agent.stderr) if m["binary"] == str(copy)]) == 1,
            ATTACH_TIMEOUT_S, f"no new spare after the spare was taken:\n{agent.stderr}")
    wait_for(lambda: state_of(agent, name) == "gone", 10, "the stopped copy is not gone")


UNTRACEABLE = "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n"


def test_a_server_that_cannot_be_traced_is_retried_while_the_others_carry_on(agent, pg, root):
    source = root / "untraceable.c"
    source.write_text(UNTRACEABLE)
    fake = root / "fake" / "postgres"  # a postgres by name, with nothing to attach to
    fake.parent.mkdir()
    compile_c([source], fake)
    workdir = root / "fake-data"
    workdir.mkdir()
    process = subprocess.Popen([str(fake)], cwd=workdir)
    try:
        wait_for(lambda: state_of(agent, str(workdir)) == "error", 20,
                 f"the untraceable server is not in error:\n{agent.stderr}")
        wait_for(lambda: agent.value("dbprobe_attach_errors_total", binary=str(fake)) >= 3, 20,
                 "not retried")
        assert "cannot trace postgresql" in agent.stderr and "retrying in 1 s" in agent.stderr
        slow_statement_traced(agent, root, pg)
    finally:
        process.kill()
        process.wait()
    wait_for(lambda: state_of(agent, str(workdir)) == "gone", 10, "the killed server is not gone")


# -- reload and exit -------------------------------------------------------------------------

def test_sighup_refuses_a_bad_file_and_takes_a_good_one(agent, pg, pg_bindir, root):
    name = server_name(pg)
    agent.config.write_text(agent_config(root, pg_bindir, top_k='"many"'))
    agent.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in agent.stderr, 10, "the bad file was not refused")
    assert re.search(r"reload refused.*agent\.toml: top_k: must be a whole number, not a string",
                     agent.stderr)
    assert agent.value("dbprobe_config_last_reload_successful") == 0
    assert agent.value("dbprobe_config_reloads_total", result="failure") == 1
    attaches = agent.value("dbprobe_attaches_total", binary=str(pg.bindir / "postgres"))
    # The breakdown off too: the program rebuilt without its scheduler and file-call tracepoints.
    agent.config.write_text(agent_config(root, pg_bindir, top_k="3", query='"50ms"', breakdown="false"))
    agent.signal(signal.SIGHUP)
    wait_for(lambda: agent.value("dbprobe_threshold_seconds", family="query") == 0.05, 10, "not reloaded")
    assert agent.value("dbprobe_config_last_reload_successful") == 1
    # A new threshold is compiled into a new program, which replaces the running one.
    wait_for(lambda: agent.value("dbprobe_attaches_total", binary=str(pg.bindir / "postgres")) == attaches + 1,
             ATTACH_TIMEOUT_S, f"not re-attached:\n{agent.stderr}")
    classes = agent.samples("dbprobe_class_calls_total", server=name)
    assert len([s for s in classes if s.labels["fingerprint"] != "other"]) <= 3, classes
    quick = "SELECT count(*) FROM agent_fast WHERE id = 7"
    with pg.connect() as conn:
        conn.execute(quick)
    slow_statement_traced(agent, root, pg)
    assert not [e for e in events_of(root, name) if e["query"] == fingerprint(quick).text
                and _epoch(e["ts"]) > time.time() - 5], "a fast statement is still an event"


def test_sigterm_exits_cleanly_leaving_nothing_attached(agent, pg):
    binary = ElfBinary(str(pg.bindir / "postgres"))
    (probe,) = binary.usdt_probe_sites("postgresql", "deadlock__found")  # the lock family's
    assert semaphore_value(pg.postmaster, binary.path, probe.semaphore) >= 1
    # The program a reload replaced may still be detaching, one probe after another.
    wait_for(lambda: perf_event_fds(agent.pid) == agent.value("dbprobe_probes") == FULL_PROBES, 30,
             f"more perf events than probes:\n{agent.stderr}")
    assert agent.stop() == 0, agent.stderr
    assert "nothing is left attached" in agent.stderr
    assert uprobe_events_of(agent.pid) == []
    assert semaphore_value(pg.postmaster, binary.path, probe.semaphore) == 0
    assert "Traceback" not in agent.stderr, agent.stderr
