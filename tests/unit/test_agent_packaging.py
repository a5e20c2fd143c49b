"""The systemd unit starts the agent with options it has, and stops and reloads it with the
signals it handles."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

from dbprobe.cli import build_parser

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(PACKAGING / "dbprobe-agent.service")
    return parser


def test_the_unit_runs_the_agent_with_the_packaged_configuration() -> None:
    service = unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/dbprobe") and argv[1] == "agent"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "agent" and args.config == "/etc/dbprobe/agent.toml"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"  # the agent reloads on SIGHUP
    assert service["KillSignal"] == "SIGTERM"  # and detaches everything on SIGTERM
    assert int(service["TimeoutStopSec"]) >= 60  # time to finish a compile under way
    assert "CAP_BPF" in service["CapabilityBoundingSet"] and service["NoNewPrivileges"] == "yes"
    assert unit()["Install"]["WantedBy"] == "multi-user.target"
