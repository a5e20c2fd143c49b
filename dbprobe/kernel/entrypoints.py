"""Generated entry points: read each probe site's arguments once, then call its handlers.

The handlers live in the hand-written programs under ``probes/`` and take the arguments
as a struct dbp_args (probes/args.h): registers and constants as their values, arguments
in memory as an address and a size, read only if the handler asks (a read of user memory
costs more than the rest of an entry). Where the arguments are depends on the site: a
USDT note says ``8@%rbx`` for one build and ``8@-144(%rbp)`` for another, and a uprobe
recipe says where a function's arguments are. This module turns those argument specs into
entry functions.

Several families may hook the same place (every PostgreSQL family reads the backend's
activity reports), and one BPF program runs there for all of them: the entry function of
a place calls each family's handler in turn, and a handler that several families name
is called once, with the longest of their argument lists (the others must be prefixes of
it). Places that call the same handlers with the same arguments share one entry function;
its hook id, passed to the handlers, tells user space which binary and mechanism an event
came from.

Nothing of the traced machine becomes C code: paths, probe labels and argument specs
appear only in comments, reduced to characters that cannot end one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from dbprobe.binary.argspec import ArgSpec
from dbprobe.recipes.bind import ProbeSite

MAX_ARGS = 8  # DBP_MAX_ARGS in probes/args.h

_UNSAFE_IN_COMMENT = re.compile(r"[^A-Za-z0-9 _.,:;/@%$()+=#-]")


@dataclass(frozen=True, slots=True)
class HandlerCall:
    """One handler an entry function calls, and the arguments it reads for it."""

    handler: str
    args: tuple[ArgSpec, ...]


@dataclass(frozen=True, slots=True)
class HookProgram:
    """One generated entry function and the places it is attached to (one site each)."""

    hook_id: int
    function: str  # the C function name, what BCC loads
    calls: tuple[HandlerCall, ...]
    binary: str
    mechanism: str
    on_return: bool
    sites: tuple[ProbeSite, ...]
    globals: tuple[tuple[str, int], ...] = ()  # addresses of the globals its calls read

    @property
    def handlers(self) -> tuple[str, ...]:
        return tuple(call.handler for call in self.calls)


@dataclass(slots=True)
class _Place:
    site: ProbeSite  # the first site there: what is attached
    calls: list[HandlerCall]
    globals: dict[str, int]


def group_sites(sites: Sequence[ProbeSite]) -> list[HookProgram]:
    """One entry function per distinct set of calls; each place is attached once."""
    places: dict[tuple, _Place] = {}
    for site in sites:
        place = places.setdefault(_place_key(site), _Place(site, [], {}))
        _add_call(place, site)
        place.globals.update(site.globals)
    groups: dict[tuple, list[_Place]] = {}
    for place in places.values():
        groups.setdefault(_reading_key(place), []).append(place)
    programs = []
    for hook_id, members in enumerate(groups.values()):
        first = members[0]
        programs.append(HookProgram(
            hook_id=hook_id, function=f"dbp_hook_{hook_id}", calls=tuple(first.calls),
            binary=first.site.binary, mechanism=first.site.mechanism,
            on_return=first.site.on_return, sites=tuple(member.site for member in members),
            globals=tuple(sorted(first.globals.items())),
        ))
    return programs


def _place_key(site: ProbeSite) -> tuple:
    return (site.binary, site.file_offset, site.on_return, site.mechanism)


def _add_call(place: _Place, site: ProbeSite) -> None:
    """Add the site's handler to the calls at its place, once per handler."""
    texts = _texts(site.args)
    for index, call in enumerate(place.calls):
        if call.handler != site.handler:
            continue
        known = _texts(call.args)
        if texts[:len(known)] == known:
            place.calls[index] = HandlerCall(site.handler, site.args)  # the longer list
        elif known[:len(texts)] != texts:
            raise ValueError(f"{site.label}: handler {site.handler} is hooked there twice, with "
                             f"arguments that differ ({', '.join(known)} and {', '.join(texts)})")
        return
    place.calls.append(HandlerCall(site.handler, site.args))


