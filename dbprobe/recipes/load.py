"""Probe recipes: the declarative files in ``probes/`` that say how to trace each database.

A recipe (``probes/<database>.toml``) lists, for each report family (``query``, ``locks``,
``txn``), the kernel program that serves it and the variants that can feed its handlers:
USDT probes where the server was built with them, uprobes on functions where it was not.
This module only loads and validates recipes; binding them to a binary is ``plan``'s job.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from dbprobe.binary.argspec import ArgSpecError
from dbprobe.binary.recipe_args import RecipeArg, parse_recipe_arg, placement_error
from dbprobe.errors import DbprobeError

MECHANISMS = ("usdt", "uprobe")


class RecipeError(DbprobeError):
    """A recipe file that does not say what it must."""


@dataclass(frozen=True, slots=True)
class Hook:
    """One handler of a family's program, fed by one probe or function."""

    handler: str
    probe: str | None = None  # USDT probe name, without provider
    symbol: str | None = None  # function name for a uprobe
    # 1-based argument numbers of the USDT probe, or globals read at its site
    usdt_args: tuple[int | RecipeArg, ...] = ()
    uprobe_args: tuple[RecipeArg, ...] = ()  # the function's arguments, return value, globals
    on_return: bool = False
    versions: tuple[SpecifierSet, ...] = ()  # any may match; empty means every version

    @property
    def target(self) -> str:
        return self.probe or f"{self.symbol}{' (return)' if self.on_return else ''}"

    def applies_to(self, version: str | None) -> bool:
        if not self.versions:
            return True
        release = release_of(version)
        return any(spec.contains(release, prereleases=True) for spec in self.versions)


# A server whose version cannot be read is taken to be a recent one.
UNKNOWN_VERSION = Version("9999")
_RELEASE = re.compile(r"\d+(?:\.\d+)*")


def release_of(version: str | None) -> Version:
    """The release a server version names: "18beta1" and "18rc1" are 18, "19devel" is 19."""
    match = _RELEASE.match(version or "")
    if not match:
        return UNKNOWN_VERSION
    try:
        return Version(match.group())
    except InvalidVersion:
        return UNKNOWN_VERSION


@dataclass(frozen=True, slots=True)
class Variant:
    mechanism: str  # "usdt" | "uprobe"
    hooks: tuple[Hook, ...]

    def hooks_for(self, version: str | None) -> tuple[Hook, ...]:
        return tuple(hook for hook in self.hooks if hook.applies_to(version))


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    source: Path  # the BPF C program
    variants: tuple[Variant, ...]


@dataclass(frozen=True, slots=True)
class Recipe:
    database: str
    usdt_provider: str | None
    process_names: tuple[str, ...]  # file names of its server binaries, the preferred one first
    families: dict[str, Family]
    database_oid_global: str | None = None  # the global holding a backend's database OID
    # Why a build of this server has no USDT probes, for the message when a binary has none.
    usdt_absent: str = "built without USDT probes"

    def family(self, name: str) -> Family:
        try:
            return self.families[name]
        except KeyError:
            raise RecipeError(f"the {self.database} recipe has no '{name}' probes") from None


def probes_dir() -> Path:
    """The folder of recipes and BPF sources: beside the package, or installed data."""
    candidates = (
        Path(__file__).resolve().parents[2] / "probes",
        Path(sys.prefix) / "share" / "dbprobe" / "probes",
    )
    for candidate in candidates:
        if (candidate / "dbprobe.h").is_file():
            return candidate
    raise DbprobeError("dbprobe's probes/ folder is missing: reinstall dbprobe")


def available_databases() -> list[str]:
    return sorted(path.stem for path in probes_dir().glob("*.toml"))


@cache
def load_recipe(database: str) -> Recipe:
    path = probes_dir() / f"{database}.toml"
    if not path.is_file():
        raise RecipeError(f"no recipe for '{database}' (have: {', '.join(available_databases())})")
    try:
        document = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"{path.name}: {error}") from None
    return _recipe_from(document, path)


