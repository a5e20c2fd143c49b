"""The pure parts of discovery: cgroup paths, NSpid lines, the host path of a server's binary."""

from __future__ import annotations

import pytest

from dbprobe.discover.processes import parse_container_id, parse_ns_pid

CONTAINER = "3f1e9c0d5b7a4e2f8c6d1b0a9e8f7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e"
OUTER = "0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d9c0b1a2f3e4d5c6b7a8f9e0d1c"
POD = "pod3c1f7a2e_9d4b_4f1a_8c55_1b2f0e6d9a77"
DOCKER_V1 = (
    "\n".join(
        f"{number}:{controller}:/docker/{CONTAINER}"
        for number, controller in [
            (12, "pids"),
            (11, "memory"),
            (4, "cpu,cpuacct"),
            (1, "name=systemd"),
        ]
    )
    + "\n0::/system.slice/containerd.service\n"
)


@pytest.mark.parametrize(
    ("cgroup", "expected"),
    [
        (DOCKER_V1, CONTAINER[:12]),
        (f"0::/system.slice/docker-{CONTAINER}.scope\n", CONTAINER[:12]),
        (f"0::/docker/{CONTAINER}\n", CONTAINER[:12]),
        (
            f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-{POD}.slice/cri-containerd-{CONTAINER}.scope\n",
            CONTAINER[:12],
        ),
        (f"11:memory:/kubepods/besteffort/{POD.replace('_', '-')}/{CONTAINER}\n", CONTAINER[:12]),
        (f"0::/kubepods.slice/kubepods-{POD}.slice/crio-{CONTAINER}.scope\n", CONTAINER[:12]),
        (f"0::/machine.slice/libpod-{CONTAINER}.scope/container\n", CONTAINER[:12]),
        (
            f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CONTAINER}.scope/container\n",
            CONTAINER[:12],
        ),
        # Docker in docker: the innermost container is the process's own.
        (f"4:memory:/docker/{OUTER}/docker/{CONTAINER}\n", CONTAINER[:12]),
        # conmon watches a podman container from outside it.
        (f"0::/machine.slice/libpod-conmon-{CONTAINER}.scope\n", None),
        # On the host.
        ("0::/system.slice/postgresql@15-main.service\n", None),
        ("0::/\n", None),
        ("9:name=systemd:/\n4:memory:/user.slice/session-3.scope\n0::/\n", None),
        (
            f"0::/system.slice/backup-{CONTAINER}.scope\n",
            None,
        ),  # an id-like name, but no container runtime
        ("", None),
    ],
)
def test_container_id(cgroup: str, expected: str | None) -> None:
    assert parse_container_id(cgroup) == expected


STATUS = """\
Name:\tpostgres
Umask:\t0077
State:\tS (sleeping)
Tgid:\t{pid}
Ngid:\t0
Pid:\t{pid}
PPid:\t1
Uid:\t999\t999\t999\t999
Gid:\t999\t999\t999\t999
NStgid:\t{nspids}
NSpid:\t{nspids}
NSpgid:\t{nspids}
NSsid:\t{nspids}
Threads:\t1
"""


@pytest.mark.parametrize(
    ("nspids", "expected"),
    [
        ("4242", None),  # in our own pid namespace
        ("4242\t1", 1),  # the first process of a container
        ("4242\t87", 87),
        ("4242\t310\t1", 1),  # nested namespaces: the innermost one
    ],
)
def test_ns_pid(nspids: str, expected: int | None) -> None:
    assert parse_ns_pid(STATUS.format(pid=4242, nspids=nspids)) == expected


def test_ns_pid_unknown_before_linux_4_1() -> None:
    status = "".join(
        line + "\n"
        for line in STATUS.format(pid=4242, nspids="4242").splitlines()
        if "NS" not in line
    )
    assert parse_ns_pid(status) is None
