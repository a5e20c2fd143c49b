"""``dbprobe list`` and bad input against a real Oracle MySQL 9 server in a container.

The server (tests/support/contained_mysql.py) runs in pid and mount namespaces of its own,
chrooted into Debian unstable's root file system, as that root's mysql user (a uid the
host has no name for): dbprobe must see it as the server sees itself, through
/proc/PID/root, and read its version from its binary.
"""

from __future__ import annotations

import re

import pytest

from tests.support.tracing import assert_one_line_error, run_dbprobe


@pytest.fixture
def mysql(contained_mysql, require_root_bpf):
    return contained_mysql


def test_list_json_reports_mysql_9_in_its_root(mysql):
    finished = run_dbprobe("list", "--json", "-p", str(mysql.pid))
    assert finished.returncode == 0, finished.stderr
    (server,) = finished.json_lines()

    (reported,) = mysql.sql("SELECT VERSION()")[0]  # "9.7.4-2": Debian's revision after the dash
    assert re.fullmatch(r"9\.\d+\.\d+", server["version"]) and reported.startswith(server["version"] + "-")
    assert server["version"] == mysql.rootfs.version
    assert (server["db"], server["pid"], server["processes"]) == ("mysql", mysql.pid, 1)
    assert server["ns_pid"] == mysql.ns_pid != mysql.pid  # in a pid namespace of its own
    assert server["binary"] == "/usr/sbin/mysqld"
    assert server["host_binary"] == f"/proc/{mysql.pid}/root/usr/sbin/mysqld"
    assert server["root"] == str(mysql.rootfs.path)
    assert server["container"] is None  # no container runtime's cgroup
    assert (server["data_dir"], server["port"], server["user"]) == (mysql.data_dir_in_root, mysql.port, "mysql")
    assert server["binary_deleted"] is False and server["recipe_error"] is None
    query, locks = server["families"]["query"], server["families"]["locks"]
    assert (query["mechanism"], query["probes"]) == ("uprobe", ["dispatch_command", "dispatch_command (return)"])
    assert query["reason"] == ("usdt: the binary has no USDT probes (MySQL 8.0 and later have none; "
                               "5.x builds have them with -DENABLE_DTRACE=ON)")
    assert (locks["mechanism"], locks["reason"]) == ("uprobe", None)
    assert locks["probes"] == ["dispatch_command", "thd_wait_begin", "thd_wait_end",
                               "MDL_wait::timed_wait", "MDL_wait::timed_wait (return)"]


def test_list_text_names_the_server_as_it_names_itself(mysql):
    finished = run_dbprobe("list", "-p", str(mysql.pid))
    assert finished.returncode == 0, finished.stderr
    lines = finished.stdout.splitlines()
    assert lines[0] == f"mysql {mysql.rootfs.version}: pid {mysql.pid}, 1 process, pid {mysql.ns_pid} inside"
    assert "  binary     /usr/sbin/mysqld" in lines
    assert f"  root       {mysql.rootfs.path}" in lines
    assert "  user       mysql" in lines


def test_dsn_is_refused_for_a_mysql_server(mysql):
    finished = run_dbprobe("locks", "--dsn", "host=/tmp", "-p", str(mysql.pid))
    assert_one_line_error(finished, f"pid {mysql.pid} is a MySQL server", "leave --dsn out")
    assert finished.stdout == ""


def test_slow_has_no_dsn(mysql):
    finished = run_dbprobe("slow", "--dsn", "host=/tmp", "-p", str(mysql.pid))
    assert_one_line_error(finished, "unrecognized arguments: --dsn host=/tmp")


def test_txn_on_a_mysql_pid_says_what_the_report_is_for(mysql):
    finished = run_dbprobe("txn", "-p", str(mysql.pid))
    assert_one_line_error(finished, f"pid {mysql.pid} is a MySQL server", "PostgreSQL")
    assert finished.stdout == ""
