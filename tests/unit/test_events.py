"""Kernel records: encoding and decoding, and the ctypes mirror of ``probes/dbprobe.h``."""

from __future__ import annotations

import ctypes
import re
import subprocess
from pathlib import Path

import pytest

from dbprobe.kernel import records as events
from dbprobe.kernel.records import (
    EV_QUERY,
    PROTOCOLS,
    QF_ERROR,
    QF_TRUNCATED,
    TEXT_MAX,
    Header,
    QueryEventHead,
    RawQuery,
    Totals,
    decode,
    decode_query,
    encode_query,
)
from dbprobe.engines.postgresql import locks as pglocks
from dbprobe.engines.mysql import locks as mylocks
from dbprobe.kernel.entrypoints import MAX_ARGS
from dbprobe.kernel.program import DEFAULT_RINGBUF_BYTES, PAGE_SIZE
from dbprobe.recipes.load import probes_dir
from tests.support.sdtbin import compile_c


def raw_query(text: bytes = b"SELECT 1", **changes: object) -> RawQuery:
    fields = dict(pid=4242, tid=4243, hook=3, start_ns=1_000_000_000, end_ns=1_250_000_000,
                  protocol="extended", flags=0, text=text)
    fields.update(changes)
    return RawQuery(**fields)


def decode_from_memory(record: bytes) -> RawQuery | None:
    """As the ring-buffer callback sees a record: an address and a size."""
    buffer = ctypes.create_string_buffer(record, len(record))
    return decode(ctypes.addressof(buffer), len(record))


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        b"SELECT pg_sleep(0.1)",
        b"",
        b"x" * TEXT_MAX,  # as long as the kernel captures
        b"SELECT '\xff\xfe' -- not UTF-8",
        "SELECT 'caf\u00e9', '\u65e5\u672c'".encode(),
        b"SELECT 1\x00hidden after a NUL",
    ],
    ids=["plain", "empty", "full-length", "not-utf8", "utf8", "embedded-nul"],
)
def test_encode_decode_round_trip(text: bytes) -> None:
    raw = raw_query(text)
    record = encode_query(raw)
    assert len(record) == 304 + len(text)
    assert decode_query(record) == raw
    assert decode_from_memory(record) == raw


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_protocol_and_flag_survives(protocol: str) -> None:
    raw = raw_query(protocol=protocol, flags=QF_ERROR | QF_TRUNCATED, hook=65535,
                    pid=2**32 - 1, tid=1, start_ns=2**64 - 2, end_ns=2**64 - 1)
    assert decode_query(encode_query(raw)) == raw


def test_duration() -> None:
    assert raw_query(start_ns=5_000, end_ns=7_500).duration_ns == 2_500


def test_text_is_cut_at_its_length_not_at_the_record_end() -> None:
    record = encode_query(raw_query(b"SELECT 1")) + b"garbage the kernel did not send"
    assert decode_query(record).text == b"SELECT 1"


def test_unknown_protocol_number_decodes_as_unknown() -> None:
    record = bytearray(encode_query(raw_query()))
    record[32] = len(PROTOCOLS)  # the protocol byte
    assert decode_query(bytes(record)).protocol == "unknown"


def test_unknown_kind_is_skipped() -> None:
    record = bytearray(encode_query(raw_query()))
    record[0:4] = (99).to_bytes(4, "little")
    assert decode_from_memory(bytes(record)) is None


def test_short_record_of_the_query_kind_is_skipped() -> None:
    header = bytes(Header(EV_QUERY, 1, 1, 0, 0))
    assert decode_from_memory(header + b"\x00" * 8) is None


def test_decode_reads_the_header_fields() -> None:
    record = encode_query(raw_query(pid=10, tid=11, hook=12))
    header = Header.from_buffer_copy(record)
    fields = (header.kind, header.pid, header.tid, header.hook, header.reserved)
    assert fields == (EV_QUERY, 10, 11, 12, 0)


# --- the layout, by hand --------------------------------------------------------------------


def field_offsets(struct: type[ctypes.Structure]) -> dict[str, int]:
    return {name: getattr(struct, name).offset for name, _ in struct._fields_}


