"""The per-architecture seam: what each architecture module says, that another one plugs in
without touching anything else, and that nothing outside dbprobe/binary/arch/ names a
register."""

from __future__ import annotations

import ast
import platform
import re
from pathlib import Path

import pytest

from dbprobe.binary import arch
from dbprobe.binary.arch import Architecture, Operand, architecture_for
from dbprobe.binary.arch.i386 import I386
from dbprobe.binary.arch.x86 import REGISTER_FIELDS
from dbprobe.binary.arch.x86_64 import X86_64
from dbprobe.binary.argspec import ArgSpecError, parse_argspec
from dbprobe.binary.elf import ElfBinary
from dbprobe.kernel.entrypoints import entry_points_source, group_sites
from dbprobe.recipes.bind import plan_family
from dbprobe.recipes.load import _recipe_from
from tests.support.sdtbin import build_sdt_probes

ARCH_FOLDER = Path(arch.__file__).resolve().parent
PACKAGE = ARCH_FOLDER.parents[1]  # dbprobe/
PROBES = PACKAGE.parent / "probes"


def test_the_supported_architectures_by_elf_machine() -> None:
    assert arch.SUPPORTED == {"x86_64": X86_64, "i386": I386}
    assert architecture_for("x86_64") is X86_64
    assert architecture_for("aarch64") is None


def test_this_machine_s_architecture_is_the_one_its_binaries_have() -> None:
    assert platform.machine() == "x86_64", "the tests run on x86-64"
    assert arch.host() is X86_64
    assert ElfBinary("/bin/true").architecture is X86_64


@pytest.mark.parametrize("architecture", [X86_64, I386], ids=lambda a: a.name)
def test_every_register_named_is_a_pt_regs_field(architecture: Architecture) -> None:
    fields = set(REGISTER_FIELDS.values())
    named = {*architecture.argument_registers, architecture.return_register,
             architecture.stack_pointer, architecture.instruction_pointer}
    assert named <= fields


def test_x86_64_passes_six_arguments_in_registers_as_the_system_v_abi_says() -> None:
    assert X86_64.argument_registers == ("di", "si", "dx", "cx", "r8", "r9")
    assert (X86_64.return_register, X86_64.stack_pointer) == ("ax", "sp")
    # arg7 lies above the return address that call pushed
    assert [X86_64.stack_argument_offset(n) for n in (7, 8, 9)] == [8, 16, 24]
    assert [I386.stack_argument_offset(n) for n in (1, 2, 3)] == [4, 8, 12]


# --- another architecture plugs in ----------------------------------------------------------


def _decode_like_aarch64(operand: str, text: str) -> Operand:
    """Enough of AArch64's note syntax for the test: x0-x30 and [xN, offset]."""
    if match := re.fullmatch(r"[xw]([0-9]+)", operand):
        return Operand("reg", reg=f"regs[{match[1]}]")
    if match := re.fullmatch(r"\[x([0-9]+)(?:, (-?[0-9]+))?\]", operand):
        return Operand("mem", reg=f"regs[{match[1]}]", offset=int(match[2] or 0))
    raise ArgSpecError(f"argument spec {text!r}: cannot decode operand {operand!r}")


AARCH64_LIKE = Architecture(
    name="aarch64",
    argument_registers=tuple(f"regs[{n}]" for n in range(8)),
    return_register="regs[0]",
    stack_pointer="sp",
    instruction_pointer="pc",
    first_stack_argument=0,
    stack_slot=8,
    decode_sdt_operand=_decode_like_aarch64,
)


@pytest.fixture
def aarch64_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ElfBinary:
    """A program compiled here, labelled AArch64, with an AArch64-like module registered."""
    program = build_sdt_probes(tmp_path)
    image = bytearray(program.read_bytes())
    image[18:20] = (183).to_bytes(2, "little")  # e_machine = EM_AARCH64
    relabelled = tmp_path / "aarch64-program"
    relabelled.write_bytes(bytes(image))
    monkeypatch.setitem(arch.SUPPORTED, "aarch64", AARCH64_LIKE)
    return ElfBinary(relabelled)


