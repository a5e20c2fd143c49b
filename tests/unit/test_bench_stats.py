"""The overhead benchmark's pure helpers: paired statistics over interleaved rounds, CPU
accounting from /proc stat fields, the schedule, and reading what pgbench and bpftrace print."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.bpftrace import (READY_LINE, empty_probes_script, hit_count_script, histogram_total,
                            probe_counts, probe_spec, reference_script)
from bench.measure import RunResult
from bench.pgbench import Workload, parse_pgbench_output
from bench.procstat import (CLOCK_TICKS_PER_S, MachineCpu, ProcessCpu, parse_machine_stat,
                            parse_pid_stat, parse_status_kib, process_tree_ticks,
                            read_process_cpu, tree_ticks)
from bench.schedule import clients_ladder, interleaved_schedule
from bench.stats import bracketing_baselines, per_unit_us, spread
from bench.summary import pair_with_baselines, summarise

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


def test_each_run_is_compared_with_the_mean_of_its_neighbouring_baselines() -> None:
    series = [(True, 100.0), (False, 1.0), (True, 120.0), (False, 2.0), (False, 3.0),
              (True, 90.0)]
    assert bracketing_baselines(series) == [None, 110.0, None, 105.0, 105.0, None]


def test_runs_at_either_end_have_one_neighbouring_baseline() -> None:
    assert bracketing_baselines([(False, 1.0), (True, 80.0), (False, 2.0)]) == [80.0, None, 80.0]


def test_without_a_baseline_nothing_is_compared() -> None:
    assert bracketing_baselines([(False, 1.0), (False, 2.0)]) == [None, None]
    assert bracketing_baselines([]) == []


def run(mode: str, sequence: int, tps: float, *, protocol: str = "simple",
        server_cpu_s: float = 1.0, tracer_cpu_s: float = 0.0, client_cpu_s: float = 0.2,
        transactions: int = 10_000) -> RunResult:
    return RunResult(mode=mode, protocol=protocol, round=1, sequence=sequence, clients=4,
                     seconds=10.0, tps=tps, transactions=transactions,
                     server_cpu_s=server_cpu_s, tracer_cpu_s=tracer_cpu_s,
                     client_cpu_s=client_cpu_s, other_cpu_s=0.0, steal_s=0.0, bpf_s=None,
                     statements=None,
                     events=None, lost_events=None, peak_rss_kib=None, attach_s=None,
                     quiet=True, check="")


def test_the_median_of_per_run_ratios_sees_through_a_slow_stretch_of_the_machine() -> None:
    # The machine is busy elsewhere from the fourth run on: every TPS figure halves.
    runs = [run("baseline", 0, 1000.0), run("slow", 1, 950.0), run("baseline", 2, 1000.0),
            run("slow", 3, 480.0), run("baseline", 4, 500.0), run("slow", 5, 470.0),
            run("baseline", 6, 500.0)]
    paired = pair_with_baselines(runs, "simple")
    assert [p.run.sequence for p in paired] == [1, 3, 5]
    assert [p.tps_ratio for p in paired] == pytest.approx([0.95, 0.64, 0.94])
    ratios = spread(p.tps_ratio for p in paired)
    assert ratios.median == pytest.approx(0.94)
    assert (ratios.low, ratios.high) == (pytest.approx(0.64), pytest.approx(0.95))
    # The ratio of the medians would blame the tracer for the machine's slowdown.
    ratio_of_medians = spread([950.0, 480.0, 470.0]).median / spread([1000.0, 1000.0, 500.0, 500.0]).median
    assert ratio_of_medians == pytest.approx(0.64)


def test_runs_are_paired_within_their_protocol_and_in_time_order() -> None:
    runs = [run("slow", 3, 900.0, protocol="extended"), run("baseline", 0, 1000.0),
            run("baseline", 1, 2000.0, protocol="extended"), run("slow", 2, 800.0),
            run("baseline", 4, 1000.0), run("baseline", 5, 2000.0, protocol="extended")]
    assert [p.tps_ratio for p in pair_with_baselines(runs, "simple")] == [0.8]
    assert [p.tps_ratio for p in pair_with_baselines(runs, "extended")] == [0.45]


def test_extra_cpu_per_transaction_and_the_cpu_bound_ratio() -> None:
    # Baseline: 100 us server + 20 us pgbench per transaction. Traced: 110 us server,
    # 5 us in the tracer, the same pgbench.
    runs = [run("baseline", 0, 1000.0, server_cpu_s=1.0, client_cpu_s=0.2),
            run("slow", 1, 900.0, server_cpu_s=1.1, tracer_cpu_s=0.05, client_cpu_s=0.2),
            run("baseline", 2, 1000.0, server_cpu_s=1.0, client_cpu_s=0.2)]
    (paired,) = pair_with_baselines(runs, "simple")
    assert paired.extra_server_us_per_txn == pytest.approx(10.0)
    assert paired.extra_us_per_txn == pytest.approx(15.0)
    assert paired.cpu_bound_ratio == pytest.approx(120.0 / 135.0)


def test_a_summary_reports_each_configuration_against_its_neighbours() -> None:
    runs = [run("baseline", 0, 1000.0), run("slow", 1, 950.0), run("baseline", 2, 1000.0),
            run("slow", 3, 900.0), run("baseline", 4, 1000.0)]
    baseline, slow = summarise(runs, ["baseline", "slow"], ["simple"])
    assert baseline.tps_ratio is None and baseline.runs == 3
    assert slow.tps_ratio is not None and slow.runs == 2
    assert slow.tps_ratio.median == pytest.approx(0.925)
    assert slow.tps.median == pytest.approx(925.0)


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


def test_every_configuration_run_sits_between_two_baseline_runs() -> None:
    steps = interleaved_schedule(["base", "a", "b", "c"], ["simple"], rounds=2)
    modes = [step.mode for step in steps]
    assert modes == ["base", "a", "base", "b", "base", "c", "base",
                     "b", "base", "c", "base", "a", "base"]
    assert [step.round for step in steps] == [1] * 7 + [2] * 6


def test_the_configurations_turn_each_round_and_each_runs_once_per_round() -> None:
    steps = interleaved_schedule(["base", "a", "b", "c"], ["simple"], rounds=4)
    for number in range(1, 5):
        configurations = [step.mode for step in steps if step.round == number and step.mode != "base"]
        assert sorted(configurations) == ["a", "b", "c"]
        assert configurations[0] == "abca"[number - 1]


def test_both_protocols_run_back_to_back_under_one_mode() -> None:
    steps = interleaved_schedule(["base", "a"], ["simple", "extended"], rounds=1)
    assert [(step.mode, step.protocol) for step in steps] == [
        ("base", "simple"), ("base", "extended"), ("a", "simple"), ("a", "extended"),
        ("base", "simple"), ("base", "extended")]


def test_a_baseline_alone_runs_once_a_round() -> None:
    steps = interleaved_schedule(["base"], ["simple"], rounds=3)
    assert [(step.mode, step.round) for step in steps] == [("base", 1), ("base", 2), ("base", 3)]


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


def test_the_floor_attaches_every_probe_once_with_nothing_to_do() -> None:
    probes = ["usdt:/b/postgres:postgresql:statement__status", "uprobe:/b/postgres:LockRelease",
              "usdt:/b/postgres:postgresql:statement__status"]
    script = empty_probes_script(probes)
    assert script.count("statement__status") == 1
    assert script.splitlines()[1:] == ["usdt:/b/postgres:postgresql:statement__status {  }",
                                       "uprobe:/b/postgres:LockRelease {  }"]
    assert READY_LINE in script
    assert "@hits[probe] = count();" in hit_count_script(probes)
