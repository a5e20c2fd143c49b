"""The ``dbprobe`` command line: parse arguments, run one command, turn errors into one line."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from importlib import import_module
from typing import Sequence

from dbprobe import __version__
from dbprobe.errors import DbprobeError
from dbprobe.render.output import OutputFailed, flush_stdout, require_stdout

# command name -> (module under dbprobe.commands, one-line help)
COMMANDS = {
    "slow": ("slow", "slow queries live, and a digest by fingerprint on exit"),
    "locks": ("locks", "lock waits with their blockers live, and a digest by lock target on exit"),
    "txn": ("txn", "transactions with their statements live, and a digest on exit"),
    "waits": ("waits", "where the server's time goes: time per wait event, overall and per query class"),
    "top": ("top", "statement classes live, full screen: calls/s, time/s, mean, p95, p99, errors"),
    "agent": ("agent", "always on: follow every server of the host, serve Prometheus metrics, write events"),
    "demo": ("demo", "the whole product on a throwaway PostgreSQL with a workload, in one command"),
    "list": ("listing", "the database servers found, and how each report would trace them"),
    "doctor": ("doctor", "check what dbprobe needs from this machine, with the fix for what is missing"),
}


class _Parser(argparse.ArgumentParser):
    """Usage mistakes as one line, like every other dbprobe error, with where to look."""

    def error(self, message: str) -> None:
        self.exit(2, f"dbprobe: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        arguments = sys.argv[1:] if args is None else list(args)
        unknown = _unknown_option_before_command(arguments)
        if unknown is not None:
            self.error(f"unknown option {unknown}")
        return super().parse_args(arguments, namespace)


_TOP_LEVEL_OPTIONS = ("-h", "--help", "--version")


def _unknown_option_before_command(arguments: Sequence[str]) -> str | None:
    """An option given before any command that dbprobe itself does not know: argparse would
    only say that a command is missing."""
    for argument in arguments:
        if not argument.startswith("-"):
            return None
        if argument not in _TOP_LEVEL_OPTIONS:
            return argument
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dbprobe",
        description="eBPF profiler for PostgreSQL and MySQL/MariaDB: attaches to running "
                    "servers, no restart, no extension.",
    )
    parser.add_argument("--version", action="version", version=f"dbprobe {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=_Parser)
    for name, (module_name, summary) in COMMANDS.items():
        module = import_module(f"dbprobe.commands.{module_name}")
        command = commands.add_parser(name, help=summary, description=summary)
        module.add_arguments(command)
        command.set_defaults(run=module.run_command)
    return parser


def _interrupt(_signal, _frame) -> None:
    raise KeyboardInterrupt


def _unwind_on_signals() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so every cleanup runs; while tracing, the trace
    takes them over to stop cleanly with a digest. An ignored signal stays ignored (nohup)."""
    for number in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(number) is not signal.SIG_IGN:
            signal.signal(number, _interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        _unwind_on_signals()
        args = build_parser().parse_args(argv)
        require_stdout()
        status = args.run(args)
        flush_stdout()
        return status
    except DbprobeError as error:
        print(f"dbprobe: error: {error}", file=sys.stderr)
        if isinstance(error, OutputFailed):
            _discard_stdout()
        return error.exit_status
    except BrokenPipeError:
        # The reader went away (dbprobe ... | head): stop quietly, probes already detached.
        _discard_stdout()
        return 0
    except KeyboardInterrupt:
        return 130


def _discard_stdout() -> None:
    """What is still buffered for a stdout that fails goes nowhere, so that the interpreter's
    last flush at exit does not fail a second time with a traceback."""
    if sys.stdout is not None:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
