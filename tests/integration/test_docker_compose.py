"""The container demo, docker/docker-compose.yml, run for real.

dbprobe runs in its container, in the host's pid namespace, and traces a PostgreSQL server
running in another container, found by its port, while the workload container runs slow
and fast statements over both protocols and queues sessions behind a row lock.

No registry is reachable where this runs, so every image is built here:
- the base, Debian bookworm bootstrapped with debootstrap and imported (the tarball is
  cached under tests/.build/docker-base/ by day: the first run of a day takes about a
  minute longer);
- dbprobe's image, by compose from docker/Dockerfile;
- instead of the official postgres image, which cannot be pulled: Debian's PostgreSQL
  with its USDT notes removed (postgres-debian.Dockerfile, STRIP_USDT=true). Like the
  official image, it has no USDT, so dbprobe must trace it through its uprobe fallback;
- Debian's Prometheus (prometheus.Dockerfile), which scrapes the agent's container.

A private Docker engine is started when none runs (and stopped at the end); the test
skips only when no engine can run here. It leaves no containers, images, networks or
mounts behind. It takes a few minutes, most of them building images; progress is printed.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.compose import BUILD_TIMEOUT_S, ComposeProject, compose_command, stage_context
from tests.support.debian_rootfs import rootfs_tarball
from tests.support.docker_engine import DockerEngine, EngineUnavailable

REPOSITORY = Path(__file__).resolve().parents[2]
BASE_CACHE_DIR = REPOSITORY / "tests" / ".build" / "docker-base"
# Where a host keeps the certificate authorities it trusts on top of the distribution's
# (a TLS-intercepting proxy between it and PyPI): the image build trusts them too.
LOCAL_CA_CERTIFICATES = Path("/usr/local/share/ca-certificates")
EVENTS_TIMEOUT_S = 180.0
POLL_S = 2.0
REPORT_EVERY_S = 15.0
STOP_TIMEOUT_S = 30
SLOW_THRESHOLD_MS = 100
# What docker/workload.sh runs: pg_sleep(0.3); the lock holder's and the waiters' updates.
WORKLOAD_SLOW_MS = 300
HOLDER_UPDATE = "UPDATE demo_accounts SET balance = balance - ? WHERE id = ?"
WAITER_UPDATE = "UPDATE demo_accounts SET balance = balance + ? WHERE id = ?"


@pytest.fixture
def progress(capsys):
    started = time.monotonic()

    def say(message: str) -> None:
        with capsys.disabled():
            print(f"\n[docker demo {time.monotonic() - started:4.0f} s] {message}", end="", flush=True)

    return say


@pytest.fixture
def run_id() -> str:
    return secrets.token_hex(4)


@pytest.fixture
def engine(require_root_bpf, progress):
    try:
        engine = DockerEngine.connect_or_start()
    except EngineUnavailable as error:
        pytest.skip(f"no Docker engine can run here: {error}")
    progress("engine: started a private dockerd" if engine.started_here else "engine: using the running one")
    yield engine
    engine.stop()
    if engine.started_here:
        progress("engine: stopped; no process or mount left")


@pytest.fixture
def base_image(engine: DockerEngine, run_id: str, progress):
    assert shutil.which("debootstrap"), "debootstrap is missing: apt-get install debootstrap"
    tarball = rootfs_tarball(BASE_CACHE_DIR, progress)
    tag = f"dbprobe-test/debian-bookworm:{run_id}"
    engine.run("import", str(tarball), tag, timeout=600)
    image_id = engine.image_id(tag)
    assert image_id, f"docker import made no {tag}"
    progress(f"base image: imported as {tag}")
    yield tag
    engine.remove_image_and_descendants(image_id)
    assert engine.image_id(tag) is None, f"{tag} is left"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _local_ca_certificates() -> str:
    return "".join(path.read_text() for path in sorted(LOCAL_CA_CERTIFICATES.rglob("*.crt")))


def _build_images(project: ComposeProject, context: Path, logs: Path) -> None:
    """dbprobe's image by compose and the USDT-less PostgreSQL by docker build, side by side."""
    variables = project.variables
    postgres = [
        "build", "--network", "host", "--force-rm",
        "--file", str(context / "docker" / "postgres-debian.Dockerfile"),
        "--build-arg", f"BASE_IMAGE={variables['BASE_IMAGE']}",
        "--build-arg", "STRIP_USDT=true",
        "--tag", variables["POSTGRES_IMAGE"], str(context / "docker"),
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        builds = [
            pool.submit(project.run, "build", "--force-rm", "dbprobe", "dbprobe-locks", "prometheus",
                        timeout=BUILD_TIMEOUT_S, log=logs / "build-dbprobe.log"),
            pool.submit(project.engine.run, *postgres, timeout=BUILD_TIMEOUT_S),
        ]
        for build in builds:
            build.result()


@pytest.fixture
def demo(engine: DockerEngine, base_image: str, run_id: str, tmp_path: Path, progress):
    command = compose_command(engine)
    assert command, "neither the docker compose plugin nor docker-compose: apt-get install docker-compose"
    context = stage_context(REPOSITORY, tmp_path / "context")
    project = ComposeProject(engine, command, context / "docker" / "docker-compose.yml",
                             name=f"dbprobe-test-{run_id}", variables={
                                 "BASE_IMAGE": base_image,
                                 "DBPROBE_IMAGE": f"dbprobe-test/dbprobe:{run_id}",
                                 "POSTGRES_IMAGE": f"dbprobe-test/postgres-no-usdt:{run_id}",
                                 "PROMETHEUS_IMAGE": f"dbprobe-test/prometheus:{run_id}",
                                 "PGPORT": str(_free_port()),
                                 "AGENT_PORT": str(_free_port()),
                                 "PROMETHEUS_PORT": str(_free_port()),
                                 "SLOW_THRESHOLD": f"{SLOW_THRESHOLD_MS}ms",
                                 "DBPROBE_OUTPUT": "--json",
                                 "EXTRA_CA_CERTS": _local_ca_certificates(),
                             })
    images = [project.variables[name] for name in ("DBPROBE_IMAGE", "POSTGRES_IMAGE", "PROMETHEUS_IMAGE")]
    try:
        progress(f"images: building dbprobe and the USDT-less PostgreSQL with {' '.join(command)}")
        _build_images(project, context, tmp_path)
        port = project.variables["PGPORT"]
        progress(f"stack: up as project {project.name}, PostgreSQL on 127.0.0.1:{port}")
        project.run("up", "--detach", "--no-build")
        yield project
    finally:
        project.run("down", "--rmi", "all", "--volumes", "--remove-orphans", "--timeout", "10",
                    check=False)
        for image in images:
            if engine.image_id(image) is not None:
                engine.run("rmi", "--force", image, check=False)
        progress("stack: down")
    assert project.leftovers() == []
    assert [image for image in images if engine.image_id(image) is not None] == []


def _json_events(stdout: str, kind: str) -> list[dict]:
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [record for record in records if record.get("event") == kind]


@dataclass(frozen=True, slots=True)
class Seen:
    """What the two dbprobe containers have printed so far."""

    queries: list[dict]
    waits: list[dict]

    @classmethod
    def read(cls, project: ComposeProject) -> "Seen":
        return cls(_json_events(project.logs("dbprobe")[0], "query"),
                   _json_events(project.logs("dbprobe-locks")[0], "lock_wait"))

    def slow_sleeps(self, protocol: str) -> list[dict]:
        return [query for query in self.queries
                if query["protocol"] == protocol and query["query"] == "SELECT pg_sleep(?)"]

    def waits_behind_idle_transaction(self) -> list[dict]:
        return [wait for wait in self.waits
                if any(blocker["state"] == "idle in transaction" for blocker in wait["blockers"])]

    def whole_round_traced(self) -> bool:
        """Whether dbprobe slow saw a round of the workload from its first statement (the
        simple pg_sleep) to its last (the waiters' updates), and so all the fast ones between."""
        starts = [query["ts"] for query in self.slow_sleeps("simple")]
        ends = [query["ts"] for query in self.queries if query["query"] == WAITER_UPDATE]
        return any(start < end for start in starts for end in ends)  # ISO 8601, UTC

    def complete(self) -> bool:
        return bool(self.whole_round_traced() and self.slow_sleeps("extended")
                    and self.waits_behind_idle_transaction())

    def summary(self) -> str:
        return (f"{len(self.queries)} slow queries ({len(self.slow_sleeps('simple'))} simple and "
                f"{len(self.slow_sleeps('extended'))} extended pg_sleep, whole round: "
                f"{'yes' if self.whole_round_traced() else 'not yet'}), {len(self.waits)} lock waits "
                f"({len(self.waits_behind_idle_transaction())} behind an idle transaction)")


def _wait_for_reports(project: ComposeProject, progress) -> Seen:
    deadline = time.monotonic() + EVENTS_TIMEOUT_S
    next_report = 0.0
    while True:
        seen = Seen.read(project)
        if seen.complete():
            return seen
        for service in ("dbprobe", "dbprobe-locks"):
            state = project.engine.run("inspect", "--format", "{{.State.Status}}",
                                       project.container_id(service)).stdout.strip()
            assert state == "running", f"{service} is {state}:\n{project.logs(service)[1]}"
        if time.monotonic() > deadline:
            raise AssertionError(f"after {EVENTS_TIMEOUT_S:g} s: {seen.summary()}\n"
                                 f"dbprobe:\n{project.logs('dbprobe')[1]}\n"
                                 f"dbprobe-locks:\n{project.logs('dbprobe-locks')[1]}")
        if time.monotonic() >= next_report:
            progress(f"waiting for dbprobe's reports: {seen.summary()}")
            next_report = time.monotonic() + REPORT_EVERY_S
        time.sleep(POLL_S)


def _prometheus_query(project: ComposeProject, expression: str) -> list[dict]:
    query = urllib.parse.urlencode({"query": expression})
    url = f"http://127.0.0.1:{project.variables['PROMETHEUS_PORT']}/api/v1/query?{query}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)["data"]["result"]
    except OSError:
        return []  # not up yet


def _wait_for_prometheus(project: ComposeProject, container: str, progress) -> list[dict]:
    """What Prometheus scraped from the agent about the postgres container's server."""
    expression = f'sum by (protocol) (dbprobe_statements_total{{container="{container}"}}) > 0'
    deadline = time.monotonic() + EVENTS_TIMEOUT_S
    while True:
        found = _prometheus_query(project, expression)
        if {series["metric"]["protocol"] for series in found} >= {"simple", "extended"}:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"Prometheus has no statements of container {container} after "
                                 f"{EVENTS_TIMEOUT_S:g} s: {found}\nagent:\n{project.logs('dbprobe-agent')[1]}")
        progress("waiting for Prometheus to scrape the agent's counts of the server")
        time.sleep(REPORT_EVERY_S / 3)


