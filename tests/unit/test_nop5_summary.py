"""The nop5 experiment (bench/nop5.py): how a run's line is read, and how the rounds are summed up."""

from __future__ import annotations

from bench.nop5 import parse_run, ratios_to, summarise


def test_a_run_line_says_how_the_kernel_hit_the_site() -> None:
    assert parse_run("202.58 202.87 e8cbdbffff 1\n").how_hit == "call into the trampoline"
    assert parse_run("432.69 432.96 ccc366662e 0").how_hit == "int3 trap"
    assert parse_run("1.95 1.95 0f1f440000 0").how_hit == "not probed (0f1f440000)"
    assert parse_run("1.95 1.95 e8cbdbffff 0").how_hit == "not probed (e8cbdbffff)"


def test_a_hit_costs_the_traced_run_less_the_untraced_one_of_its_round() -> None:
    untraced, trap, call = "2.00 2.00 90c3000000 0", "cc", "e8"
    rounds = [
        {"nop1": (parse_run(untraced), parse_run(f"402.00 402.0 {trap}c3000000 0")),
         "nop5": (parse_run(untraced), parse_run(f"102.00 102.0 {call}00000000 1"))},
        {"nop1": (parse_run("4.00 4.00 90c3000000 0"), parse_run(f"604.00 604.0 {trap}c3000000 0")),
         "nop5": (parse_run(untraced), parse_run(f"202.00 202.0 {trap}00000000 0"))},
        {"nop1": (parse_run(untraced), parse_run(f"502.00 502.0 {trap}c3000000 0")),
         "nop5": (parse_run(untraced), parse_run(f"152.00 152.0 {call}00000000 1"))},
    ]
    nop1, nop5 = summarise(rounds)
    assert (nop1.site, nop1.untraced_ns, nop1.hit_ns, nop1.hit_range) == ("nop1", 2.0, 500.0, (400.0, 600.0))
    assert nop1.how_hit == "int3 trap"
    assert (nop5.hit_ns, nop5.how_hit) == (150.0, "varied: call into the trampoline, int3 trap")
    assert ratios_to([nop1, nop5], "nop1") == {"nop1": 1.0, "nop5": 0.3}
