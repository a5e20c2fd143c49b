"""A copy of the installed PostgreSQL whose ``postgres`` has no USDT probes, as the official
container image is built: the tests of the uprobe recipes run servers from it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dbprobe.binary.elf import STAPSDT_SECTION, ElfBinary
from dbprobe.demo.server import (
    PostgresLayout,
    as_user_kwargs,
    installed_postgres_bindir,
    run_checked,
    service_user,
)
from dbprobe.errors import DbprobeError


def make_usdt_less_copy(dest: Path, *, bindir: Path | None = None) -> Path:
    """Copy the installed PostgreSQL into ``dest`` with the ``postgres`` binary's USDT notes
    removed; the new bindir (see make_copy)."""
    return make_copy(dest, bindir=bindir, strip_usdt=True)


def make_copy(dest: Path, *, bindir: Path | None = None, strip_usdt: bool = False) -> Path:
    """Copy the installed PostgreSQL into ``dest``, with the ``postgres`` binary's USDT
    notes removed if ``strip_usdt``; the new bindir.

    postgres finds its share and module directories relative to its own location, so the
    copy mirrors the installed layout below the common prefix: programs are copied (initdb
    must find the modified postgres beside itself), share and module directories are
    symbolic links to the originals.
    """
    source = PostgresLayout.of(Path(bindir) if bindir is not None else installed_postgres_bindir())
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise DbprobeError(f"{dest} is not empty")
    copy = PostgresLayout(
        bindir=dest / source.bindir.relative_to(source.prefix),
        sharedir=dest / source.sharedir.relative_to(source.prefix),
        pkglibdir=dest / source.pkglibdir.relative_to(source.prefix),
    )
    shutil.copytree(source.bindir, copy.bindir, symlinks=True)
    for original, linked in ((source.sharedir, copy.sharedir), (source.pkglibdir, copy.pkglibdir)):
        linked.parent.mkdir(parents=True, exist_ok=True)
        linked.symlink_to(original, target_is_directory=True)
    postgres = copy.bindir / "postgres"
    if strip_usdt:
        run_checked(
            ["objcopy", "--remove-section", STAPSDT_SECTION, str(postgres)], what="objcopy"
        )
    _make_world_readable(dest)
    if strip_usdt and has_usdt_notes(postgres):
        raise DbprobeError(f"{postgres} still has {STAPSDT_SECTION} after objcopy")
    run_checked(
        [str(postgres), "--version"],
        what=f"running the copy as the postgres user (is {dest} reachable by it?)",
        cwd="/",
        **as_user_kwargs(service_user("postgres")),
    )
    return copy.bindir


def has_usdt_notes(binary: Path) -> bool:
    return bool(ElfBinary(binary).usdt_probes())


def _make_world_readable(root: Path) -> None:
    """a+rX on every real file and directory under ``root`` (links are left alone)."""
    for directory, _, files in os.walk(root):
        _add_read_bits(Path(directory))
        for name in files:
            _add_read_bits(Path(directory, name))


def _add_read_bits(path: Path) -> None:
    if path.is_symlink():
        return
    mode = path.stat().st_mode
    executable = path.is_dir() or mode & 0o111
    path.chmod(mode | 0o444 | (0o111 if executable else 0))