def test_layout_derived_by_hand() -> None:
    # u32 kind, u32 pid, u32 tid, u16 hook, u16 reserved.
    assert ctypes.sizeof(Header) == 16
    assert field_offsets(Header) == {"kind": 0, "pid": 4, "tid": 8, "hook": 12, "reserved": 14}
    # header, u64 start_ns, u64 end_ns, u8 protocol, u8 flags, u16 text_len, u32 database,
    # then the breakdown: 11 u64, 4 u32, 8 wait counts of 16 bytes and the workers' 4 u64.
    assert ctypes.sizeof(events.BreakdownStruct) == 11 * 8 + 4 * 4 + 8 * 16 + 4 * 8
    assert ctypes.sizeof(QueryEventHead) == 40 + 264
    assert field_offsets(QueryEventHead) == {
        "hdr": 0, "start_ns": 16, "end_ns": 24, "protocol": 32, "flags": 33, "text_len": 34,
        "database": 36, "breakdown": 40}
    assert events._QUERY_HEAD_SIZE == 304  # where the text starts
    assert ctypes.sizeof(Totals) == 40


# --- the layout, as the C compiler sees the header --------------------------------------------

# Each struct of probes/dbprobe.h that user space reads, and its ctypes mirror. A mirror may
# stop before a trailing text array: that text follows the head for text_len bytes.
CONTRACT_STRUCTS: dict[str, type[ctypes.Structure]] = {
    "dbp_header": Header,
    "dbp_totals": Totals,
    "dbp_wait_count": events.WaitCount,
    "dbp_breakdown": events.BreakdownStruct,
    "dbp_query_event": QueryEventHead,
    "dbp_lock_holder": events.LockHolder,
    "dbp_lock_event": events.LockEventHead,
    "dbp_txn_event": events.TxnEvent,
}


def header_structs() -> tuple[str, dict[str, list[str]]]:
    """The contract structs' C text from dbprobe.h (with its constants), and their field names."""
    header = (probes_dir() / "dbprobe.h").read_text()
    defines = "\n".join(re.findall(r"^#define DBP_\w+ +\d+\b.*$", header, re.MULTILINE))
    texts, names = [], {}
    for struct in CONTRACT_STRUCTS:
        match = re.search(rf"^struct {struct} \{{\n(?P<body>.*?)^\}};", header,
                          re.MULTILINE | re.DOTALL)
        assert match, f"struct {struct} is not in dbprobe.h"
        texts.append(match.group(0))
        body = re.sub(r"/\*.*?\*/", "", match["body"], flags=re.DOTALL)
        names[struct] = re.findall(r"(\w+)(?:\[\w+\])*\s*;", body)
    return defines + "\n" + "\n".join(texts), names


def compiled_layout(
    tmp_path: Path, structs: str, names: dict[str, list[str]]
) -> dict[tuple[str, str], int]:
    prints = [
        f'\tprintf("{struct} {name} %zu\\n", offsetof(struct {struct}, {name}));'
        for struct, fields in names.items() for name in fields
    ] + [f'\tprintf("{struct} sizeof %zu\\n", sizeof(struct {struct}));' for struct in names]
    source = tmp_path / "layout.c"
    source.write_text(
        "#include <stddef.h>\n#include <stdint.h>\n#include <stdio.h>\n"
        "typedef uint8_t u8; typedef uint16_t u16; typedef uint32_t u32; typedef uint64_t u64;\n"
        f"{structs}\nint main(void)\n{{\n" + "\n".join(prints) + "\n\treturn 0;\n}\n"
    )
    program = compile_c([source], tmp_path / "layout", flags=("-O0",))
    output = subprocess.run([str(program)], capture_output=True, text=True, check=True).stdout
    layout = {}
    for line in output.splitlines():
        struct, name, value = line.split()
        layout[(struct, name)] = int(value)
    return layout


def mirrored_layout(names: dict[str, list[str]]) -> dict[tuple[str, str], int]:
    layout = {}
    for struct, mirror in CONTRACT_STRUCTS.items():
        mirrored_fields = [name for name, _ in mirror._fields_]
        size = ctypes.sizeof(mirror)
        for name in names[struct]:
            if name in mirrored_fields:
                layout[(struct, name)] = getattr(mirror, name).offset
            else:
                assert name == "text" and name == names[struct][-1], (
                    f"{mirror.__name__} does not mirror {struct}.{name}")
                layout[(struct, name)] = size
                size += TEXT_MAX
        layout[(struct, "sizeof")] = size
    return layout


