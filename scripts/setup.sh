#!/usr/bin/env bash
# Prepare a Debian 12 / Ubuntu machine to build, test and run dbprobe (run as root).
# Idempotent: each step checks first and does nothing when there is nothing to do.
# Prints one line per step; a failing command's full output is shown only on failure.
set -euo pipefail

cd "$(dirname "$0")/.."
readonly SYSTEM_PYTHON=/usr/bin/python3
readonly VENV=.venv
readonly INSTALL_STAMP="$VENV/.installed-pyproject.sha256"
export DEBIAN_FRONTEND=noninteractive

LOG=$(mktemp)
POLICY_RC_CREATED=""
cleanup() {
    rm -f "$LOG"
    if [[ -n "$POLICY_RC_CREATED" ]]; then rm -f /usr/sbin/policy-rc.d; fi
}
trap cleanup EXIT

say() { printf '%-14s %s\n' "$1:" "$2"; }

die() {
    say "$1" "FAILED: $2" >&2
    exit 1
}

# Run a command with its output in $LOG; on failure show that output and stop.
quietly() {
    local step=$1
    shift
    if ! "$@" >"$LOG" 2>&1; then
        cat "$LOG" >&2
        die "$step" "$*"
    fi
}

is_root() { [[ $(id -u) -eq 0 ]]; }

is_installed() {
    [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null) == "ii "* ]]
}

missing_packages() {
    local package
    for package in "$@"; do
        is_installed "$package" || echo "$package"
    done
}

have_package_lists() {
    compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null
}

APT_UPDATED=""
apt_update() {
    apt-get update -qq && APT_UPDATED=1
}

apt_install() { apt-get install -y -qq --no-install-recommends "$@"; }

ensure_package_lists() {
    if ! have_package_lists; then quietly "$1" apt_update; fi
}

# Install packages; if that fails on stale package lists, refresh them and try once more.
install_packages() {
    local step=$1
    shift
    ensure_package_lists "$step"
    if ! apt_install "$@" >"$LOG" 2>&1; then
        [[ -z "$APT_UPDATED" ]] || { cat "$LOG" >&2; die "$step" "apt-get install $*"; }
        quietly "$step" apt_update
        quietly "$step" apt_install "$@"
    fi
}

