"""Durations as users type them (``--threshold``, ``--duration``, ``--interval``)."""

from __future__ import annotations

import argparse

import pytest

from dbprobe.commands.options import add_output_options, parse_threshold_ns
from dbprobe.errors import DbprobeError
from dbprobe.units import parse_duration_ns

MS = 1_000_000
S = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "default_unit", "expected_ns"),
    [
        ("50ms", "ms", 50 * MS),
        ("1s", "ms", 1 * S),
        ("1.5s", "ms", 1_500 * MS),
        ("250us", "ms", 250_000),
        ("250µs", "ms", 250_000),  # the micro sign
        ("2m", "ms", 120 * S),
        ("2min", "ms", 120 * S),
        ("1h", "ms", 3_600 * S),
        ("3sec", "ms", 3 * S),
        ("750ns", "s", 750),
        (".5s", "ms", 500 * MS),
        ("5.", "ms", 5 * MS),
        ("1.5MS", "s", 1_500_000),  # units in any letter case
        ("2M", "s", 120 * S),
        # Plain numbers are in the default unit.
        ("50", "ms", 50 * MS),
        ("30", "s", 30 * S),
        ("0.25", "s", 250 * MS),
        ("0", "ms", 0),
        # Spaces around the number and between number and unit.
        (" 50ms ", "ms", 50 * MS),
        ("50 ms", "ms", 50 * MS),
        ("\t1.5 s\n", "ms", 1_500 * MS),
        (" 7 ", "s", 7 * S),
    ],
)
def test_durations(text: str, default_unit: str, expected_ns: int) -> None:
    assert parse_duration_ns(text, default_unit=default_unit) == expected_ns


def test_fractions_round_to_the_nearest_nanosecond() -> None:
    assert parse_duration_ns("1.0000000006s", default_unit="ms") == 1_000_000_001
    assert parse_duration_ns("0.4ns", default_unit="ms") == 0


@pytest.mark.parametrize(
    "text",
    ["fast", "-5ms", "5 parsecs", "", "   ", "ms", "5 m s", "1e3ms", "5ms5", "five seconds", "."],
)
def test_garbage_is_a_value_error_that_quotes_the_text(text: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_duration_ns(text, default_unit="ms")
    assert f"'{text}'" in str(raised.value)
    assert "50ms" in str(raised.value), "the message gives an example"


def test_unknown_default_unit_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="'5'"):
        parse_duration_ns("5", default_unit="fortnights")


def test_greek_mu_is_microseconds() -> None:
    assert parse_duration_ns("250\u03bcs", default_unit="ms") == 250_000


# --- the command-line options built on it ----------------------------------------------


def test_threshold_is_in_milliseconds_by_default() -> None:
    assert parse_threshold_ns("50") == 50 * MS
    assert parse_threshold_ns("1s") == 1 * S


def test_bad_threshold_is_a_one_line_dbprobe_error() -> None:
    with pytest.raises(DbprobeError) as raised:
        parse_threshold_ns("fast")
    message = str(raised.value)
    assert message.startswith("--threshold: ")
    assert "'fast'" in message
    assert "\n" not in message


def output_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dbprobe slow")
    add_output_options(parser, digest="a digest")
    return parser


@pytest.mark.parametrize(
    ("value", "seconds"), [("30", 30.0), ("30s", 30.0), ("5m", 300.0), ("250ms", 0.25)]
)
def test_duration_and_interval_are_in_seconds_by_default(value: str, seconds: float) -> None:
    args = output_parser().parse_args(["--duration", value, "--interval", value])
    assert args.duration == pytest.approx(seconds)
    assert args.interval == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "message"), [("0", "more than zero"), ("0s", "more than zero"), ("soon", "'soon'")]
)
def test_duration_must_be_a_positive_duration(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        output_parser().parse_args(["--duration", value])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "--duration" in error
    assert message in error
