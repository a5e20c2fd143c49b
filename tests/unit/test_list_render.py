"""``dbprobe list``'s output, as text at a fixed width and as JSON lines."""

from __future__ import annotations

import json

from dbprobe.recipes.survey import UNAVAILABLE, FamilyStatus, ServerListing, inspect_servers
from dbprobe.render.listing import listing_json, listing_text
from dbprobe.discover.processes import BackendInfo, ServerProcess

WIDTH = 80

IN_CONTAINER = ServerProcess(
    db="postgresql", pid=4100, binary="/proc/4100/root/usr/lib/postgresql/16/bin/postgres",
    binary_in_root="/usr/lib/postgresql/16/bin/postgres", version="16.4",
    processes=(4100, 4101, 4102, 4103), container="0123456789ab", ns_pid=1,
    data_dir="/var/lib/postgresql/data", port=5432, user="999", root="/proc/4100/root",
)
BACKENDS = (
    BackendInfo(4101, "checkpointer"),
    BackendInfo(4102, "client backend", "app", "shop", "172.17.0.1(40412)", "idle"),
    BackendInfo(4103, "client backend", "app", "shop", "172.17.0.1(40414)", "SELECT"),
)
QUERY = FamilyStatus("query", "uprobe",
                     "usdt: the binary has no USDT probes (built without --enable-dtrace)",
                     ("pgstat_report_activity", "PortalRun", "PortalRun (return)"), 4)
TXN = FamilyStatus("txn", UNAVAILABLE,
                   "usdt: the binary has no USDT probes (built without --enable-dtrace); "
                   "uprobe: function StartTransaction not found in the symbol tables", (), 0)

MARIADB = ServerProcess(
    db="mariadb", pid=5200, binary="/usr/sbin/mariadbd", binary_in_root="/usr/sbin/mariadbd",
    version="10.11.6", processes=(5200,), container=None, ns_pid=None, data_dir=None, port=None,
    user="mysql",
)


def test_text_blocks_at_80_columns() -> None:
    listings = [
        ServerListing(IN_CONTAINER, (QUERY, TXN), None, BACKENDS),
        ServerListing(MARIADB, (), "no recipe for 'mariadb' (have: postgresql)", ()),
    ]
    assert listing_text(listings, WIDTH) == "\n".join([
        "postgresql 16.4: pid 4100, 4 processes, container 0123456789ab, pid 1 inside",
        "  binary     /usr/lib/postgresql/16/bin/postgres",
        "  host path  /proc/4100/root/usr/lib/postgresql/16/bin/postgres",
        "  root       /proc/4100/root",
        "  data dir   /var/lib/postgresql/data",
        "  port       5432",
        "  user       999",
        "  backends   3: 2 client backends, 1 checkpointer",
        "  query      uprobe, 4 probes (usdt: the binary has no USDT probes (built",
        "             without --enable-dtrace))",
        "  txn        unavailable: usdt: the binary has no USDT probes (built without",
        "             --enable-dtrace); uprobe: function StartTransaction not found in",
        "             the symbol tables",
        "",
        "mariadb 10.11.6: pid 5200, 1 process",
        "  binary    /usr/sbin/mariadbd",
        "  data dir  -",
        "  port      -",
        "  user      mysql",
        "  recipe    no recipe for 'mariadb' (have: postgresql)",
    ])


def test_text_without_a_width_never_wraps() -> None:
    text = listing_text([ServerListing(IN_CONTAINER, (TXN,), None, ())], None)
    assert text.splitlines()[-1] == f"  txn        unavailable: {TXN.reason}"


def test_a_reason_shared_by_several_families_is_given_once() -> None:
    locks = FamilyStatus("locks", "uprobe", QUERY.reason, ("LockAcquireExtended",), 7)
    text = listing_text([ServerListing(MARIADB, (QUERY, locks), None, ())], None)
    assert text.splitlines()[-2:] == [
        f"  query     uprobe, 4 probes ({QUERY.reason})",
        "  locks     uprobe, 7 probes (same reason as query)",
    ]


