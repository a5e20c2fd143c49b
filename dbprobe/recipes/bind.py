"""Binding a recipe to a binary: which probe sites feed which handlers, and why.

For each report family, the recipe's variants are tried in order (USDT first); the first
whose hooks all resolve in the binary wins. The reasons the others failed are kept, so
``dbprobe list`` and error messages can say why a binary falls back or cannot be traced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dbprobe.binary.arch import Architecture
from dbprobe.binary.argspec import ArgSpec, ArgSpecError
from dbprobe.binary.elf import ElfBinary, Symbol, UsdtProbe
from dbprobe.binary.recipe_args import RecipeArg
from dbprobe.errors import DbprobeError
from dbprobe.recipes.load import Family, Hook, Recipe, Variant


@dataclass(frozen=True, slots=True)
class ProbeSite:
    """One place in one binary where a handler of a family's program runs."""

    handler: str
    binary: str  # the path the kernel attaches to, as this host sees it
    file_offset: int
    ref_ctr_offset: int  # file offset of the USDT semaphore, 0 when it has none
    on_return: bool
    args: tuple[ArgSpec, ...]
    address: int  # virtual address of the site, for arguments relative to it
    globals: tuple[tuple[str, int], ...]  # virtual addresses of globals the args read
    mechanism: str  # "usdt" | "uprobe"
    label: str  # what a user recognises: "postgresql:query__start", "PortalRun (return)"


@dataclass(frozen=True, slots=True)
class FamilyPlan:
    """How one family is traced in one binary, or why it cannot be."""

    family: Family
    binary: str
    mechanism: str | None  # None when no variant resolved
    sites: tuple[ProbeSite, ...]
    rejected: tuple[str, ...]  # why earlier variants did not resolve, "usdt: ..." lines

    @property
    def available(self) -> bool:
        return self.mechanism is not None

    @property
    def why(self) -> str:
        """One line for users: the mechanism chosen and why the others were not."""
        if not self.available:
            return "; ".join(self.rejected)
        if self.rejected:
            return f"{self.mechanism} ({'; '.join(self.rejected)})"
        return self.mechanism


class UnresolvedHook(Exception):
    """A hook of a variant that the binary cannot serve; the message says why."""


def plan_family(recipe: Recipe, family_name: str, binary: ElfBinary,
                version: str | None) -> FamilyPlan:
    family = recipe.family(family_name)
    rejected: list[str] = []
    for variant in family.variants:
        try:
            sites = _resolve_variant(recipe, variant, binary, version)
        except UnresolvedHook as reason:
            rejected.append(f"{variant.mechanism}: {reason}")
            continue
        return FamilyPlan(family, str(binary.path), variant.mechanism, sites, tuple(rejected))
    return FamilyPlan(family, str(binary.path), None, (), tuple(rejected))


def require_plan(plan: FamilyPlan, database: str) -> FamilyPlan:
    if not plan.available:
        raise DbprobeError(
            f"cannot trace {plan.family.name} in {plan.binary} ({database}): {plan.why}")
    return plan


def _resolve_variant(recipe: Recipe, variant: Variant, binary: ElfBinary,
                     version: str | None) -> tuple[ProbeSite, ...]:
    hooks = variant.hooks_for(version)
    if not hooks:
        raise UnresolvedHook(f"no hooks for version {version}")
    if variant.mechanism == "usdt" and not binary.usdt_probes():
        raise UnresolvedHook(f"the binary has no USDT probes ({recipe.usdt_absent})")
    return tuple(site for hook in hooks for site in _hook_sites(recipe, hook, binary))


def _hook_sites(recipe: Recipe, hook: Hook, binary: ElfBinary) -> list[ProbeSite]:
    if hook.probe is not None:
        return _usdt_sites(recipe, hook, binary)
    return _uprobe_sites(hook, binary)


def _usdt_sites(recipe: Recipe, hook: Hook, binary: ElfBinary) -> list[ProbeSite]:
    provider = recipe.usdt_provider or recipe.database
    probes = binary.usdt_probe_sites(provider, hook.probe)
    if not probes:
        raise UnresolvedHook(f"no USDT probe {provider}:{hook.probe}")
    return [_usdt_site(hook, binary, probe, f"{provider}:{hook.probe}") for probe in probes]


