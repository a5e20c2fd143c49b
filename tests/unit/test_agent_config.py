"""The agent's configuration: TOML read and checked, flags over it, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbprobe.agent.config import (DEFAULT_WATCH, AgentConfig, ConfigError, Listen, load_config,
                                  parse_listen)

REPOSITORY = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return str(path)


def test_defaults_without_a_file() -> None:
    config = load_config(None)
    assert config.listen == Listen("127.0.0.1", 9187)
    assert config.families == ("query", "locks", "txn")
    assert config.thresholds_ns == {"query": 100_000_000, "txn": 100_000_000, "locks": 100_000_000}
    assert config.top_k == 50 and config.events is None and config.binaries == ()
    assert config.breakdown is False
    assert config.watch == DEFAULT_WATCH


def test_a_full_file(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    config = load_config(write(tmp_path, f'''
listen = "0.0.0.0:9200"
events = "{events}"
families = ["txn", "query"]
databases = ["postgresql"]
top_k = 7
breakdown = true
spare_programs = 0
binaries = ["/opt/pg/*"]
watch = []
detach_after = "2m"
[thresholds]
query = "250us"
txn = 2
'''))
    assert config.listen == Listen("0.0.0.0", 9200)
    assert config.events == str(events)
    assert config.families == ("query", "txn")  # in the agent's order
    assert config.databases == ("postgresql",)
    assert config.top_k == 7 and config.binaries == ("/opt/pg/*",) and config.watch == ()
    assert config.breakdown is True and config.spare_programs == 0
    assert config.detach_after_s == 120.0
    assert config.thresholds_ns == {"query": 250_000, "txn": 2_000_000, "locks": 100_000_000}
    assert config.kernel_thresholds_ns() == {"query": 250_000, "txn": 2_000_000}


def test_flags_take_precedence(tmp_path: Path) -> None:
    path = write(tmp_path, 'listen = "127.0.0.1:9300"\nevents = "-"\n')
    config = load_config(path, listen="[::1]:9400", events=str(tmp_path / "e.jsonl"))
    assert config.listen == Listen("::1", 9400) and str(config.listen) == "[::1]:9400"
    assert config.events == str(tmp_path / "e.jsonl")


@pytest.mark.parametrize("text, message", [
    ('top_k = "ten"', "agent.toml: top_k: must be a whole number, not a string"),
    ("top_k = 0", "agent.toml: top_k: 0 is out of range (1 to 1000)"),
    ("top_k = true", "agent.toml: top_k: must be a whole number, not true/false"),
    ('breakdown = "yes"', "agent.toml: breakdown: must be true or false, not a string"),
    ("spare_programs = 17", "agent.toml: spare_programs: 17 is out of range (0 to 16)"),
    ('families = ["query", "io"]', "agent.toml: families: unknown 'io' (choose from query, locks, txn)"),
    ("families = []", "agent.toml: families: is empty; choose from query, locks, txn"),
    ('databases = ["oracle"]', "agent.toml: databases: unknown 'oracle'"),
    ('[thresholds]\nquery = "fast"', "agent.toml: thresholds.query: 'fast' is not a duration"),
    ('[thresholds]\nquery = "2d"', "agent.toml: thresholds.query: '2d' is not a duration"),
    ('[thresholds]\nquery = "25h"', "agent.toml: thresholds.query: '25h' is longer than a day"),
    ('[thresholds]\nio = "1s"', "agent.toml: thresholds.io: unknown family (known: query, txn, locks)"),
    ('thresholds = "1s"', "agent.toml: thresholds: must be a table ([thresholds]), not a string"),
    ('listen = "9187"', "agent.toml: listen: '9187' is not HOST:PORT"),
    ('listen = "localhost:http"', "agent.toml: listen: 'localhost:http': the port must be a number"),
    ('listen = "::1:9187"', "agent.toml: listen: '::1:9187': write an IPv6 address in brackets"),
    ('listen = 9187', "agent.toml: listen: must be a string, not a number"),
    ('events = "/no/such/dir/e.jsonl"', "agent.toml: events: '/no/such/dir/e.jsonl': its directory /no/such/dir does not exist"),
    ('binaries = ["postgres"]', "agent.toml: binaries: 'postgres' is not an absolute path or pattern"),
    ('watch = "/usr/sbin/mariadbd"', "agent.toml: watch: must be a list of strings, not a string"),
    ('watch = [1]', "agent.toml: watch: must be a list of strings, and 1 is a number"),
    ('detach_after = "soon"', "agent.toml: detach_after: 'soon' is not a duration"),
    ("thresold = 1", "agent.toml: unknown key 'thresold' (known: binaries, breakdown, databases, detach_after,"),
    ("top_k = ", "agent.toml: not valid TOML: "),
])
def test_a_mistake_names_the_key_and_the_reason(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text))
    line = str(raised.value).replace(str(tmp_path) + "/", "")
    assert line.startswith(message), line
    assert "\n" not in line
    assert raised.value.exit_status == 2


def test_a_missing_or_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--config .*nothere.toml: no such file$"):
        load_config(str(tmp_path / "nothere.toml"))
    with pytest.raises(ConfigError, match="is a directory, not a file"):
        load_config(str(tmp_path))
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe top_k = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(binary))


@pytest.mark.parametrize("text, listen", [
    ("127.0.0.1:9187", Listen("127.0.0.1", 9187)),
    ("localhost:0", Listen("localhost", 0)),
    ("[::]:9187", Listen("::", 9187)),
    ("metrics-host.example:80", Listen("metrics-host.example", 80)),
])
def test_listen_addresses(text: str, listen: Listen) -> None:
    assert parse_listen(text, "--listen") == listen


@pytest.mark.parametrize("text", ["", ":9187", "host:", "host:70000", "[zz]:1", "ho st:1", "[::1:9"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ConfigError, match="^--listen: "):
        parse_listen(text, "--listen")


def test_a_flag_is_checked_as_the_file_is(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^--listen: 'nope' is not HOST:PORT"):
        load_config(None, listen="nope")
    with pytest.raises(ConfigError, match="^--events: empty"):
        load_config(None, events="")
    assert load_config(None, events="-").events == "-"


def test_what_needs_the_programs_rebuilt() -> None:
    base = AgentConfig()
    assert not base.tracing_differs(AgentConfig(top_k=3, events="-"))
    assert not base.tracing_differs(AgentConfig(thresholds_ns={**base.thresholds_ns, "locks": 0}))
    assert base.tracing_differs(AgentConfig(thresholds_ns={**base.thresholds_ns, "query": 0}))
    assert base.tracing_differs(AgentConfig(families=("query",)))
    assert base.tracing_differs(AgentConfig(breakdown=True))


def test_the_packaged_example_is_valid() -> None:
    config = load_config(str(REPOSITORY / "packaging" / "agent.toml"))
    assert config.listen == Listen("127.0.0.1", 9187)
    assert set(config.families) == {"query", "locks", "txn"}
