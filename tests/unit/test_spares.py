"""Spare programs: the key that says two program texts compile alike, and the store of
compiled modules kept ready (compiled here with BCC, as root)."""

from __future__ import annotations

import os
import subprocess

import pytest

from dbprobe.kernel.attach import Attachment
from dbprobe.kernel.entrypoints import comment_text
from dbprobe.kernel.program import TraceProgram
from dbprobe.kernel.spares import SpareModules, program_key, without_comments


def program(source: str, cflags: tuple[str, ...] = ()) -> TraceProgram:
    return TraceProgram(source=source, cflags=cflags, hooks=())


ENTRY = """/* query__start in {binary} (usdt) */
int dbp_hook_0(struct pt_regs *ctx)
{{
\tstruct dbp_args args0 = {{}};
\targs0.value[0] = ctx->bx; args0.size[0] = 0;  /* 8@%rbx */
\treturn 0;
}}
"""


# -- the key -----------------------------------------------------------------------------

def test_binaries_named_in_comments_do_not_change_the_key() -> None:
    first = program(ENTRY.format(binary=comment_text("/usr/lib/postgresql/15/bin/postgres")))
    second = program(ENTRY.format(binary=comment_text("/proc/4242/root/usr/lib/postgresql/15/bin/postgres")))
    assert first.source != second.source
    assert program_key(first) == program_key(second)


def test_any_change_to_the_code_or_the_flags_changes_the_key() -> None:
    base = program(ENTRY.format(binary="/a"), ("-DDBP_QUERY_THRESHOLD_NS=0ULL",))
    changed_code = program(base.source.replace("ctx->bx", "ctx->cx"), base.cflags)
    changed_hook = program(base.source.replace("dbp_hook_0", "dbp_hook_1"), base.cflags)
    changed_flags = program(base.source, ("-DDBP_QUERY_THRESHOLD_NS=1000ULL",))
    more_flags = program(base.source, base.cflags + ("-DDBP_WITH_BREAKDOWN=1",))
    keys = {program_key(p) for p in (base, changed_code, changed_hook, changed_flags, more_flags)}
    assert len(keys) == 5
    # Flags are told apart from each other, not only joined.
    assert program_key(program("x", ("-DA", "-DB"))) != program_key(program("x", ("-DA-DB",)))


def test_comments_go_and_the_code_stays_as_the_compiler_sees_it() -> None:
    assert without_comments("a /* one */ b // two\nc") == "a   b  \nc"
    # A comment over lines keeps its line ends, so line numbers stay.
    assert without_comments("a /* x\ny */ b") == "a  \n b"
    # What looks like a comment inside a literal is the literal's.
    assert without_comments('s = "/* not */"; c = \'/\'; d = "\\"//"; e') == \
        's = "/* not */"; c = \'/\'; d = "\\"//"; e'
    # A // comment goes on past a backslash at the end of its line, as in C.
    assert without_comments("a // x \\\nint hidden;\nb") == "a  \n\nb"
    assert without_comments("a // x\nint seen;") == "a  \nint seen;"
    assert without_comments("a /* never closed") == "a  "


def test_a_line_a_spliced_comment_hides_is_not_mistaken_for_code() -> None:
    hidden = program("// c \\\nint x;\n")
    seen = program("// c\nint x;\n")
    assert program_key(hidden) != program_key(seen)


# -- the store ---------------------------------------------------------------------------

TINY = """
BPF_ARRAY(forks, u64, 1);

RAW_TRACEPOINT_PROBE(sched_process_fork)
{
\tint zero = 0;
\tu64 *count = forks.lookup(&zero);
\tif (count)
\t\t__sync_fetch_and_add(count, 1);
\treturn 0;
}

/* a uprobe program, loaded when the spare is compiled; in %s */
int on_call(struct pt_regs *ctx)
{
\treturn 0;
}
"""


def tiny(binary: str = "/bin/true", flag: str = "-DDBP_TINY=1") -> TraceProgram:
    return program(TINY % comment_text(binary), (flag,))


def forks_counted(module) -> int:
    table = module[b"forks"]
    return table[table.Key(0)].value


def fork_a_process() -> None:
    subprocess.run(["/bin/true"], check=True)


def map_fds() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fdinfo"):
        try:
            with open(f"/proc/self/fdinfo/{fd}") as info:
                count += "map_type" in info.read()
        except OSError:
            pass
    return count


@pytest.fixture
def spares(require_root_bpf):
    store = SpareModules(limit=2)
    yield store
    store.close()


def test_a_spare_is_taken_once_and_nothing_of_it_runs_until_attached(spares: SpareModules) -> None:
    assert spares.take(tiny()) is None
    assert spares.prepare(tiny("/srv/a/postgres"))
    assert not spares.prepare(tiny("/srv/b/postgres"))  # one per program: the same build
    assert len(spares) == 1 and spares.holds(tiny("/srv/c/postgres"))
    module = spares.take(tiny("/srv/c/postgres"))
    assert module is not None and spares.take(tiny()) is None and len(spares) == 0
    # Compiled, its uprobe program verified, its tracepoint not attached: no fork counted.
    assert b"on_call" in module.funcs and not module.raw_tracepoint_fds
    fork_a_process()
    assert forks_counted(module) == 0
    attachment = Attachment(module)  # what Trace does with a spare taken
    try:
        fork_a_process()
        assert forks_counted(module) >= 1
    finally:
        attachment.close()
    assert module.module is None  # cleaned up with the attachment


def test_the_store_is_bounded_and_closing_it_frees_every_spare(spares: SpareModules) -> None:
    before = map_fds()
    for number in range(3):
        assert spares.prepare(tiny(flag=f"-DDBP_TINY={number}"))
    assert len(spares) == 2  # the oldest went
    assert not spares.holds(tiny(flag="-DDBP_TINY=0")) and spares.holds(tiny(flag="-DDBP_TINY=2"))
    assert map_fds() == before + 2  # one map each, the evicted one's closed
    spares.clear()
    assert len(spares) == 0 and map_fds() == before
    assert spares.prepare(tiny())  # cleared, not closed: spares are made again
    spares.close()
    assert len(spares) == 0 and map_fds() == before
    assert not spares.prepare(tiny()) and len(spares) == 0  # closed: none made after
