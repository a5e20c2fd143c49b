"""Recipe arguments: the syntax that names arguments instead of registers, and how each
architecture resolves it."""

from __future__ import annotations

import pytest

from dbprobe.binary.arch.i386 import I386
from dbprobe.binary.arch.x86_64 import X86_64
from dbprobe.binary.argspec import ArgSpec, ArgSpecError, parse_argspec
from dbprobe.binary.recipe_args import RecipeArg, parse_recipe_arg, placement_error

PARSED = [
    ("8@arg2", RecipeArg(8, False, "arg", 2, False, 0, None, "8@arg2")),
    ("-4@arg1", RecipeArg(4, True, "arg", 1, False, 0, None, "-4@arg1")),
    ("1@arg12", RecipeArg(1, False, "arg", 12, False, 0, None, "1@arg12")),
    ("4@8(arg2)", RecipeArg(4, False, "arg", 2, True, 8, None, "4@8(arg2)")),
    ("8@(arg1)", RecipeArg(8, False, "arg", 1, True, 0, None, "8@(arg1)")),
    ("-2@-16(arg3)", RecipeArg(2, True, "arg", 3, True, -16, None, "-2@-16(arg3)")),
    ("8@0x10(arg1)", RecipeArg(8, False, "arg", 1, True, 16, None, "8@0x10(arg1)")),
    ("4@ret", RecipeArg(4, False, "ret", 0, False, 0, None, "4@ret")),
    ("8@24(ret)", RecipeArg(8, False, "ret", 0, True, 24, None, "8@24(ret)")),
    ("4@MyDatabaseId", RecipeArg(4, False, "global", 0, True, 0, "MyDatabaseId", "4@MyDatabaseId")),
    ("-4@CheckpointStats+40",
     RecipeArg(4, True, "global", 0, True, 40, "CheckpointStats", "-4@CheckpointStats+40")),
    ("8@counter.0-8", RecipeArg(8, False, "global", 0, True, -8, "counter.0", "8@counter.0-8")),
    ("4@ret2", RecipeArg(4, False, "global", 0, True, 0, "ret2", "4@ret2")),  # a global's name
    ("8@argv", RecipeArg(8, False, "global", 0, True, 0, "argv", "8@argv")),
    (" 8@arg2 ", RecipeArg(8, False, "arg", 2, False, 0, None, "8@arg2")),
    # Constants: offsets into a server's structs, which differ between its versions.
    ("4@$64", RecipeArg(4, False, "const", 0, False, 64, None, "4@$64")),
    ("-4@$-1", RecipeArg(4, True, "const", 0, False, -1, None, "-4@$-1")),
    ("8@$0x48", RecipeArg(8, False, "const", 0, False, 72, None, "8@$0x48")),
]


@pytest.mark.parametrize(("text", "expected"), PARSED, ids=[text for text, _ in PARSED])
def test_parses(text: str, expected: RecipeArg) -> None:
    assert parse_recipe_arg(text) == expected
    assert str(parse_recipe_arg(text)) == text.strip()


REJECTED = [
    ("8@%rsi", "names a register"),
    ("4@8(%rdi)", "names a register"),
    ("4@MyDatabaseId(%rip)", "names a register"),
    ("arg2", "needs a size"),
    ("8@arg0", "arguments count from 1"),
    ("8@8(arg0)", "arguments count from 1"),
    ("8@arg", "arguments count from 1"),
    ("3@arg1", "size 3 is not 1, 2, 4 or 8"),
    ("8f@arg1", "floating-point"),
    ("8@arg1+4", "cannot decode 'arg1+4'"),
    ("8@ret+4", "cannot decode 'ret+4'"),
    ("8@8(name)", "cannot decode '8(name)'"),
    ("8@$x", "cannot decode '$x'"),
    ("8@$", "cannot decode '$'"),
    ("8@", "cannot decode ''"),
]


@pytest.mark.parametrize(("text", "message"), REJECTED, ids=[text for text, _ in REJECTED])
def test_rejects_with_a_message_naming_the_argument(text: str, message: str) -> None:
    with pytest.raises(ArgSpecError) as raised:
        parse_recipe_arg(text)
    assert message in str(raised.value)
    assert repr(text) in str(raised.value)


