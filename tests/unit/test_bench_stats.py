"""The overhead benchmark's pure helpers: paired statistics over interleaved rounds, CPU
accounting from /proc stat fields, the schedule, and reading what pgbench and bpftrace print."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.bpftrace import histogram_total, probe_counts, probe_spec, reference_script
from bench.pgbench import Workload, parse_pgbench_output
from bench.procstat import (CLOCK_TICKS_PER_S, MachineCpu, ProcessCpu, parse_machine_stat,
                            parse_pid_stat, parse_status_kib, process_tree_ticks,
                            read_process_cpu, tree_ticks)
from bench.schedule import clients_ladder, interleaved_schedule
from bench.stats import (median_of_ratios, paired_differences, paired_ratios, per_unit_us,
                         spread)

# --- medians and paired figures -------------------------------------------------------------


def test_spread_of_an_odd_count_is_the_middle_value_with_the_extremes() -> None:
    figures = spread([0.97, 0.91, 1.02, 0.95, 0.99])
    assert (figures.median, figures.low, figures.high, figures.count) == (0.97, 0.91, 1.02, 5)
    assert figures.width == pytest.approx(0.11)


def test_spread_of_an_even_count_averages_the_middle_two() -> None:
    assert spread([4.0, 1.0, 3.0, 2.0]).median == 2.5


def test_spread_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        spread([])


def test_ratios_pair_rounds_not_positions() -> None:
    baseline = {1: 100.0, 2: 200.0, 3: 50.0}
    measured = {3: 45.0, 1: 90.0, 2: 190.0}
    assert paired_ratios(baseline, measured) == pytest.approx([0.9, 0.95, 0.9])


def test_rounds_missing_on_either_side_or_with_a_zero_baseline_have_no_ratio() -> None:
    baseline = {1: 100.0, 2: 0.0, 3: 80.0}
    measured = {1: 50.0, 2: 10.0, 4: 70.0}
    assert paired_ratios(baseline, measured) == [0.5]


def test_median_of_ratios_is_not_the_ratio_of_medians() -> None:
    # A slow round hits both configurations; the per-round ratios see through it.
    baseline = {1: 1000.0, 2: 1000.0, 3: 400.0}
    measured = {1: 950.0, 2: 960.0, 3: 380.0}
    ratios = median_of_ratios(baseline, measured)
    assert ratios is not None
    assert ratios.median == pytest.approx(0.95)
    assert (ratios.low, ratios.high) == (pytest.approx(0.95), pytest.approx(0.96))
    assert ratios.count == 3


def test_median_of_ratios_without_common_rounds_is_none() -> None:
    assert median_of_ratios({1: 10.0}, {2: 9.0}) is None


def test_differences_are_measured_minus_baseline_per_round() -> None:
    assert paired_differences({1: 100.0, 2: 110.0}, {2: 125.0, 1: 104.0}) == [4.0, 15.0]


def test_cost_per_unit_in_microseconds() -> None:
    assert per_unit_us(1.5, 50_000) == pytest.approx(30.0)
    assert per_unit_us(1.0, 0) is None


# --- CPU accounting from /proc --------------------------------------------------------------

# Field 2 holds the command name in parentheses; a name may contain spaces and ')'.
STAT_LINE = ("4242 (postgres: a) b) S 4200 4242 4242 0 -1 4194560 4488 185936 0 0 "
             "120 35 2813 1001 20 0 1 0 145521 222380032 7666 18446744073709551615\n")


def test_stat_fields_are_counted_from_the_last_parenthesis() -> None:
    cpu = parse_pid_stat(STAT_LINE)
    assert cpu == ProcessCpu(pid=4242, ppid=4200, utime=120, stime=35, cutime=2813, cstime=1001)
    assert cpu.own_ticks == 155
    assert cpu.total_ticks == 155 + 2813 + 1001


def test_a_line_that_is_not_a_stat_line_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_pid_stat("no parentheses here")
    with pytest.raises(ValueError):
        parse_pid_stat("12 (short) S 1 2")


def test_a_server_tree_counts_the_leader_its_reaped_and_its_living_children() -> None:
    postmaster = ProcessCpu(pid=10, ppid=1, utime=5, stime=2, cutime=900, cstime=300)
    backends = [ProcessCpu(pid=11, ppid=10, utime=40, stime=10, cutime=0, cstime=0),
                ProcessCpu(pid=12, ppid=10, utime=3, stime=1, cutime=0, cstime=0)]
    assert tree_ticks(postmaster, backends) == 7 + 1200 + 50 + 4


def test_machine_stat_busy_idle_and_steal() -> None:
    text = ("cpu  1000 20 300 5000 40 5 7 11 0 0\n"
            "cpu0 500 10 150 2500 20 2 3 5 0 0\n"
            "intr 123\n")
    assert parse_machine_stat(text) == MachineCpu(busy=1000 + 20 + 300 + 5 + 7,
                                                  idle=5000 + 40, steal=11)
    later = MachineCpu(busy=1500, idle=6000, steal=20)
    assert later - MachineCpu(busy=1332, idle=5040, steal=11) == MachineCpu(168, 960, 9)


def test_machine_stat_without_a_cpu_line_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_machine_stat("intr 1 2 3\n")


def test_status_fields_in_kib() -> None:
    status = "Name:\tpython\nVmPeak:\t  320000 kB\nVmHWM:\t  172444 kB\nVmRSS:\t  170000 kB\n"
    assert parse_status_kib(status, "VmHWM") == 172444
    assert parse_status_kib(status, "VmSwap") is None


def burn_cpu_code(seconds: float) -> str:
    return (f"import time\nend = time.process_time() + {seconds}\n"
            "while time.process_time() < end: pass\n")


def test_the_cpu_of_a_reaped_child_moves_into_its_parents_cutime() -> None:
    before = read_process_cpu(os.getpid())
    subprocess.run([sys.executable, "-c", burn_cpu_code(0.3)], check=True)
    after = read_process_cpu(os.getpid())
    assert before is not None and after is not None
    reaped = (after.cutime + after.cstime - before.cutime - before.cstime) / CLOCK_TICKS_PER_S
    assert reaped >= 0.25


def test_the_tree_of_a_live_process_includes_its_living_children() -> None:
    # The child burns CPU, then sleeps without exiting: its time is only in its own stat.
    child = subprocess.Popen([sys.executable, "-c",
                              burn_cpu_code(0.3) + "import time\ntime.sleep(30)\n"])
    try:
        deadline = time.monotonic() + 20
        while True:
            cpu = read_process_cpu(child.pid)
            assert cpu is not None
            if cpu.own_ticks / CLOCK_TICKS_PER_S >= 0.3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        me = read_process_cpu(os.getpid())
        assert me is not None
        assert process_tree_ticks(os.getpid()) - me.total_ticks >= cpu.own_ticks
    finally:
        child.kill()
        child.wait()


# --- the schedule ---------------------------------------------------------------------------


def test_every_round_runs_every_mode_for_every_protocol_in_a_turning_order() -> None:
    steps = interleaved_schedule(["a", "b", "c"], ["simple", "extended"], rounds=4)
    assert len(steps) == 4 * 3 * 2
    first_modes = {}
    for step in steps:
        first_modes.setdefault(step.round, step.mode)
    assert first_modes == {1: "a", 2: "b", 3: "c", 4: "a"}
    for number in range(1, 5):
        in_round = [(step.mode, step.protocol) for step in steps if step.round == number]
        assert sorted(in_round) == sorted((m, p) for m in "abc" for p in ("simple", "extended"))


def test_both_protocols_run_back_to_back_under_one_mode() -> None:
    steps = interleaved_schedule(["a", "b"], ["simple", "extended"], rounds=2)
    modes = [step.mode for step in steps]
    assert modes == ["a", "a", "b", "b", "b", "b", "a", "a"]


def test_the_loss_search_doubles_the_clients_up_to_the_maximum() -> None:
    assert clients_ladder(4, 64) == [8, 16, 32, 64]
    assert clients_ladder(4, 50) == [8, 16, 32]
    assert clients_ladder(4, 4) == []


# --- pgbench and bpftrace output ------------------------------------------------------------

PGBENCH_OUTPUT = """\
pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 10
query mode: prepared
number of clients: 4
number of threads: 2
maximum number of tries: 1
duration: 5 s
number of transactions actually processed: 97451
number of failed transactions: 0 (0.000%)
latency average = 0.205 ms
initial connection time = 6.211 ms
tps = 19499.354674 (without initial connection time)
"""


def test_pgbench_tps_and_transactions() -> None:
    assert parse_pgbench_output(PGBENCH_OUTPUT) == (19499.354674, 97451)


def test_pgbench_output_without_results_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_pgbench_output("pgbench: error: connection to server failed\n")


def test_workload_command_lines() -> None:
    assert Workload("simple", 4, 10).argv() == ["pgbench", "-n", "-S", "-c", "4", "-j", "2",
                                                "-T", "10"]
    assert Workload("extended", 1, 3).argv() == ["pgbench", "-n", "-S", "-M", "prepared",
                                                 "-c", "1", "-j", "1", "-T", "3"]


BPFTRACE_HISTOGRAM = """\
Attaching 4 probes...
bench: probes attached