def _usdt_site(hook: Hook, binary: ElfBinary, probe: UsdtProbe, label: str) -> ProbeSite:
    numbers = [arg for arg in hook.usdt_args if isinstance(arg, int)]
    if probe.arg_error and numbers:
        raise UnresolvedHook(f"{label} at {probe.address:#x}: {probe.arg_error}")
    if any(number > len(probe.args) for number in numbers):
        raise UnresolvedHook(f"{label} has {len(probe.args)} arguments, the recipe reads "
                             f"argument {max(numbers)}")
    args = tuple(probe.args[arg - 1] if isinstance(arg, int) else _resolved(arg, binary)
                 for arg in hook.usdt_args)
    return ProbeSite(
        handler=hook.handler, binary=str(binary.path), file_offset=probe.file_offset,
        ref_ctr_offset=probe.semaphore_offset, on_return=False, args=args,
        address=probe.address, globals=_globals(args, binary, label),
        mechanism="usdt", label=label,
    )


def _uprobe_sites(hook: Hook, binary: ElfBinary) -> list[ProbeSite]:
    function = find_function(binary, hook.symbol)
    args = tuple(_resolved(arg, binary) for arg in hook.uprobe_args)
    return [ProbeSite(
        handler=hook.handler, binary=str(binary.path), file_offset=function.file_offset,
        ref_ctr_offset=0, on_return=hook.on_return, args=args,
        address=function.address, globals=_globals(args, binary, hook.symbol),
        mechanism="uprobe", label=_display_name(hook.symbol) + (" (return)" if hook.on_return else ""),
    )]


def _resolved(arg: RecipeArg, binary: ElfBinary) -> ArgSpec:
    """A recipe's argument in the registers of the binary's architecture."""
    try:
        return arg.resolve(_architecture(binary))
    except ArgSpecError as error:
        raise UnresolvedHook(str(error)) from None


def _architecture(binary: ElfBinary) -> Architecture:
    arch = binary.architecture
    if arch is None:
        raise UnresolvedHook(f"recipes cannot read arguments of {binary.machine} binaries")
    return arch


def _display_name(symbol: str) -> str:
    """A function as users know it: dispatch_command for _Z16dispatch_command..., and
    MDL_wait::timed_wait for _ZN8MDL_wait10timed_wait... (a free or a nested name)."""
    nested = symbol.startswith("_ZN")
    position = 3 if nested else 2
    if not symbol.startswith("_Z"):
        return symbol
    parts = []
    while (length := re.match(r"\d+", symbol[position:])) is not None:
        start = position + length.end()
        parts.append(symbol[start:start + int(length.group())])
        position = start + int(length.group())
        if not nested:
            break
    return "::".join(parts) or symbol


def find_function(binary: ElfBinary, name: str) -> Symbol:
    """A function by its plain name, or by the C++ mangled name of a free function."""
    symbol = binary.symbol(name)
    if symbol is None and re.fullmatch(r"[A-Za-z_]\w*", name):
        mangled = binary.symbols_matching(rf"^_Z{len(name)}{name}(?!\w*\.)")
        candidates = [candidate for candidate in mangled if candidate.kind == "func"]
        if len(candidates) > 1:
            names = ", ".join(sorted(candidate.name for candidate in candidates))
            raise UnresolvedHook(f"function {name} is ambiguous ({names}): name one in the recipe")
        symbol = candidates[0] if candidates else None
    if symbol is None:
        raise UnresolvedHook(f"function {name} not found in the symbol tables "
                             f"(stripped binary without debug symbols?)")
    if symbol.kind != "func":
        raise UnresolvedHook(f"{name} is not a function")
    return symbol


def _globals(args: tuple[ArgSpec, ...], binary: ElfBinary, label: str) -> tuple[tuple[str, int], ...]:
    found = []
    for spec in args:
        if spec.kind != "symbol":
            continue
        symbol = binary.symbol(spec.symbol)
        if symbol is None:
            raise UnresolvedHook(f"{label} reads global {spec.symbol}, which the binary does not export")
        found.append((spec.symbol, symbol.address))
    return tuple(found)
