"""A Debian root file system made with debootstrap, to import as a base image.

Where no registry can be reached, ``docker import`` of a bootstrapped root file system
stands in for the ``debian:bookworm-slim`` image: the same suite and apt sources (main,
-updates, -security), and, like the official slim images, no documentation installed and
dpkg without fsync. It is bootstrapped from the Debian mirror apt already uses on this
host (tests/support/apt_sources.py), and its sources name that mirror.

Bootstrapping takes about a minute, so the tarball is kept in a cache directory, named by
the day it was made: later runs that day reuse it, the first run of a new day replaces it.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from tests.support.apt_sources import debian_mirror, host_apt_sources, mirror_for

SUITE = "bookworm"
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


def sources_list(suite: str, mirror: str, security_mirror: str | None) -> str:
    """A stable suite's sources: main, -updates, and -security where the host has a mirror for it."""
    return (f"deb {mirror} {suite} main\n"
            f"deb {mirror} {suite}-updates main\n"
            + (f"deb {security_mirror} {suite}-security main\n" if security_mirror else ""))


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
    mirror = debian_mirror(sources)
    security_mirror = mirror_for(f"{suite}-security", sources)
    progress(f"base image: debootstrap {suite} from {mirror} (about a minute)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dbprobe-rootfs-"))
    try:
        rootfs = work / "rootfs"
        debootstrap(suite, mirror, rootfs, work / "debootstrap.log")
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


def debootstrap(suite: str, mirror: str, rootfs: Path, log: Path) -> None:
    """A minimal (minbase) `suite` in `rootfs`; its apt lists are left for apt to use."""
    with log.open("wb") as output:
        completed = subprocess.run(["debootstrap", "--variant=minbase", suite, str(rootfs), mirror],
                                   stdout=output, stderr=subprocess.STDOUT, timeout=DEBOOTSTRAP_TIMEOUT_S)
    if completed.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise AssertionError(f"debootstrap {suite} from {mirror} failed:\n{tail}")


def _configure(rootfs: Path, sources: str) -> None:
    (rootfs / "etc/apt/sources.list").write_text(sources)
    apply_slim_configuration(rootfs)
    remove_package_caches(rootfs)


def apply_slim_configuration(rootfs: Path) -> None:
    for relative, text in SLIM_CONFIGURATION.items():
        (rootfs / relative).write_text(text)


def remove_package_caches(rootfs: Path) -> None:
    """Downloaded packages and package lists: an image has no use for them."""
    for leftover in [*rootfs.glob("var/cache/apt/archives/*.deb"), *rootfs.glob("var/cache/apt/*.bin"),
                     *(path for path in rootfs.glob("var/lib/apt/lists/*") if path.is_file())]:
        leftover.unlink()