def _reading_key(place: _Place) -> tuple:
    calls = tuple((call.handler, _texts(call.args)) for call in place.calls)
    reads_globals = any(spec.kind == "symbol" for call in place.calls for spec in call.args)
    site = place.site
    return (calls, site.binary, site.mechanism, site.on_return,
            site.address if reads_globals else None)


def _texts(args: Sequence[ArgSpec]) -> tuple[str, ...]:
    return tuple(spec.text for spec in args)


# What every entry does once its handlers ran: nothing, unless a program defines it
# (probes/classes.h hands the statement counted to the class counter).
_AFTER_HOOK_DEFAULT = "#ifndef DBP_AFTER_HOOK\n#define DBP_AFTER_HOOK(ctx)\n#endif\n"


def entry_points_source(programs: Sequence[HookProgram]) -> str:
    if not programs:
        return ""
    return _AFTER_HOOK_DEFAULT + "\n".join(_entry_point(program) for program in programs)


def _entry_point(program: HookProgram) -> str:
    site = program.sites[0]
    globals_at = dict(program.globals)
    body = []
    for number, call in enumerate(program.calls):
        if len(call.args) > MAX_ARGS:
            raise ValueError(f"{site.label}: more than {MAX_ARGS} arguments")
        name = f"args{number}"
        body.append(f"\tstruct dbp_args {name} = {{}};")
        body += [f"\t{argument_read(index, spec, site.address, globals_at, name)}"
                 f"  /* {comment_text(spec.text)} */"
                 for index, spec in enumerate(call.args)]
        body.append(f"\t{call.handler}(ctx, &{name}, {program.hook_id});")
    labels = ", ".join(sorted({comment_text(s.label) for s in program.sites}))
    return "\n".join([
        f"/* {labels} in {comment_text(program.binary)} ({program.mechanism}) */",
        f"int {program.function}(struct pt_regs *ctx)",
        "{",
        *body,
        "\tDBP_AFTER_HOOK(ctx);",
        "\treturn 0;",
        "}",
        "",
    ])


def comment_text(text: str) -> str:
    """Text for inside a C comment: characters that could end it, or mean anything else to
    the compiler, become '?'."""
    return _UNSAFE_IN_COMMENT.sub("?", text)


def argument_read(index: int, spec: ArgSpec, site_address: int, globals_at: dict[str, int],
                  args: str = "args") -> str:
    """C statements that put argument `spec` in the struct dbp_args `args` at `index`: its
    value (a register, a constant), or where it is in memory and how to read it."""
    value = f"{args}.value[{index}]"
    if spec.kind == "const":
        return f"{value} = (u64)({_c_type(spec)}){int(spec.value)}LL;"
    if spec.kind == "reg":
        return f"{value} = {_widen(spec, f'ctx->{spec.reg}')};"
    if spec.kind == "mem":
        address = f"ctx->{spec.reg} + ({int(spec.offset)})"
    elif spec.kind == "symbol":
        # ip - (site's address in the file) is the load bias of a PIE binary; 0 otherwise.
        address = (f"ctx->{spec.reg} - {site_address:#x}ULL + {globals_at[spec.symbol]:#x}ULL"
                   f" + ({int(spec.offset)})")
    else:
        raise ValueError(f"unknown argument kind {spec.kind!r} in {comment_text(spec.text)}")
    sign = f" {args}.sign |= 1 << {index};" if spec.signed and spec.size < 8 else ""
    return f"{value} = {address}; {args}.size[{index}] = {int(spec.size)};{sign}"


def _c_type(spec: ArgSpec) -> str:
    return f"{'s' if spec.signed else 'u'}{int(spec.size) * 8}"


def _widen(spec: ArgSpec, expression: str) -> str:
    """The value as u64: sign-extended when signed, truncated to its width otherwise."""
    if spec.size == 8:
        return f"(u64){expression}"
    if spec.signed:
        return f"(u64)(s64)({_c_type(spec)}){expression}"
    return f"(u64)({_c_type(spec)}){expression}"
