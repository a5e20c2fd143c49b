"""``dbprobe doctor``'s output, as text at a fixed width and as JSON lines, and its verdicts."""

from __future__ import annotations

import json

from dbprobe.commands.doctor import CANNOT_RUN_STATUS, exit_status, server_check, server_checks
from dbprobe.recipes.survey import UNAVAILABLE, FamilyStatus, ServerListing
from dbprobe.render.doctor import doctor_json, doctor_text
from dbprobe.discover.processes import ServerProcess
from dbprobe.kernel.preflight import FAIL, OK, WARN, Check

WIDTH = 60

PRIVILEGES = Check("privileges", OK, "running as root")
HEADERS = Check(
    "kernel headers", FAIL, "none for 6.1.0-test: BCC compiles its programs against them",
    "apt-get install linux-headers-6.1.0-test && ln -sfn /usr/src/linux-headers-6.1.0-test "
    "/lib/modules/6.1.0-test/build",
)
CONFIG = Check(
    "kernel config", WARN,
    "cannot read /proc/config.gz or /boot/config-6.1.0-test (the checks below test the kernel)",
    "modprobe configs",
)


def test_text_aligns_columns_wraps_details_and_keeps_fixes_whole() -> None:
    expected = "\n".join([
        "ok    privileges      running as root",
        "fail  kernel headers  none for 6.1.0-test: BCC compiles its",
        "                      programs against them",
        "                      fix: apt-get install linux-headers-6.1.0-test && ln -sfn /usr/src/linux-headers-6.1.0-test /lib/modules/6.1.0-test/build",
        "warn  kernel config   cannot read /proc/config.gz or",
        "                      /boot/config-6.1.0-test (the checks",
        "                      below test the kernel)",
        "                      fix: modprobe configs",
        "",
        "dbprobe cannot run: 1 check failed (see the fix lines)",
    ])
    assert doctor_text([PRIVILEGES, HEADERS, CONFIG], WIDTH) == expected


def test_text_without_a_width_keeps_each_detail_on_one_line() -> None:
    expected = "\n".join([
        "ok    privileges     running as root",
        "warn  kernel config  cannot read /proc/config.gz or /boot/config-6.1.0-test (the checks below test the kernel)",
        "                     fix: modprobe configs",
        "",
        "dbprobe can run, with 1 warning",
    ])
    assert doctor_text([PRIVILEGES, CONFIG], None) == expected


def test_text_of_a_machine_where_everything_is_ok() -> None:
    checks = [PRIVILEGES, Check("bpf", OK, "a BPF program loads")]
    assert doctor_text(checks, WIDTH) == "\n".join([
        "ok    privileges  running as root",
        "ok    bpf         a BPF program loads",
        "",
        "dbprobe can run",
    ])


def test_warnings_and_failures_are_counted_in_the_verdict() -> None:
    checks = [CONFIG, CONFIG, HEADERS, HEADERS]
    assert doctor_text(checks, None).splitlines()[-1] == \
        "dbprobe cannot run: 2 checks failed (see the fix lines)"
    assert doctor_text([CONFIG, CONFIG], None).splitlines()[-1] == "dbprobe can run, with 2 warnings"


def test_json_has_the_four_fields_and_null_for_no_fix() -> None:
    assert json.loads(doctor_json(PRIVILEGES)) == {
        "check": "privileges", "status": "ok", "detail": "running as root", "fix": None}
    assert json.loads(doctor_json(CONFIG)) == {
        "check": "kernel config", "status": "warn", "detail": CONFIG.detail, "fix": "modprobe configs"}


def test_exit_status_is_two_only_when_a_check_fails() -> None:
    assert exit_status([PRIVILEGES, CONFIG]) == 0
    assert exit_status([PRIVILEGES, CONFIG, HEADERS]) == CANNOT_RUN_STATUS == 2


# -- the per-server checks, from what ``dbprobe list`` computes --------------------------------

POSTGRES = ServerProcess(
    db="postgresql", pid=4100, binary="/usr/lib/postgresql/15/bin/postgres",
    binary_in_root="/usr/lib/postgresql/15/bin/postgres", version="15.8", processes=(4100, 4101),
    container=None, ns_pid=None, data_dir="/srv/pg", port=5433, user="postgres",
)
USDT_QUERY = FamilyStatus("query", "usdt", None, ("postgresql:query__start",), 8)
UPROBE_LOCKS = FamilyStatus("locks", "uprobe", "usdt: no USDT probe postgresql:lock__wait__start",
                            ("LockAcquireExtended",), 3)
NO_TXN = FamilyStatus("txn", UNAVAILABLE, "usdt: no USDT probes; uprobe: function X not found", (), 0)


def listing(*families: FamilyStatus, recipe_error: str | None = None) -> ServerListing:
    return ServerListing(POSTGRES, families, recipe_error, backends=())


def test_a_server_whose_families_all_resolve_is_ok() -> None:
    assert server_check(listing(USDT_QUERY, UPROBE_LOCKS), as_root=True) == Check(
        "postgresql pid 4100", OK,
        "/usr/lib/postgresql/15/bin/postgres: query via usdt; locks via uprobe "
        "(usdt: no USDT probe postgresql:lock__wait__start)",
    )


def test_families_traced_the_same_way_for_the_same_reason_are_named_together() -> None:
    fallback = "usdt: the binary has no USDT probes (built without --enable-dtrace)"
    query, locks = (FamilyStatus(name, "uprobe", fallback, ("PortalRun",), 2) for name in ("query", "locks"))
    check = server_check(listing(query, locks, NO_TXN), as_root=True)
    assert check.detail == (
        f"/usr/lib/postgresql/15/bin/postgres: query, locks via uprobe ({fallback}); "
        f"txn unavailable (usdt: no USDT probes; uprobe: function X not found)"
    )


def test_a_family_that_cannot_be_traced_warns_with_the_debug_symbols_fix() -> None:
    check = server_check(listing(USDT_QUERY, NO_TXN), as_root=True)
    assert (check.status, check.detail) == (
        WARN,
        "/usr/lib/postgresql/15/bin/postgres: query via usdt; txn unavailable "
        "(usdt: no USDT probes; uprobe: function X not found)",
    )
    assert check.fix == (
        'apt-get install "$(dpkg-query -S /usr/lib/postgresql/15/bin/postgres | cut -d: -f1)-dbgsym"'
        "  # debug symbols, from the debian-debug archive; dbprobe list -p 4100 says why"
    )


def test_without_root_the_fix_for_a_missing_family_is_to_run_as_root() -> None:
    check = server_check(listing(NO_TXN), as_root=False)
    assert (check.status, check.fix) == (WARN, "sudo dbprobe doctor  # other users' binaries need root")


def test_a_server_without_a_recipe_warns() -> None:
    check = server_check(listing(recipe_error="no recipe for 'postgresql' (have: mysql)"), as_root=True)
    assert (check.name, check.status, check.detail) == (
        "postgresql pid 4100", WARN,
        "/usr/lib/postgresql/15/bin/postgres: no recipe for 'postgresql' (have: mysql)")
    assert check.fix.startswith("pip install --upgrade dbprobe")


def test_no_server_at_all_is_one_warning_with_the_binary_option_as_fix() -> None:
    [check] = server_checks([], as_root=True)
    assert (check.name, check.status) == ("servers", WARN)
    assert "dbprobe slow --binary PATH" in check.fix