@pytest.mark.parametrize("value", [1, None, ["8@arg1"]])
def test_a_value_that_is_no_string_is_an_argspec_error(value: object) -> None:
    with pytest.raises(ArgSpecError, match="is not a string"):
        parse_recipe_arg(value)  # type: ignore[arg-type]


# --- resolution ----------------------------------------------------------------------------

X86_64_AS_NOTES = [
    # What a recipe says, and what an x86-64 SDT note says for the same place.
    ("8@arg1", "8@%rdi"), ("8@arg2", "8@%rsi"), ("-4@arg3", "-4@%edx"), ("4@arg4", "4@%ecx"),
    ("8@arg5", "8@%r8"), ("2@arg6", "2@%r9w"),
    ("4@8(arg2)", "4@8(%rsi)"), ("1@(arg1)", "1@(%rdi)"), ("-8@-136(arg6)", "-8@-136(%r9)"),
    ("4@ret", "4@%eax"), ("8@16(ret)", "8@16(%rax)"),
    ("4@MyDatabaseId", "4@MyDatabaseId(%rip)"),
    ("-4@CheckpointStats+40", "-4@40+CheckpointStats(%rip)"),
    ("8@arg7", "8@8(%rsp)"), ("8@arg8", "8@16(%rsp)"),  # past the return address
]


@pytest.mark.parametrize(("recipe", "note"), X86_64_AS_NOTES,
                         ids=[recipe for recipe, _ in X86_64_AS_NOTES])
def test_x86_64_resolves_to_what_an_sdt_note_would_say(recipe: str, note: str) -> None:
    resolved = parse_recipe_arg(recipe).resolve(X86_64)
    from_note = parse_argspec(note, X86_64)
    assert _place(resolved) == _place(from_note)
    assert resolved.text == recipe  # the recipe's words, for messages and generated comments


def _place(spec: ArgSpec) -> tuple:
    return (spec.size, spec.signed, spec.kind, spec.reg, spec.offset, spec.symbol)


@pytest.mark.parametrize("arch", [X86_64, I386])
def test_a_constant_resolves_to_its_value_on_every_architecture(arch) -> None:
    resolved = parse_recipe_arg("-4@$-7").resolve(arch)
    assert (resolved.kind, resolved.value, resolved.size, resolved.signed) == ("const", -7, 4, True)
    from_note = parse_argspec("-4@$-7", arch)
    assert (from_note.kind, from_note.value) == (resolved.kind, resolved.value)


def test_i386_finds_every_argument_on_the_stack() -> None:
    first, third = (parse_recipe_arg(text).resolve(I386) for text in ("4@arg1", "-4@arg3"))
    assert (first.kind, first.reg, first.offset) == ("mem", "sp", 4)
    assert (third.kind, third.reg, third.offset, third.signed) == ("mem", "sp", 12, True)
    assert _place(parse_recipe_arg("4@ret").resolve(I386)) == _place(parse_argspec("4@%eax", I386))


@pytest.mark.parametrize(("arch", "text"), [(X86_64, "4@8(arg7)"), (I386, "4@(arg1)")])
def test_memory_behind_a_stack_argument_is_not_read(arch, text: str) -> None:
    with pytest.raises(ArgSpecError, match=f"is on the stack on {arch.name}"):
        parse_recipe_arg(text).resolve(arch)


# --- where an argument can be read ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "site", "allowed"),
    [
        ("8@arg1", "entry", True), ("8@8(arg1)", "entry", True), ("8@name", "entry", True),
        ("4@ret", "entry", False), ("4@8(ret)", "entry", False),
        ("4@ret", "return", True), ("4@8(ret)", "return", True),
        ("8@arg1", "return", False), ("8@name", "return", False),
        ("8@name", "usdt", True), ("8@arg1", "usdt", False), ("4@ret", "usdt", False),
        ("4@$64", "entry", True), ("4@$64", "return", True), ("4@$64", "usdt", True),
    ],
)
def test_placement(text: str, site: str, allowed: bool) -> None:
    error = placement_error(parse_recipe_arg(text), site)
    assert (error is None) is allowed, error