def _recipe_from(document: dict, path: Path) -> Recipe:
    where = path.name
    families = {
        name: _family_from(name, body, path.parent, f"{where}: families.{name}")
        for name, body in _require(document, "families", dict, where).items()
    }
    return Recipe(
        database=_require(document, "database", str, where),
        usdt_provider=document.get("usdt_provider"),
        process_names=_process_names_from(document.get("process_names", []), where),
        families=families,
        database_oid_global=document.get("database_oid_global"),
        usdt_absent=document.get("usdt_absent", Recipe.usdt_absent),
    )


def _process_names_from(value: object, where: str) -> tuple[str, ...]:
    """The file names of the server's binaries, which discovery looks for: plain names."""
    if (not isinstance(value, list)
            or not all(isinstance(name, str) and name and "/" not in name for name in value)):
        raise RecipeError(f"{where}: 'process_names' must be a list of binary file names")
    return tuple(value)


def _family_from(name: str, body: dict, folder: Path, where: str) -> Family:
    source = folder / _require(body, "source", str, where)
    if not source.is_file():
        raise RecipeError(f"{where}: source {source.name} does not exist")
    variants = tuple(
        _variant_from(variant, f"{where}.variants[{index}]")
        for index, variant in enumerate(_require(body, "variants", list, where))
    )
    return Family(name=name, source=source, variants=variants)


def _variant_from(body: dict, where: str) -> Variant:
    mechanism = _require(body, "mechanism", str, where)
    if mechanism not in MECHANISMS:
        raise RecipeError(f"{where}: mechanism must be one of {', '.join(MECHANISMS)}")
    hooks = tuple(
        _hook_from(hook, mechanism, f"{where}.hooks[{index}]")
        for index, hook in enumerate(_require(body, "hooks", list, where))
    )
    return Variant(mechanism=mechanism, hooks=hooks)


def _hook_from(body: dict, mechanism: str, where: str) -> Hook:
    handler = _require(body, "handler", str, where)
    versions = _versions_from(body.get("versions"), where)
    args = body.get("args", [])
    if "probe" in body:
        if mechanism != "usdt":
            raise RecipeError(f"{where}: a {mechanism} variant cannot use USDT probes")
        if not all(_argument_number(arg) or isinstance(arg, str) for arg in args):
            raise RecipeError(f"{where}: usdt args are argument numbers from 1, or argument specs")
        return Hook(handler=handler, probe=_require(body, "probe", str, where),
                    usdt_args=tuple(arg if isinstance(arg, int) else _argspec(arg, "usdt", where)
                                    for arg in args),
                    versions=versions)
    on_return = bool(body.get("return", False))
    specs = tuple(_argspec(arg, "return" if on_return else "entry", where) for arg in args)
    return Hook(handler=handler, symbol=_require(body, "symbol", str, where),
                uprobe_args=specs, on_return=on_return, versions=versions)


def _argument_number(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _argspec(text: object, site: str, where: str) -> RecipeArg:
    try:
        arg = parse_recipe_arg(text)
    except ArgSpecError as error:
        raise RecipeError(f"{where}: {error}") from None
    if (why_not := placement_error(arg, site)) is not None:
        raise RecipeError(f"{where}: {why_not}")
    return arg


def _versions_from(value: object, where: str) -> tuple[SpecifierSet, ...]:
    if value is None:
        return ()
    texts = [value] if isinstance(value, str) else value
    try:
        return tuple(SpecifierSet(text) for text in texts)
    except (InvalidSpecifier, TypeError):
        raise RecipeError(f"{where}: versions {value!r} are not version specifiers") from None


def _require(body: dict, key: str, kind: type, where: str):
    value = body.get(key)
    if not isinstance(value, kind):
        raise RecipeError(f"{where}: '{key}' must be a {kind.__name__}")
    return value