def test_ctypes_mirrors_match_the_compiled_header(tmp_path: Path) -> None:
    structs, names = header_structs()
    assert compiled_layout(tmp_path, structs, names) == mirrored_layout(names)
    for struct, mirror in CONTRACT_STRUCTS.items():
        assert [name for name, _ in mirror._fields_] == [
            name for name in names[struct] if name in dict(mirror._fields_)], struct


def c_constant(source: str, name: str) -> int:
    """The value of a #define or enum constant in one of the probes/ sources."""
    (value,) = re.findall(rf"\b{name}\s*=?\s*(\d+)\b", (probes_dir() / source).read_text())
    return int(value)


def test_constants_match_the_header() -> None:
    def constant(name: str) -> int:
        return c_constant("dbprobe.h", name)

    assert constant("DBP_TEXT_MAX") == events.TEXT_MAX
    assert constant("DBP_HIST_SLOTS") == events.HIST_SLOTS
    assert constant("DBP_LOCK_HOLDERS") == events.LOCK_HOLDERS
    assert constant("DBP_TXN_STATEMENTS") == events.TXN_STATEMENTS
    assert constant("DBP_TXN_TEXT_MAX") == events.TXN_TEXT_MAX
    assert [constant(f"DBP_EV_{name}") for name in (
        "QUERY", "LOCK_WAIT_START", "LOCK_WAIT_DONE", "DEADLOCK", "TXN")] == [
        events.EV_QUERY, events.EV_LOCK_WAIT_START, events.EV_LOCK_WAIT_DONE, events.EV_DEADLOCK,
        events.EV_TXN]
    assert constant("DBP_LOCK_WAIT_FAILED") == events.LOCK_WAIT_FAILED
    assert [constant(f"DBP_TXN_{name.upper()}") for name in events.TXN_OUTCOMES] == [0, 1]
    assert constant("DBP_QF_TRUNCATED") == events.QF_TRUNCATED
    assert constant("DBP_QF_ERROR") == events.QF_ERROR
    assert constant("DBP_QF_NO_TEXT") == events.QF_NO_TEXT
    assert [constant(f"DBP_PROTO_{name.upper()}") for name in PROTOCOLS] == [0, 1, 2]
    assert constant("DBP_PROTOCOLS") == len(PROTOCOLS)
    assert c_constant("args.h", "DBP_MAX_ARGS") == MAX_ARGS
    assert constant("DBP_RINGBUF_PAGES") * PAGE_SIZE == DEFAULT_RINGBUF_BYTES


def test_the_constants_of_the_family_programs_match_user_space() -> None:
    assert c_constant("postgresql_locks.bpf.c", "PG_LOCK_WAIT_ERROR") == events.PG_LOCK_WAIT_ERROR
    assert events.PG_LOCK_WAIT_ERROR & events.LOCK_WAIT_FAILED == 0
    # The states a PostgreSQL backend goes idle in, as the lock report names them.
    assert {c_constant("postgresql.h", f"PG_STATE_{name}"): text for name, text in (
        ("IDLE", "idle"), ("IDLE_IN_TRANSACTION", "idle in transaction"),
        ("IDLE_IN_FAILED_TRANSACTION", "idle in transaction (aborted)"))} == pglocks.IDLE_STATES
    # How a MySQL or MariaDB wait ended, beside DBP_LOCK_WAIT_FAILED.
    assert c_constant("mysql_locks.bpf.c", "MY_LOCK_WAIT_TIMEOUT") == mylocks.WAIT_TIMEOUT
    assert c_constant("mysql_locks.bpf.c", "MY_LOCK_WAIT_KILLED") == mylocks.WAIT_KILLED
    assert c_constant("mysql_locks.bpf.c", "MY_LOCK_WAIT_OUTCOME_UNKNOWN") == mylocks.WAIT_OUTCOME_UNKNOWN
