"""Every engine keeps the same contract: the same names, the same return types.

In the manner of psutil's per-platform contract tests: the generic stages call only what
``dbprobe.engines.base.Engine`` declares, so each engine must answer all of it, with the
types it promises, and offer nothing the others do not.
"""

from __future__ import annotations

import glob
import inspect
import json
import typing

import pytest

from dbprobe.binary.elf import ElfBinary
from dbprobe.correlate.fingerprint import Fingerprint
from dbprobe.correlate.lockwaits import LockWaitTracker
from dbprobe.digest.locks import LockDigest
from dbprobe.discover.backends import BackendDirectory
from dbprobe.engines.base import NO_MODE, BackendInfo, Engine, LockHolder, ServerSettings
from dbprobe.engines.registry import ENGINES, NAMES, engine_for, engines_running, identify
from dbprobe.errors import DbprobeError
from dbprobe.kernel.records import EV_LOCK_WAIT_DONE, EV_LOCK_WAIT_START, LOCK_WAIT_FAILED, RawLockEvent
from dbprobe.model import LockTarget, Source
from dbprobe.render import locks as lockreport
from dbprobe.recipes.load import RecipeError, _recipe_from, load_recipe
from tests.support.sdtbin import build_sdt_probes

ENGINE_IDS = [engine.name for engine in ENGINES]
each_engine = pytest.mark.parametrize("engine", ENGINES, ids=ENGINE_IDS)


class FakeServer:
    """A server's main process as an engine reads it, with nothing on disk."""

    def __init__(self, argv: list[str], files: dict[str, str] | None = None,
                 environment: dict[str, str] | None = None, cwd: str | None = "/srv/data"):
        self.argv = argv
        self._files = files or {}
        self._environment = environment or {}
        self._cwd = cwd

    def environment_variable(self, name: str) -> str | None:
        return self._environment.get(name)

    def working_directory(self) -> str | None:
        return self._cwd

    def read_text(self, path: str) -> str | None:
        return self._files.get(path)


def lock_start(**fields) -> RawLockEvent:
    record = dict(kind=EV_LOCK_WAIT_START, pid=4242, tid=4242, hook=0, ts_ns=1, fields=(1, 2, 3, 4),
                  locktype=3, mode=7, flags=0, holders=((4343, 1 << 7, False), (4242, 1 << 7, False)),
                  text=b"update t set v = 1")
    record.update(fields)
    return RawLockEvent(**record)


# -- the same names -----------------------------------------------------------------------------


def contract_names() -> set[str]:
    return {name for name in dir(Engine) if not name.startswith("_")} | set(
        name for name in typing.get_type_hints(Engine) if not name.startswith("_"))


@each_engine
def test_every_abstract_method_is_implemented(engine: Engine) -> None:
    assert not inspect.isabstract(type(engine))


@each_engine
def test_no_public_name_beyond_the_contract(engine: Engine) -> None:
    public = {name for name in dir(engine) if not name.startswith("_")}
    assert public == contract_names()


@each_engine
def test_every_declared_attribute_is_set(engine: Engine) -> None:
    for name, kind in typing.get_type_hints(Engine).items():
        assert isinstance(getattr(engine, name), kind), name


def test_names_are_distinct_and_found_by_name() -> None:
    assert len(set(NAMES)) == len(NAMES) == len(ENGINES)
    assert len({engine.display_name for engine in ENGINES}) == len(ENGINES)
    for engine in ENGINES:
        assert engine_for(engine.name) is engine


def test_an_unknown_engine_is_an_error() -> None:
    with pytest.raises(DbprobeError, match="unknown database 'oracle': expected one of "
                                           "postgresql, mariadb, mysql"):
        engine_for("oracle")


# -- the same return types ------------------------------------------------------------------------


@each_engine
def test_process_names_come_from_its_recipe(engine: Engine) -> None:
    names = engine.process_names
    assert names == load_recipe(engine.name).process_names
    assert names and all(isinstance(name, str) and name and "/" not in name for name in names)
    for name in names:
        assert engine in engines_running(name)


@each_engine
def test_fingerprint_is_a_fingerprint(engine: Engine) -> None:
    found = engine.fingerprint("SELECT * FROM t WHERE id = 42")
    assert isinstance(found, Fingerprint)
    assert found.text == "SELECT * FROM t WHERE id = ?"


@each_engine
def test_no_version_in_a_binary_of_no_server(engine: Engine, tmp_path) -> None:
    assert engine.find_version(ElfBinary(str(build_sdt_probes(tmp_path)))) is None


