"""Preflight checks that read files, run against files the tests write: headers, kernel config, BTF."""

from __future__ import annotations

import gzip
from pathlib import Path

from dbprobe.kernel.preflight import (
    FAIL,
    OK,
    REQUIRED_KERNEL_OPTIONS,
    WARN,
    check_btf,
    check_kernel_config,
    check_kernel_headers,
    kernel_headers_fix,
    parse_kernel_config,
)

RELEASE = "6.18.44-custom"
CONFIG_TEXT = """\
#
# Automatically generated file; DO NOT EDIT.
CONFIG_BPF=y
CONFIG_BPF_SYSCALL=y
CONFIG_PERF_EVENTS=y
CONFIG_UPROBES=y
CONFIG_UPROBE_EVENTS=y
CONFIG_BPF_EVENTS=y
# CONFIG_IKHEADERS is not set
CONFIG_NR_CPUS=8192
CONFIG_LOCALVERSION="-custom"
"""


def test_no_headers_anywhere_fails_with_the_generic_headers_link_fix(tmp_path: Path) -> None:
    empty_source = tmp_path / "kernel-source"
    empty_source.mkdir()
    missing_build = tmp_path / "lib" / "modules" / RELEASE / "build"
    check = check_kernel_headers([empty_source, missing_build], kheaders=tmp_path / "kheaders.tar.xz",
                                 release=RELEASE)
    assert check.status == FAIL
    assert check.detail == f"none for {RELEASE}: BCC compiles its programs against them"
    assert check.fix.startswith(f"apt-get install linux-headers-{RELEASE}; ")
    assert "ln -sfn \"$(ls -d /usr/src/linux-headers-*-" in check.fix
    assert check.fix.endswith(f"/lib/modules/{RELEASE}/source")


def test_the_fix_links_build_and_source_for_the_architecture() -> None:
    fix = kernel_headers_fix(RELEASE, "arm64")
    assert fix == (
        f"apt-get install linux-headers-{RELEASE}; where the distribution has none for this kernel, "
        f"link the generic ones (make setup does this): apt-get install linux-headers-arm64 && "
        f"mkdir -p /lib/modules/{RELEASE} && "
        f"ln -sfn \"$(ls -d /usr/src/linux-headers-*-arm64 | sort -V | tail -n 1)\" /lib/modules/{RELEASE}/build && "
        f"ln -sfn \"$(ls -d /usr/src/linux-headers-*-common | sort -V | tail -n 1)\" /lib/modules/{RELEASE}/source"
    )


def test_a_headers_tree_of_the_running_kernel_is_ok(tmp_path: Path) -> None:
    tree = tmp_path / f"linux-headers-{RELEASE}"
    (tree / "include" / "linux").mkdir(parents=True)
    check = check_kernel_headers([tmp_path / "absent", tree], kheaders=tmp_path / "none", release=RELEASE)
    assert (check.status, check.detail) == (OK, f"{tree} -> {tree}")


def test_linked_generic_headers_are_ok_and_say_they_are_another_kernels(tmp_path: Path) -> None:
    generic = tmp_path / "linux-headers-6.1.0-56-amd64"
    (generic / "include" / "generated").mkdir(parents=True)
    build = tmp_path / "build"
    build.symlink_to(generic)
    check = check_kernel_headers([build], kheaders=tmp_path / "none", release=RELEASE)
    assert check.status == OK
    assert check.detail == f"{build} -> {generic}: another kernel's headers, enough for dbprobe's uprobe programs"


def test_headers_built_into_the_kernel_are_ok(tmp_path: Path) -> None:
    archive = tmp_path / "kheaders.tar.xz"
    archive.write_bytes(b"")
    check = check_kernel_headers([tmp_path / "absent"], kheaders=archive, release=RELEASE)
    assert (check.status, check.detail) == (OK, "built into the kernel (CONFIG_IKHEADERS)")


def test_parse_kernel_config_keeps_set_options_only() -> None:
    options = parse_kernel_config(CONFIG_TEXT)
    assert options["CONFIG_BPF_SYSCALL"] == "y"
    assert options["CONFIG_NR_CPUS"] == "8192"
    assert options["CONFIG_LOCALVERSION"] == '"-custom"'
    assert "CONFIG_IKHEADERS" not in options


def test_kernel_config_with_every_required_option_is_ok(tmp_path: Path) -> None:
    config = tmp_path / "config.gz"
    config.write_bytes(gzip.compress(CONFIG_TEXT.encode()))
    check = check_kernel_config([tmp_path / "absent", config])
    assert check.status == OK
    assert check.detail.startswith(f"{config}: ")
    assert all(f"{name}=y" in check.detail for name in REQUIRED_KERNEL_OPTIONS)


def test_kernel_config_without_uprobes_fails_naming_them(tmp_path: Path) -> None:
    config = tmp_path / f"config-{RELEASE}"
    config.write_text(CONFIG_TEXT.replace("CONFIG_UPROBES=y", "# CONFIG_UPROBES is not set")
                      .replace("CONFIG_UPROBE_EVENTS=y\n", ""))
    check = check_kernel_config([config])
    assert check.status == FAIL
    assert check.detail == f"{config}: not built with CONFIG_UPROBES (uprobes), CONFIG_UPROBE_EVENTS (uprobe events)"
    assert check.fix.startswith("boot a kernel built with CONFIG_UPROBES=y, CONFIG_UPROBE_EVENTS=y: apt-get install linux-image-")


def test_unreadable_kernel_config_warns(tmp_path: Path) -> None:
    corrupt = tmp_path / "config.gz"
    corrupt.write_bytes(b"not gzip")
    check = check_kernel_config([tmp_path / "absent", corrupt])
    assert check.status == WARN
    assert check.detail.startswith(f"cannot read {tmp_path / 'absent'} or {corrupt}")
    assert check.fix.startswith("modprobe configs")


def test_btf_is_informational_either_way(tmp_path: Path) -> None:
    vmlinux = tmp_path / "vmlinux"
    absent = check_btf(vmlinux)
    vmlinux.write_bytes(b"\x9f\xeb")
    present = check_btf(vmlinux)
    assert (absent.status, present.status) == (OK, OK)
    assert absent.detail == f"no {vmlinux} (informational: dbprobe does not need BTF)"
    assert present.detail == f"{vmlinux} present (informational: dbprobe does not need BTF)"
