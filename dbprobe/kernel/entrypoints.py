"""Generated entry points: read each probe site's arguments, then call its handler.

The handlers live in the hand-written programs under ``probes/`` and take the arguments
as an array of u64. Where the arguments are depends on the site: a USDT note says
``8@%rbx`` for one build and ``8@-144(%rbp)`` for another, and a uprobe recipe says where a
function's arguments are. This module turns those argument specs into one small entry
function per distinct (handler, arguments, binary, mechanism); the hook id passed to the
handler tells user space which binary and mechanism an event came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from dbprobe.binary.argspec import ArgSpec
from dbprobe.recipes.bind import ProbeSite

MAX_ARGS = 8  # DBP_MAX_ARGS in probes/dbprobe.h


@dataclass(frozen=True, slots=True)
class HookProgram:
    """One generated entry function and the sites it is attached to."""

    hook_id: int
    function: str  # the C function name, what BCC loads
    handler: str
    binary: str
    mechanism: str
    on_return: bool
    sites: tuple[ProbeSite, ...]


def group_sites(sites: Sequence[ProbeSite]) -> list[HookProgram]:
    """One program per distinct way of reading arguments; sites that read alike share it."""
    groups: dict[tuple, list[ProbeSite]] = {}
    for site in sites:
        groups.setdefault(_reading_key(site), []).append(site)
    programs = []
    for hook_id, members in enumerate(groups.values()):
        first = members[0]
        programs.append(HookProgram(
            hook_id=hook_id, function=f"dbp_hook_{hook_id}", handler=first.handler,
            binary=first.binary, mechanism=first.mechanism, on_return=first.on_return,
            sites=tuple(members),
        ))
    return programs


def _reading_key(site: ProbeSite) -> tuple:
    reads_globals = any(spec.kind == "symbol" for spec in site.args)
    return (site.handler, tuple(spec.text for spec in site.args), site.binary, site.mechanism,
            site.on_return, site.address if reads_globals else None)


def entry_points_source(programs: Sequence[HookProgram]) -> str:
    return "\n".join(_entry_point(program) for program in programs)


def _entry_point(program: HookProgram) -> str:
    site = program.sites[0]
    if len(site.args) > MAX_ARGS:
        raise ValueError(f"{site.label}: more than {MAX_ARGS} arguments")
    globals_at = dict(site.globals)
    reads = [
        f"\t{argument_read(index, spec, site.address, globals_at)}  /* {spec.text} */"
        for index, spec in enumerate(site.args)
    ]
    labels = ", ".join(sorted({s.label for s in program.sites}))
    return "\n".join([
        f"/* {labels} in {program.binary} ({program.mechanism}) */",
        f"int {program.function}(struct pt_regs *ctx)",
        "{",
        "\tu64 args[DBP_MAX_ARGS] = {};",
        *reads,
        f"\treturn {program.handler}(ctx, args, {program.hook_id});",
        "}",
        "",
    ])


def argument_read(index: int, spec: ArgSpec, site_address: int, globals_at: dict[str, int]) -> str:
    """C statements that store argument `spec` as a u64 in args[index]."""
    ctype = _c_type(spec)
    if spec.kind == "const":
        return f"args[{index}] = (u64)({ctype}){spec.value}LL;"
    if spec.kind == "reg":
        return f"args[{index}] = {_widen(spec, f'ctx->{spec.reg}')};"
    if spec.kind == "mem":
        address = f"ctx->{spec.reg} + ({spec.offset})"
    elif spec.kind == "symbol":
        # ip - (site's address in the file) is the load bias of a PIE binary; 0 otherwise.
        address = (f"ctx->{spec.reg} - {site_address:#x}ULL + {globals_at[spec.symbol]:#x}ULL"
                   f" + ({spec.offset})")
    else:
        raise ValueError(f"unknown argument kind {spec.kind!r} in {spec.text}")
    return (f"{{ {ctype} v = 0; bpf_probe_read_user(&v, sizeof(v), (void *)({address}));"
            f" args[{index}] = {_widen(spec, 'v')}; }}")


def _c_type(spec: ArgSpec) -> str:
    return f"{'s' if spec.signed else 'u'}{spec.size * 8}"


def _widen(spec: ArgSpec, expression: str) -> str:
    """The value as u64: sign-extended when signed, truncated to its width otherwise."""
    if spec.size == 8:
        return f"(u64){expression}"
    if spec.signed:
        return f"(u64)(s64)({_c_type(spec)}){expression}"
    return f"(u64)({_c_type(spec)}){expression}"