def _exit_code(project: ComposeProject, service: str) -> int:
    return int(project.engine.run("inspect", "--format", "{{.State.ExitCode}}",
                                  project.container_id(service)).stdout)


def test_dbprobe_container_traces_postgres_container_through_uprobes(demo: ComposeProject, progress):
    seen = _wait_for_reports(demo, progress)
    postgres_container = demo.container_id("postgres")[:12]
    statements = _wait_for_prometheus(demo, postgres_container, progress)
    progress(f"seen: {seen.summary()}; Prometheus: {statements}; stopping the dbprobe containers")
    demo.run("stop", "--timeout", str(STOP_TIMEOUT_S), "dbprobe", "dbprobe-locks", "dbprobe-agent")

    slow_out, slow_err = demo.logs("dbprobe")
    locks_out, locks_err = demo.logs("dbprobe-locks")
    assert _exit_code(demo, "dbprobe") == 0, slow_err
    assert _exit_code(demo, "dbprobe-locks") == 0, locks_err
    for messages in (slow_err, locks_err):
        # Found from the host's pid namespace, by port, inside the postgres container...
        assert f"in container {postgres_container}" in messages, messages
        # ...whose server has no USDT: the uprobe fallback is used.
        assert "via uprobe" in messages, messages

    queries = _json_events(slow_out, "query")
    assert queries and {query["source"] for query in queries} == {"uprobe"}, queries
    for protocol in ("simple", "extended"):
        sleeps = [query for query in queries
                  if query["protocol"] == protocol and query["query"] == "SELECT pg_sleep(?)"]
        assert sleeps, f"no slow {protocol}-protocol pg_sleep in {queries}"
        assert all(query["duration_ms"] >= WORKLOAD_SLOW_MS for query in sleeps), sleeps
        assert any(query["database"] == "postgres" for query in sleeps), sleeps
    # The backends run in the container's pid namespace: dbprobe knows their pids there too.
    assert any(query.get("ns_pid") not in (None, query["pid"]) for query in queries), queries
    # Stopped by SIGTERM, it printed its digest; the kernel counted the fast statements of
    # the whole round it saw (20 simple and 200 extended) without sending them to user space.
    [digest] = _json_events(slow_out, "summary")
    assert digest["slow"] == len(queries) and digest["lost_events"] == 0, digest
    assert digest["statements_by_protocol"]["simple"] >= 20, digest
    assert digest["statements_by_protocol"]["extended"] >= 200, digest
    assert digest["statements"] > digest["slow"], digest

    waits = _json_events(locks_out, "lock_wait")
    assert waits and {wait["source"] for wait in waits} == {"uprobe"}, waits
    behind_holder = [wait for wait in waits
                     if wait["query"] == WAITER_UPDATE
                     and any(blocker["state"] == "idle in transaction" and blocker["query"] == HOLDER_UPDATE
                             for blocker in wait["blockers"])]
    assert behind_holder, waits
    assert all(wait["wait_ms"] > 0 and wait["outcome"] == "granted" for wait in behind_holder), behind_holder
    # --dsn reaches the server from the dbprobe container, and names the locked table.
    assert any("demo_accounts" in (wait["target"] or "") for wait in waits), waits
    assert _json_events(locks_out, "summary"), locks_out[-2000:]
    progress("dbprobe reported slow queries of both protocols and lock waits with their blocker")

    # The agent followed the container's server, and wrote its slow statements as events.
    agent_out, agent_err = demo.logs("dbprobe-agent")
    assert _exit_code(demo, "dbprobe-agent") == 0, agent_err
    assert "nothing is left attached" in agent_err, agent_err
    agent_sleeps = [query for query in _json_events(agent_out, "query")
                    if query["query"] == "SELECT pg_sleep(?)" and query["source"] == "uprobe"]
    assert agent_sleeps and all(query["server"].startswith(postgres_container) for query in agent_sleeps)
    progress("the agent's metrics reached Prometheus, its events its output")
