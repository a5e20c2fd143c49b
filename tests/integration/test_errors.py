"""Bad input: one clear line and exit status 2, never a traceback, never a probe left behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from dbprobe.kernel.attach import Attachment
from dbprobe.kernel.entrypoints import group_sites
from dbprobe.binary.elf import ElfBinary
from dbprobe.demo.server import installed_postgres_bindir
from dbprobe.errors import DbprobeError
from dbprobe.recipes.bind import plan_family
from dbprobe.kernel.program import Parameters, build_program
from dbprobe.recipes.load import load_recipe
from tests.support.sdtbin import compile_c
from tests.support.tracing import (Finished, assert_one_line_error, run_dbprobe, semaphore_value,
                                   uprobe_events_left)

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", ["slow", "locks", "txn"])
def test_pid_that_does_not_exist(command, require_root_bpf):
    assert_one_line_error(run_dbprobe(command, "-p", "4194304"), "no process with pid 4194304")


def test_pid_that_is_not_a_database(require_root_bpf):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        assert_one_line_error(run_dbprobe("slow", "-p", str(sleeper.pid)),
                              f"pid {sleeper.pid}", "is not a PostgreSQL, MariaDB or MySQL server")
    finally:
        sleeper.kill()


def test_txn_on_a_mariadb_pid_says_what_the_report_is_for(mariadb_server, require_root_bpf):
    assert_one_line_error(run_dbprobe("txn", "-p", str(mariadb_server.pid)),
                          "is a MariaDB server", "PostgreSQL")


@pytest.mark.parametrize("threshold", ["fast", "-5ms", "5 parsecs"])
def test_unparsable_threshold(threshold, require_root_bpf):
    assert_one_line_error(run_dbprobe("slow", f"--threshold={threshold}"), "--threshold", threshold)


def test_binary_that_does_not_exist(require_root_bpf):
    assert_one_line_error(run_dbprobe("slow", "--binary", "/nonexistent/postgres"), "no such file")


def test_binary_that_is_no_database(require_root_bpf):
    assert_one_line_error(run_dbprobe("slow", "--binary", "/bin/true"),
                          "not a PostgreSQL, MariaDB or MySQL server binary")


def test_binary_without_probes_or_symbols(tmp_path, require_root_bpf):
    source = tmp_path / "main.c"
    source.write_text("int main(void) { return 0; }\n")
    binary = compile_c([source], tmp_path / "postgres")
    subprocess.run(["strip", str(binary)], check=True)
    finished = run_dbprobe("slow", "--binary", str(binary))
    assert_one_line_error(finished, f"cannot trace query in {binary}", "no USDT probes",
                          "pgstat_report_activity not found")


def test_no_server_running(require_root_bpf):
    # In a pid namespace of its own, dbprobe sees no server at all.
    finished = _run_in_new_pid_namespace("slow")
    assert_one_line_error(finished, "no running PostgreSQL or MariaDB or MySQL server found",
                          "--binary")


def test_missing_kernel_headers(tmp_path, require_root_bpf):
    finished = run_dbprobe_with_env({"BCC_KERNEL_SOURCE": str(tmp_path / "no-headers")}, "slow")
    assert_one_line_error(finished, "kernel headers", "linux-headers")


def test_missing_bcc(tmp_path, require_root_bpf):
    shadow = tmp_path / "shadow" / "bcc"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no bcc here')\n")
    finished = run_dbprobe_with_env({"PYTHONPATH": str(shadow.parent)}, "slow")
    assert_one_line_error(finished, "bcc", "python3-bpfcc")


def test_not_root():
    nobody = shutil.which("setpriv")
    if nobody is None or os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user (CI runs as root)")
    completed = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all",
         sys.executable, "-m", "dbprobe", "slow"],
        capture_output=True, text=True, cwd=REPOSITORY, timeout=60)
    assert_one_line_error(Finished(completed.returncode, completed.stdout, completed.stderr),
                          "privileges", "root")


def test_a_failed_attach_leaves_nothing_attached(pg_server, require_root_bpf, capfd):
    binary = ElfBinary(str(pg_server.bindir / "postgres"))
    plan = plan_family(load_recipe("postgresql"), "query", binary, None)
    broken = replace(plan.sites[-1], file_offset=os.path.getsize(binary.path) + 0x10000,
                     handler="pg_error", args=(), label="beyond the end of the file")
    (query_start,) = binary.usdt_probe_sites("postgresql", "query__start")
    program = build_program([replace(plan, sites=plan.sites + (broken,))], Parameters())
    attachment = Attachment.compile(program.source, program.cflags)
    try:
        with pytest.raises(DbprobeError, match="cannot attach to beyond the end of the file"):
            attachment.attach(group_sites(plan.sites + (broken,)))
        assert attachment.attached == 0
        assert semaphore_value(pg_server.pid, binary.path, query_start.semaphore) == 0
        assert uprobe_events_left({os.getpid()}) == []  # not even libbcc's tracefs fallback
        assert "perf_event_open" not in capfd.readouterr().err  # the error says it in one line
    finally:
        attachment.close()


def run_dbprobe_with_env(env: dict[str, str], *args: str) -> Finished:
    completed = subprocess.run([sys.executable, "-m", "dbprobe", *args], capture_output=True,
                               text=True, timeout=60, cwd=REPOSITORY, env={**os.environ, **env})
    return Finished(completed.returncode, completed.stdout, completed.stderr)


def _run_in_new_pid_namespace(*args: str) -> Finished:
    completed = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "dbprobe", *args],
        capture_output=True, text=True, timeout=60, cwd=REPOSITORY)
    return Finished(completed.returncode, completed.stdout, completed.stderr)


def test_a_binary_path_is_never_code(tmp_path, require_root_bpf):
    # A container chooses its own paths: a directory named x* once closed a C comment in
    # the generated program ("unknown type name 'bin'").
    hostile = tmp_path / "x*" / "bin"
    hostile.mkdir(parents=True)
    binary = hostile / "postgres"
    shutil.copy2(installed_postgres_bindir() / "postgres", binary)
    finished = run_dbprobe("slow", "--binary", str(binary), "--duration", "1")
    assert finished.returncode == 0, finished.stderr
    assert "probes attached" in finished.stderr and "Traceback" not in finished.stderr


def test_events_a_dead_dbprobe_left_in_tracefs_are_removed_by_the_next_run(pg_server, require_root_bpf):
    # A dbprobe killed while libbcc's tracefs fallback held a uprobe leaves its entry behind,
    # named after its pid: made here for a process that has exited.
    dead = _exited_pid()
    (site,) = ElfBinary(str(pg_server.bindir / "postgres")).usdt_probe_sites("postgresql", "query__start")
    name = f"dbprobe_{dead}_0_bcc_{dead}"
    events = os.open("/sys/kernel/tracing/uprobe_events", os.O_WRONLY | os.O_APPEND)
    try:
        os.write(events, f"p:uprobes/{name} {pg_server.bindir / 'postgres'}:{site.file_offset:#x}\n".encode())
    finally:
        os.close(events)
    assert name in Path("/sys/kernel/tracing/uprobe_events").read_text()
    finished = run_dbprobe("slow", "-p", str(pg_server.pid), "--duration", "0.5")
    assert finished.returncode == 0, finished.stderr
    assert name not in Path("/sys/kernel/tracing/uprobe_events").read_text()
    assert f"removed 1 uprobe event that dbprobe processes left in tracefs when they died: {name}" \
        in finished.stderr


def _exited_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid
