"""Options the tracing commands share, with the conventions of the BCC tools."""

from __future__ import annotations

import argparse

from dbprobe.errors import DbprobeError
from dbprobe.kernel.program import DEFAULT_RINGBUF_BYTES, PAGE_SIZE, Parameters
from dbprobe.render.output import Output, terminal_width
from dbprobe.units import parse_duration_ns


def add_target_options(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group()
    target.add_argument("-p", "--pid", type=int, metavar="PID",
                        help="trace only this server (its postmaster, any backend, or mysqld)")
    target.add_argument("--binary", metavar="PATH",
                        help="trace this server binary, including servers not started yet")


def add_output_options(parser: argparse.ArgumentParser, *, digest: str) -> None:
    parser.add_argument("--duration", type=seconds, metavar="S",
                        help="stop after this long (30, 30s, 5m); default: until Ctrl-C")
    parser.add_argument("--interval", type=seconds, metavar="S",
                        help=f"print {digest} every S seconds, for that interval")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per line on stdout; messages go to stderr")
    parser.add_argument("--show-literals", action="store_true",
                        help="show statements as sent, literals included (they can hold secrets)")
    parser.add_argument("--ring-buffer", type=ring_buffer_bytes, default=DEFAULT_RINGBUF_BYTES,
                        metavar="SIZE", dest="ring_buffer",
                        help="kernel buffer for records on their way to dbprobe: a power of two "
                             "from 4K to 1G (8M by default); more loses fewer under bursts")


def output_from_args(args: argparse.Namespace) -> Output:
    return Output(json=args.json, show_literals=args.show_literals, width=terminal_width())


MAX_THRESHOLD_NS = 24 * 3600 * 10**9  # a day: longer than any statement worth a live line


def parse_threshold_ns(text: str) -> int:
    try:
        threshold_ns = parse_duration_ns(text, default_unit="ms")
    except ValueError as error:
        raise DbprobeError(f"--threshold: {error}") from None
    if threshold_ns > MAX_THRESHOLD_NS:
        raise DbprobeError(f"--threshold: '{text}' is longer than a day, the most it takes (24h)")
    return threshold_ns


def at_least_two(text: str) -> int:
    """A client count for the demo: one session holds the hot row, the others queue."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if number < 2:
        raise argparse.ArgumentTypeError("must be at least 2 (one session holds a lock, the others queue)")
    return number


_SIZE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
MAX_RINGBUF_BYTES = 1 << 30


def ring_buffer_bytes(text: str) -> int:
    """A ring buffer size: 64M, 512K, 1G; a plain number is MiB."""
    number, unit = text.strip().rstrip("iBb").upper(), "M"
    if number[-1:] in _SIZE_UNITS:
        number, unit = number[:-1], number[-1]
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 16M")
    size = int(number) * _SIZE_UNITS[unit]
    try:
        Parameters(ringbuf_bytes=size)
    except ValueError:
        size = 0
    if not PAGE_SIZE <= size <= MAX_RINGBUF_BYTES:
        raise argparse.ArgumentTypeError(f"{text!r} is not a power of two from 4K to 1G")
    return size


def seconds(text: str) -> float:
    try:
        seconds = parse_duration_ns(text, default_unit="s") / 1e9
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be more than zero")
    return seconds