def test_another_architecture_decodes_its_own_notes(aarch64_binary: ElfBinary) -> None:
    assert aarch64_binary.architecture is AARCH64_LIKE
    spec = parse_argspec("-4@[x1, 16]", AARCH64_LIKE)
    assert (spec.kind, spec.reg, spec.offset, spec.signed) == ("mem", "regs[1]", 16, True)
    # this program's notes are x86's: the other architecture refuses them, probe by probe
    (site,) = aarch64_binary.usdt_probe_sites("demo", "in_register")
    assert site.args == () and "cannot decode operand" in site.arg_error


def test_recipes_resolve_and_generate_through_another_architecture(
    tmp_path: Path, aarch64_binary: ElfBinary
) -> None:
    (tmp_path / "demo.bpf.c").write_text("/* handlers */\n")
    hooks = [{"handler": "h", "symbol": "main",
              "args": ["8@arg2", "4@16(arg1)", "8@arg9", "4@request_count"]},
             {"handler": "r", "symbol": "main", "return": True, "args": ["-4@ret"]}]
    recipe = _recipe_from(
        {"database": "demo", "families": {"query": {
            "source": "demo.bpf.c", "variants": [{"mechanism": "uprobe", "hooks": hooks}]}}},
        tmp_path / "demo.toml")
    plan = plan_family(recipe, "query", aarch64_binary, None)
    entry, returned = plan.sites
    assert [(spec.kind, spec.reg, spec.offset) for spec in entry.args] == [
        ("reg", "regs[1]", 0), ("mem", "regs[0]", 16), ("mem", "sp", 0), ("symbol", "pc", 0)]
    assert [(spec.kind, spec.reg) for spec in returned.args] == [("reg", "regs[0]")]
    source = entry_points_source(group_sites(plan.sites))
    assert "ctx->regs[1]" in source and "ctx->regs[0] + (16)" in source
    assert "ctx->pc - " in source
    assert not re.search(r"ctx->(?:ip|si|di|ax)\b", source)


# --- nothing else names a register ----------------------------------------------------------

X86_NAMES = set(REGISTER_FIELDS) | set(REGISTER_FIELDS.values())
REGISTER_USE = re.compile(r"%([a-z][a-z0-9]*)|ctx->([a-z][a-z0-9]*)|PT_REGS_\w+")


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module, its docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value) for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def _names_a_register(text: str) -> bool:
    if text in X86_NAMES:
        return True
    return any(match[0].startswith("PT_REGS_") or (match[1] or match[2]) in X86_NAMES
               for match in REGISTER_USE.finditer(text))


def test_no_python_outside_the_architecture_modules_names_a_register() -> None:
    modules = [path for path in sorted(PACKAGE.rglob("*.py")) if ARCH_FOLDER not in path.parents]
    assert len(modules) > 30
    found = [f"{path.relative_to(PACKAGE)}:{line}: {text!r}"
             for path in modules
             for line, text in _code_strings(path) if _names_a_register(text)]
    assert found == []


def test_no_probe_source_or_recipe_names_a_register() -> None:
    files = sorted([*PROBES.glob("*.c"), *PROBES.glob("*.h"), *PROBES.glob("*.toml")])
    assert len(files) >= 6
    found = [f"{path.name}: {match[0]}" for path in files
             for match in REGISTER_USE.finditer(path.read_text())
             if _names_a_register(match[0])]
    assert found == []


def test_the_register_check_finds_a_register() -> None:
    assert _names_a_register("8@%rsi") and _names_a_register("ctx->ip + 4")
    assert _names_a_register("PT_REGS_PARM1(ctx)") and _names_a_register("di")
    assert not _names_a_register("8@arg2") and not _names_a_register("%s of %d")
