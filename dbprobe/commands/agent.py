"""``dbprobe agent``: follow every server of the host, serve Prometheus metrics, write events."""

from __future__ import annotations

import argparse

from dbprobe.agent.config import DEFAULT_LISTEN
from dbprobe.agent.run import run_agent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", metavar="HOST:PORT",
                        help=f"serve /metrics here (default {DEFAULT_LISTEN}; [::1]:9187 for IPv6)")
    parser.add_argument("--config", metavar="FILE",
                        help="a TOML file: thresholds, families, listen, events, top_k, binaries, "
                             "watch, detach_after (flags take precedence; SIGHUP reloads it)")
    parser.add_argument("--events", metavar="FILE",
                        help="append slow statements, lock waits and deadlocks to FILE as JSON "
                             "lines (- for stdout)")


def run_command(args: argparse.Namespace) -> int:
    return run_agent(args.config, args.listen, args.events)
