"""Reading the host's Debian mirror from its apt sources (tests/support/apt_sources.py)."""

from __future__ import annotations

import pytest

from tests.support.apt_sources import (AptSource, NoDebianMirror, debian_mirror, host_codename,
                                       mirror_for, parse_apt_sources)

MIRROR = "http://mirror.invalid/debian"
SECURITY = "http://mirror.invalid/debian-security"

DEB822 = f"""\
Types: deb
# http://snapshot.invalid/archive/debian/20250520T000000Z
URIs: {MIRROR}/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: {SECURITY}
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://sources.invalid/debian
Suites: bookworm

Types: deb
URIs: http://disabled.invalid/debian
Suites: bookworm
Enabled: no
"""

ONE_LINE = f"""\
# deb http://commented.invalid/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/vendor.gpg] https://vendor.invalid/apt cloud-sdk-bookworm main
deb {MIRROR} bookworm main contrib
deb-src {MIRROR} bookworm main
"""

VENDOR = [AptSource("https://vendor.invalid/apt", ("cloud-sdk-bookworm",)),
          AptSource("https://nodejs.invalid/node_20.x", ("nodistro",))]


def test_deb822_stanzas_of_type_deb_that_are_enabled():
    assert parse_apt_sources(DEB822) == [
        AptSource(MIRROR, ("bookworm", "bookworm-updates")),
        AptSource(SECURITY, ("bookworm-security",)),
    ]


def test_one_line_entries_with_options():
    assert parse_apt_sources(ONE_LINE) == [
        AptSource("https://vendor.invalid/apt", ("cloud-sdk-bookworm",)),
        AptSource(MIRROR, ("bookworm",)),
    ]


def test_the_debian_mirror_is_the_source_of_the_hosts_release():
    sources = [*VENDOR, *parse_apt_sources(DEB822)]
    assert debian_mirror(sources, codename="bookworm") == MIRROR
    assert mirror_for("bookworm-security", sources) == SECURITY
    assert mirror_for("bookworm-backports", sources) is None


def test_a_suite_alias_serves_when_the_codename_is_not_listed():
    sources = [*VENDOR, AptSource(MIRROR, ("stable",))]
    assert debian_mirror(sources, codename="bookworm") == MIRROR


def test_no_debian_source_is_an_error_saying_what_was_found_rather_than_a_guessed_mirror():
    with pytest.raises(NoDebianMirror, match="no Debian archive") as raised:
        debian_mirror(VENDOR, codename="bookworm")
    assert "https://vendor.invalid/apt cloud-sdk-bookworm" in str(raised.value)
    with pytest.raises(NoDebianMirror, match="apt sources found: none"):
        debian_mirror([], codename="bookworm")


def test_host_codename(tmp_path):
    os_release = tmp_path / "os-release"
    os_release.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n')
    assert host_codename(os_release) == "bookworm"
    assert host_codename(tmp_path / "missing") is None