@each_engine
def test_one_off_jobs_are_not_serving(engine: Engine) -> None:
    binary = f"/usr/sbin/{engine.process_names[0]}"
    assert engine.is_serving([binary]) is True
    assert engine.is_serving([binary, "--version"]) is False
    assert engine.is_serving([binary, "--help"]) is False


@each_engine
def test_settings_are_server_settings(engine: Engine) -> None:
    settings = engine.settings(FakeServer([engine.process_names[0]]))
    assert settings == ServerSettings(data_dir="/srv/data", port=None)  # the working directory


@each_engine
def test_backend_info_is_backend_info_or_none(engine: Engine) -> None:
    for title in ("postgres: alice shop [local] idle", "mysqld", ""):
        info = engine.backend_info(4242, title)
        assert info is None or isinstance(info, BackendInfo)
    assert (engine.backend_info(4242, "postgres: alice shop [local] idle") is not None) == engine.forks_backends


@each_engine
def test_lock_decoding_types(engine: Engine) -> None:
    raw = lock_start()
    target = engine.lock_target(raw, None, lambda pid, address: None)
    assert isinstance(target.locktype, str) and target.locktype
    for name in ("database", "relation", "transaction"):
        assert getattr(target, name) is None or isinstance(getattr(target, name), int)
    assert isinstance(target.group_key, tuple)
    assert isinstance(target.describe(), str) and target.describe()
    assert isinstance(target.describe(relation_name="public.t", database_name="shop"), str)
    assert isinstance(engine.lock_mode(raw), str) and engine.lock_mode(raw)
    holders = engine.conflicting_holders(raw)
    assert isinstance(holders, tuple) and all(isinstance(holder, LockHolder) for holder in holders)
    assert all(holder.pid != raw.pid for holder in holders)  # a waiter does not block itself
    assert isinstance(engine.unseen_blocker(target), str) and engine.unseen_blocker(target)


@each_engine
def test_wait_outcomes(engine: Engine) -> None:
    assert engine.wait_outcome(LOCK_WAIT_FAILED) == "deadlock"
    assert isinstance(engine.wait_outcome(0), str)


def test_lock_target_protocol_is_what_the_model_asks() -> None:
    declared = {name for name in dir(LockTarget) if not name.startswith("_")}
    assert declared == {"locktype", "database", "relation", "transaction", "group_key", "describe"}


# -- what each engine says -----------------------------------------------------------------------


def test_dialects() -> None:
    secret = 'update t set v = "secret"'
    assert engine_for("mariadb").fingerprint(secret).text == "update t set v = ?"
    assert engine_for("mysql").fingerprint(secret).text == "update t set v = ?"
    assert engine_for("postgresql").fingerprint(secret).text == 'update t set v = "secret"'  # a column


def test_modes_and_holders() -> None:
    raw = lock_start()
    postgres, mariadb = engine_for("postgresql"), engine_for("mariadb")
    assert postgres.lock_mode(raw) == "ExclusiveLock"
    assert postgres.conflicting_holders(raw) == (LockHolder(4343, ("ExclusiveLock",), False),)
    assert mariadb.lock_mode(raw) == NO_MODE
    assert mariadb.conflicting_holders(raw) == ()
    assert mariadb.lock_target(raw, None, lambda pid, address: None).describe() == "an InnoDB row lock"


def test_postgres_settings_from_its_command_line_and_postmaster_pid() -> None:
    postgres = engine_for("postgresql")
    argv = ["/usr/lib/postgresql/15/bin/postgres", "-D", "/var/lib/postgresql/15/main",
            "-c", "config_file=/etc/postgresql/15/main/postgresql.conf"]
    pid_file = {"/var/lib/postgresql/15/main/postmaster.pid": "709\n/var/lib/postgresql/15/main\n1\n5433\n"}
    assert postgres.settings(FakeServer(argv, pid_file)) == ServerSettings("/var/lib/postgresql/15/main", 5433)
    assert postgres.settings(FakeServer(["postgres", "-p5434"], environment={"PGDATA": "/pg"})) == (
        ServerSettings("/pg", 5434))
    assert postgres.settings(FakeServer(["postgres", "--port=5435", "-D", "relative"])) == (
        ServerSettings("/srv/data", 5435))  # relative to its starter: its working directory
    assert postgres.is_serving(["postgres: alice shop [local] idle"]) is False  # an orphaned backend