has_candidate() {
    [[ -n $(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" { print $2 }') ]]
}

# Package installs must not leave the distribution's default database servers (or its
# Prometheus) running:
# invoke-rc.d asks policy-rc.d, and 101 means "do not start".
forbid_service_starts() {
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=1
    fi
}

step_packages() {
    # postgresql is the distribution's default version (postgresql-15 on Debian 12);
    # pgbench comes with the server, postgresql-contrib brings the contrib modules.
    # docker.io, docker-compose and debootstrap serve the compose demo's test, which starts
    # its own dockerd and builds its base image from the Debian mirror; debootstrap and
    # util-linux's unshare also serve the MySQL tests, whose server (Debian unstable's) runs
    # in a bootstrapped root of its own, in its own namespaces. libc6-dbg is the installed
    # separate debug file the DWARF reader is tested on.
    # prometheus is the real Prometheus the agent's tests start on a port of their own (its
    # service is not started, like the database servers').
    # tmux is the real terminal that `dbprobe top`'s full-screen view is tested in.
    # postgresql-server-dev-15's headers give the layout of the server's status entry, which
    # the bench's one-hit experiment reads at hand-written offsets (its test checks them).
    local wanted=(
        python3-bpfcc bpfcc-tools libbpfcc bpftrace
        python3-venv python3-pip
        postgresql postgresql-contrib postgresql-server-dev-15
        mariadb-server mariadb-client
        systemtap-sdt-dev binutils gcc g++ libc6-dev make
        libc6-dbg
        docker.io docker-compose debootstrap util-linux
        prometheus
        tmux
    )
    local missing
    mapfile -t missing < <(missing_packages "${wanted[@]}")
    if [[ ${#missing[@]} -eq 0 ]]; then
        say packages "all present"
        return
    fi
    is_root || die packages "missing ${missing[*]}; run as root"
    forbid_service_starts
    install_packages packages "${missing[@]}"
    say packages "installed ${missing[*]}"
}

# The generic headers package of the distribution for this architecture, and the suffix
# of its /usr/src tree.
generic_headers() {
    local arch
    arch=$(dpkg --print-architecture)
    if grep -qiE '^(ID|ID_LIKE)=.*ubuntu' /etc/os-release; then
        echo "linux-headers-generic generic"
    else
        echo "linux-headers-$arch $arch"
    fi
}

# The common (architecture-independent) tree beside a flavoured one:
# Debian linux-headers-6.1.0-56-amd64 -> -common; Ubuntu linux-headers-6.8.0-45-generic -> no suffix.
common_headers_tree() {
    local flavoured=$1 flavour=$2
    local base=${flavoured%-"$flavour"}
    if [[ -d "$base-common" ]]; then echo "$base-common"; else echo "$base"; fi
}

step_kernel_headers() {
    local release modules
    release=$(uname -r)
    modules=/lib/modules/$release
    if [[ -e "$modules/build" ]]; then
        say headers "present for $release"
        return
    fi
    is_root || die headers "no kernel headers for $release; run as root"
    ensure_package_lists headers
    if has_candidate "linux-headers-$release"; then
        install_packages headers "linux-headers-$release"
        say headers "installed linux-headers-$release"
        return
    fi
    # A custom or cloud kernel has no headers package; uprobe programs need nothing
    # version-specific from the headers, so the distribution's generic ones serve.
    local package flavour tree
    read -r package flavour <<<"$(generic_headers)"
    install_packages headers "$package"
    tree=$(find /usr/src -maxdepth 1 -type d -name "linux-headers-*-$flavour" | sort -V | tail -n 1)
    [[ -n "$tree" ]] || die headers "$package installed no /usr/src/linux-headers-*-$flavour tree"
    mkdir -p "$modules"
    ln -sfn "$tree" "$modules/build"
    ln -sfn "$(common_headers_tree "$tree" "$flavour")" "$modules/source"
    say headers "no package for $release; linked $modules/build to $tree ($package)"
}

is_mounted() { awk -v dir="$1" '$2 == dir { found = 1 } END { exit !found }' /proc/mounts; }

step_tracefs() {
    local tracefs debugfs
    if is_mounted /sys/kernel/tracing; then
        tracefs="present"
    else
        is_root || die tracefs "/sys/kernel/tracing is not mounted; run as root"
        quietly tracefs mount -t tracefs tracefs /sys/kernel/tracing
        tracefs="mounted"
    fi
    # debugfs is optional: only older tools look for tracing under it.
    if is_mounted /sys/kernel/debug; then
        debugfs="debugfs present"
    elif is_root && mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null; then
        debugfs="mounted debugfs"
    else
        debugfs="no debugfs (optional)"
    fi
    say tracefs "$tracefs at /sys/kernel/tracing, $debugfs"
}

venv_is_from_system_python() {
    grep -qx 'home = /usr/bin' "$VENV/pyvenv.cfg" 2>/dev/null \
        && grep -qx 'include-system-site-packages = true' "$VENV/pyvenv.cfg"
}

step_venv() {
    local made="" digest
    if ! venv_is_from_system_python; then
        rm -rf "$VENV"
        quietly venv "$SYSTEM_PYTHON" -m venv --system-site-packages "$VENV"
        made="created $VENV; "
    fi
    digest=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [[ $(cat "$INSTALL_STAMP" 2>/dev/null) == "$digest" ]]; then
        say venv "${made}dbprobe already installed"
    else
        quietly venv "$VENV/bin/pip" install --quiet --disable-pip-version-check -e '.[test]'
        echo "$digest" >"$INSTALL_STAMP"
        say venv "${made}installed dbprobe[test]"
    fi
}

step_verify() {
    quietly verify "$VENV/bin/python" -c 'import bcc, psutil, elftools, tabulate, prometheus_client'
    say verify "bcc, psutil, elftools, tabulate and prometheus_client import in $VENV"
}

step_packages
step_kernel_headers
step_tracefs
step_venv
step_verify
