"""The helpers every text report shares: escaping for the terminal, windows of counters."""

from __future__ import annotations

from dbprobe.render.text import count, fit, terminal_safe
from dbprobe.reports.window import Window


def test_control_characters_are_written_as_escapes() -> None:
    assert terminal_safe('select 1 as "\x1b[31mRED\x07\rX"') == 'select 1 as "\\x1b[31mRED\\x07\\x0dX"'


def test_c1_controls_and_bidirectional_overrides_are_escaped() -> None:
    assert terminal_safe("a\x9bb\u202ec\u2066d") == "a\\x9bb\\u202ec\\u2066d"


def test_newlines_between_report_lines_and_ordinary_text_stay() -> None:
    text = "line one: café, 東京\nline two"
    assert terminal_safe(text) == text


def test_tabs_are_escaped_so_columns_stay_aligned() -> None:
    assert terminal_safe("a\tb") == "a\\x09b"


def test_fit_and_count() -> None:
    assert fit("abcdef", 4) == "abc…"
    assert fit("abcdef", None) == "abcdef"
    assert (count(1, "probe"), count(3, "probe")) == ("1 probe", "3 probes")


class Counter:
    def __init__(self, value: int):
        self.value = value

    def __sub__(self, earlier: "Counter") -> "Counter":
        return Counter(self.value - earlier.value)


def test_each_window_gets_what_the_counters_grew_by_in_it() -> None:
    readings = iter([Counter(10), Counter(25)])
    clock = iter([100.0, 160.0])
    window = Window(lambda: next(readings), Counter(0), started=40.0, clock=lambda: next(clock))
    started, ended, grown = window.close()
    assert (started, ended, grown.value) == (40.0, 100.0, 10)
    started, ended, grown = window.close()
    assert (started, ended, grown.value) == (100.0, 160.0, 15)