@pytest.mark.parametrize("engine_name", ["mariadb", "mysql"])
def test_mysql_settings_from_its_command_line(engine_name: str) -> None:
    engine = engine_for(engine_name)
    argv = ["/usr/sbin/mysqld", "--datadir=/var/lib/mysql", "--port", "3307", "-P3308"]
    assert engine.settings(FakeServer(argv)) == ServerSettings("/var/lib/mysql", 3308)
    assert engine.settings(FakeServer(["mysqld", "-h", "/data", "--port=x"])) == ServerSettings("/data", None)


def versions(**found: str | None):
    return lambda engine: found.get(engine.name)


def test_identify_by_name_and_version() -> None:
    postgres, mariadb, mysql = (engine_for(name) for name in NAMES)
    # A MariaDB binary also holds a MySQL-like release number: MariaDB's own string wins.
    assert identify("mysqld", versions(mariadb="10.11.18", mysql="5.5.5")) == (mariadb, "10.11.18")
    assert identify("mysqld", versions(mysql="8.0.36")) == (mysql, "8.0.36")
    assert identify("mysqld", versions()) == (mysql, None)  # MySQL's own name
    assert identify("mariadbd", versions()) == (mariadb, None)
    assert identify("postmaster", versions(postgresql="9.6.24")) == (postgres, "9.6.24")
    # A binary of another name is a server's only when its version string says so.
    assert identify("postgres-copy", versions(postgresql="15.18")) == (postgres, "15.18")
    assert identify("mysqld-copy", versions(mysql="8.0.36")) is None
    assert identify("true", versions()) is None


def test_identify_installed_servers() -> None:
    mariadbd = glob.glob("/usr/sbin/mariadbd")
    postgres = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not mariadbd or not postgres:
        pytest.fail("the tests read the installed MariaDB and PostgreSQL binaries (make setup)",
                    pytrace=False)
    cases = ((mariadbd[0], "mariadb", ("mysqld", "mariadbd", "renamed")),
             (postgres[-1], "postgresql", ("postgres", "postmaster", "renamed")))
    for path, expected, names in cases:
        binary = ElfBinary(path)
        for name in names:
            identified = identify(name, lambda engine: engine.find_version(binary))
            assert identified is not None and identified[0].name == expected, (path, name)
            assert identified[1] is not None and identified[1][0].isdigit()


@pytest.mark.parametrize("engine_name", ["mariadb", "mysql"])
def test_lock_report_hides_double_quoted_literals(engine_name: str) -> None:
    # "..." is a string in MySQL's dialect: the waiter's secret must not reach the report.
    hook = 3
    waits = LockWaitTracker({hook: Source(engine_name, "/usr/sbin/mysqld", "uprobe")}, {hook: None},
                            BackendDirectory(), last_statement=lambda pid: None)
    waits.record(lock_start(hook=hook, locktype=3, holders=(), text=b'update t set v = "secret" where id = 1'))
    ended = waits.record(lock_start(hook=hook, kind=EV_LOCK_WAIT_DONE, ts_ns=2_000_000, text=b""))
    digest = LockDigest()
    digest.add(ended)

    text = "\n".join(lockreport.wait_lines(ended, show_literals=False, width=None))
    record = json.loads(lockreport.wait_json(ended, show_literals=False))
    summary = lockreport.summary_json(digest, [], started=0.0, ended=1.0, still_waiting=0, lost=0)

    assert "    waiter:  update t set v = ? where id = ?" in text.splitlines()
    assert record["query"] == "update t set v = ? where id = ?"
    assert "secret" not in text + json.dumps(record) + summary
    shown = json.loads(lockreport.wait_json(ended, show_literals=True))
    assert shown["query"] == 'update t set v = "secret" where id = 1'


@each_engine
def test_lwlock_waits_are_a_list(engine: Engine) -> None:
    class NoLWLockCounts:
        def lwlock_totals(self) -> list:
            return []

    class NoMapsAtAll:
        def __getattr__(self, name: str):
            raise AssertionError(f"{engine.name}'s program has no {name}")

    collector = NoLWLockCounts() if engine.name == "postgresql" else NoMapsAtAll()
    assert engine.lwlock_waits(collector, [4242]) == []


@pytest.mark.parametrize("names", [["bin/postgres"], "postgres", [""], [7]])
def test_process_names_must_be_binary_file_names(names, tmp_path) -> None:
    # Discovery matches them against the file names servers run: a path or a non-string never would.
    (tmp_path / "demo.bpf.c").write_text("/* handlers */\n")
    document = {"database": "demo", "process_names": names,
                "families": {"query": {"source": "demo.bpf.c", "variants": []}}}
    with pytest.raises(RecipeError, match="demo.toml: 'process_names' must be a list of binary file names"):
        _recipe_from(document, tmp_path / "demo.toml")
