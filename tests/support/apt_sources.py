"""The Debian mirror this host's apt already uses, read from its apt sources at run time.

Root file systems for the tests are bootstrapped from the same mirror as the host's own
packages: whatever the host can install from, the tests can bootstrap from, and no mirror
is named anywhere else. Both formats are read: one-line ``deb URI SUITE COMPONENTS`` in
sources.list and ``*.list``, and deb822 stanzas (``Types:``, ``URIs:``, ``Suites:``) in
``*.sources``. The Debian archive is the source that serves the host's own release (the
``VERSION_CODENAME`` of /etc/os-release, or a suite alias such as ``stable``); every suite,
``unstable`` too, is on that mirror.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

APT_SOURCE_FILES = ("/etc/apt/sources.list", "/etc/apt/sources.list.d/*.list",
                    "/etc/apt/sources.list.d/*.sources")
OS_RELEASE = Path("/etc/os-release")
SUITE_ALIASES = ("stable", "oldstable", "testing", "unstable", "sid")


class NoDebianMirror(AssertionError):
    """The host's apt sources name no Debian archive to bootstrap from."""


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
                sources.append(AptSource(rest[0].rstrip("/"), (rest[1],)))
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
            sources += [AptSource(uri.rstrip("/"), tuple(fields.get("suites", [])))
                        for uri in fields.get("uris", [])]
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


def host_codename(os_release: Path = OS_RELEASE) -> str | None:
    try:
        text = os_release.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "VERSION_CODENAME":
            return value.strip().strip('"') or None
    return None


def mirror_for(suite: str, sources: Iterable[AptSource]) -> str | None:
    """The URI of the first source that serves `suite`, None when none does."""
    return next((source.uri for source in sources if suite in source.suites), None)


def debian_mirror(sources: Iterable[AptSource] | None = None, codename: str | None = None) -> str:
    """The Debian archive among the apt sources: the one serving the host's release."""
    sources = list(host_apt_sources() if sources is None else sources)
    codename = host_codename() if codename is None else codename
    for suite in ([codename] if codename else []) + list(SUITE_ALIASES):
        mirror = mirror_for(suite, sources)
        if mirror is not None:
            return mirror
    listed = ", ".join(f"{source.uri} {' '.join(source.suites)}" for source in sources) or "none"
    raise NoDebianMirror(
        f"no Debian archive among the apt sources (one serving {codename or 'this release'}); "
        f"apt sources found: {listed}. Add the Debian mirror this host installs from to "
        f"/etc/apt/sources.list.d/")