@latency_ns:
[16K, 32K)             1 |                                                    |
[32K, 64K)             3 |                                                    |
[64K, 128K)        58565 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[128K, 256K)        5203 |@@@@                                                |
[8M, 16M)              0 |                                                    |
[1G, 2G)               1 |                                                    |
"""


def test_the_reference_count_is_the_sum_of_its_histogram() -> None:
    assert histogram_total(BPFTRACE_HISTOGRAM) == 1 + 3 + 58565 + 5203 + 1
    assert histogram_total("Attaching 4 probes...\n") == 0


def test_probe_hit_counts() -> None:
    output = ("@hits[usdt:/x/postgres:postgresql:query__start]: 33435\n"
              "@hits[uprobe:/x/postgres:LockRelease]: 12\n")
    assert probe_counts(output) == {"usdt:/x/postgres:postgresql:query__start": 33435,
                                    "uprobe:/x/postgres:LockRelease": 12}


def test_probe_names_for_bpftrace() -> None:
    assert probe_spec("/b/postgres", "usdt", "postgresql:query__done", False) == \
        "usdt:/b/postgres:postgresql:query__done"
    assert probe_spec("/b/postgres", "uprobe", "PortalRun (return)", True) == \
        "uretprobe:/b/postgres:PortalRun"


@pytest.mark.parametrize(("protocol", "start", "done"), [
    ("simple", "query__start", "query__done"),
    ("extended", "query__execute__start", "query__execute__done"),
])
def test_the_reference_times_the_probes_that_fire_for_its_protocol(protocol: str, start: str,
                                                                   done: str) -> None:
    script = reference_script("/b/postgres", protocol)
    assert f"usdt:/b/postgres:postgresql:{start} {{ @start[tid] = nsecs; }}" in script
    assert f"usdt:/b/postgres:postgresql:{done} /@start[tid]/" in script
    assert "hist(nsecs - @start[tid])" in script
