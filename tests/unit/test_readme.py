"""The README's commands are real: each parses, and each command is exercised by a test."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from dbprobe.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SHELL_BLOCKS = re.findall(r"```sh\n(.*?)```", README, re.DOTALL)
COMMAND_LINES = [line.split("#")[0].strip() for block in SHELL_BLOCKS for line in block.splitlines()
                 if line.strip()]
DBPROBE_LINES = [line.removeprefix("sudo ") for line in COMMAND_LINES if "dbprobe " in line]


def test_the_readme_starts_with_the_two_commands() -> None:
    first = SHELL_BLOCKS[0].splitlines()
    assert [line.split("#")[0].strip() for line in first] == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: setup$", makefile, re.M) and re.search(r"^test: setup$", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("line", DBPROBE_LINES)
def test_each_dbprobe_command_in_the_readme_parses(line: str) -> None:
    argv = shlex.split(line)
    assert argv[0] == "dbprobe"
    args = build_parser().parse_args(argv[1:])
    assert args.command in COMMANDS


def test_every_command_shown_is_exercised_by_an_integration_test() -> None:
    shown = {shlex.split(line)[1] for line in DBPROBE_LINES} | {"demo"}
    tests = "\n".join(path.read_text() for path in (ROOT / "tests" / "integration").glob("test_*.py"))
    for command in shown:
        assert f'"{command}"' in tests, f"no integration test runs dbprobe {command}"


def test_every_command_is_in_the_readme() -> None:
    for command in COMMANDS:
        assert f"### `dbprobe {command}`" in README or command == "demo"
    assert "`dbprobe demo`" in README