def test_json_has_every_field_with_families_by_name_and_backends_as_a_list() -> None:
    record = json.loads(listing_json(ServerListing(IN_CONTAINER, (QUERY, TXN), None, BACKENDS)))
    assert record == {
        "db": "postgresql", "version": "16.4", "pid": 4100, "ns_pid": 1, "container": "0123456789ab",
        "binary": "/usr/lib/postgresql/16/bin/postgres",
        "host_binary": "/proc/4100/root/usr/lib/postgresql/16/bin/postgres",
        "binary_deleted": False, "root": "/proc/4100/root", "data_dir": "/var/lib/postgresql/data",
        "port": 5432, "user": "999",
        "processes": 4, "recipe_error": None,
        "families": {
            "query": {"mechanism": "uprobe", "reason": QUERY.reason,
                      "probes": ["pgstat_report_activity", "PortalRun", "PortalRun (return)"], "sites": 4},
            "txn": {"mechanism": "unavailable", "reason": TXN.reason, "probes": [], "sites": 0},
        },
        "backends": [
            {"pid": 4101, "kind": "checkpointer", "user": None, "database": None, "client": None,
             "state": None},
            {"pid": 4102, "kind": "client backend", "user": "app", "database": "shop",
             "client": "172.17.0.1(40412)", "state": "idle"},
            {"pid": 4103, "kind": "client backend", "user": "app", "database": "shop",
             "client": "172.17.0.1(40414)", "state": "SELECT"},
        ],
    }


CHROOTED = ServerProcess(
    db="mysql", pid=5300, binary="/proc/5300/root/usr/sbin/mysqld", binary_in_root="/usr/sbin/mysqld",
    version="9.7.4", processes=(5300,), container=None, ns_pid=1, data_dir="/run/db/data",
    port=33061, user="mysql", root="/srv/jail",
)


def test_a_server_chrooted_into_a_directory_of_the_host_shows_it_as_its_root() -> None:
    listing = ServerListing(CHROOTED, (), None, ())
    assert listing_text([listing], WIDTH) == "\n".join([
        "mysql 9.7.4: pid 5300, 1 process, pid 1 inside",
        "  binary     /usr/sbin/mysqld",
        "  host path  /proc/5300/root/usr/sbin/mysqld",
        "  root       /srv/jail",
        "  data dir   /run/db/data",
        "  port       33061",
        "  user       mysql",
    ])
    record = json.loads(listing_json(listing))
    assert (record["binary"], record["host_binary"], record["root"]) == (
        "/usr/sbin/mysqld", "/proc/5300/root/usr/sbin/mysqld", "/srv/jail")


def test_json_of_a_server_without_a_recipe() -> None:
    record = json.loads(listing_json(ServerListing(MARIADB, (), "no recipe for 'mariadb'", ())))
    assert (record["families"], record["backends"], record["recipe_error"]) == ({}, [], "no recipe for 'mariadb'")
    assert (record["ns_pid"], record["container"], record["port"], record["root"]) == (None, None, None, None)


def test_a_server_whose_binary_is_known_only_by_name_lists_every_family_as_unavailable() -> None:
    # What discovery gives without root: the command name, not the file the process runs.
    by_name = ServerProcess(
        db="postgresql", pid=4100, binary="postgres", binary_in_root="postgres", version=None,
        processes=(4100,), container=None, ns_pid=None, data_dir=None, port=None, user="postgres",
    )
    [listing] = inspect_servers([by_name])
    assert listing.families, "the families come from the postgresql recipe"
    assert {status.mechanism for status in listing.families} == {UNAVAILABLE}
    assert {status.reason for status in listing.families} == {
        "cannot tell which postgres binary pid 4100 runs (reading /proc/4100/exe needs root)"}
