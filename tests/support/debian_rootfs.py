"""A Debian root file system made with debootstrap, to import as a base image.

Where no registry can be reached, ``docker import`` of a bootstrapped root file system
stands in for the ``debian:bookworm-slim`` image: the same suite and apt sources (main,
-updates, -security), and, like the official slim images, no documentation installed and
dpkg without fsync. It is bootstrapped from the Debian mirror apt already uses on this
host, or deb.debian.org.

Bootstrapping takes about a minute, so the tarball is kept in a cache directory, named by
the day it was made: later runs that day reuse it, the first run of a new day replaces it.
"""

from __future__ import annotations

import datetime
import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
APT_SOURCE_FILES = ("/etc/apt/sources.list", "/etc/apt/sources.list.d/*.list",
                    "/etc/apt/sources.list.d/*.sources")
DEBOOTSTRAP_TIMEOUT_S = 900

# What the official slim images configure, so builds on this base behave the same.
SLIM_CONFIGURATION = {
    "etc/dpkg/dpkg.cfg.d/docker-apt-speedup": "force-unsafe-io\n",
    "etc/dpkg/dpkg.cfg.d/docker-slim": "".join(
        f"{rule}\n" for rule in (
            "path-exclude /usr/share/doc/*", "path-include /usr/share/doc/*/copyright",
            "path-exclude /usr/share/man/*", "path-exclude /usr/share/info/*",
            "path-exclude /usr/share/groff/*", "path-exclude /usr/share/lintian/*",
        )),
    "etc/apt/apt.conf.d/docker-no-languages": 'Acquire::Languages "none";\n',
}


@dataclass(frozen=True, slots=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]


def parse_apt_sources(text: str) -> list[AptSource]:
    """The ``deb`` entries of a sources.list (one-line) or .sources (deb822) text."""
    if any(line.lower().startswith(("types:", "uris:")) for line in text.splitlines()):
        return _parse_deb822(text)
    sources = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 3 and fields[0] == "deb":
            rest = fields[1:]
            if rest[0].startswith("["):  # options: [arch=amd64 signed-by=...]
                while rest and not rest[0].endswith("]"):
                    rest = rest[1:]
                rest = rest[1:]
            if len(rest) >= 2:
                sources.append(AptSource(rest[0], (rest[1],)))
    return sources


def _parse_deb822(text: str) -> list[AptSource]:
    sources = []
    for stanza in text.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.split()
        if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"])[0] != "no":
            sources += [AptSource(uri, tuple(fields.get("suites", []))) for uri in fields.get("uris", [])]
    return sources


def host_apt_sources(patterns: Iterable[str] = APT_SOURCE_FILES) -> list[AptSource]:
    sources = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            try:
                sources += parse_apt_sources(Path(path).read_text(errors="replace"))
            except OSError:
                continue
    return sources


def mirror_for(suite: str, sources: Iterable[AptSource], default: str) -> str:
    return next((source.uri.rstrip("/") for source in sources if suite in source.suites), default)


def sources_list(suite: str, mirror: str, security_mirror: str) -> str:
    return (f"deb {mirror} {suite} main\n"
            f"deb {mirror} {suite}-updates main\n"
            f"deb {security_mirror} {suite}-security main\n")


def rootfs_tarball(cache_dir: Path, progress: Callable[[str], None], suite: str = SUITE) -> Path:
    """Today's bootstrapped root file system as a .tar.gz, made if the cache lacks it."""
    architecture = subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                                  text=True, check=True).stdout.strip()
    stem = f"debian-{suite}-{architecture}-minbase"
    tarball = cache_dir / f"{stem}-{datetime.date.today():%Y%m%d}.tar.gz"
    if tarball.exists():
        progress(f"base image: reusing {tarball.name} from the cache")
        return tarball
    sources = host_apt_sources()
    mirror = mirror_for(suite, sources, DEFAULT_MIRROR)
    security_mirror = mirror_for(f"{suite}-security", sources, DEFAULT_SECURITY_MIRROR)
    progress(f"base image: debootstrap {suite} from {mirror} (about a minute)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dbprobe-rootfs-"))
    try:
        rootfs = work / "rootfs"
        _debootstrap(suite, mirror, rootfs, work / "debootstrap.log")
        _configure(rootfs, sources_list(suite, mirror, security_mirror))
        partial = cache_dir / f".{tarball.name}.{os.getpid()}"
        subprocess.run(["tar", "--numeric-owner", "-I", "gzip -1", "-C", str(rootfs), "-cf",
                        str(partial), "."], check=True, capture_output=True)
        os.replace(partial, tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for stale in cache_dir.glob(f"{stem}-*.tar.gz"):
        if stale != tarball:
            stale.unlink(missing_ok=True)
    return tarball


def _debootstrap(suite: str, mirror: str, rootfs: Path, log: Path) -> None:
    with log.open("wb") as output:
        completed = subprocess.run(["debootstrap", "--variant=minbase", suite, str(rootfs), mirror],
                                   stdout=output, stderr=subprocess.STDOUT, timeout=DEBOOTSTRAP_TIMEOUT_S)
    if completed.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise AssertionError(f"debootstrap {suite} from {mirror} failed:\n{tail}")


def _configure(rootfs: Path, sources: str) -> None:
    (rootfs / "etc/apt/sources.list").write_text(sources)
    for relative, text in SLIM_CONFIGURATION.items():
        (rootfs / relative).write_text(text)
    for leftover in [*rootfs.glob("var/cache/apt/archives/*.deb"), *rootfs.glob("var/cache/apt/*.bin"),
                     *(path for path in rootfs.glob("var/lib/apt/lists/*") if path.is_file())]:
        leftover.unlink()
