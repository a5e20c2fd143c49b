"""What a postmaster's command line and data directory say about where it runs."""

from __future__ import annotations

import os

from dbprobe.engines.base import RunningServer, ServerSettings

# Options that make the postgres binary do a one-off job (print its version, bootstrap a
# new cluster...) rather than serve clients.
ONE_OFF_OPTIONS = frozenset({"--boot", "--check", "-C", "--describe-config", "-V", "--version",
                             "-?", "--help"})


def parse_settings(argv: list[str]) -> dict[str, str]:
    """Settings on a postgres command line, from -D, -p, -c name=value and --name=value.

    -D is kept as "-D": it names the configuration directory, usually the data directory.
    """
    settings = {}
    flags = {"-D": "-D", "-p": "port"}
    arguments = iter(argv[1:])
    for argument in arguments:
        if argument in flags or argument == "-c":
            value = next(arguments, "")
        elif argument[:2] in flags or argument[:2] == "-c":
            argument, value = argument[:2], argument[2:]
        elif argument.startswith("--") and "=" in argument:
            name, _, value = argument[2:].partition("=")
            settings[name.replace("-", "_")] = value
            continue
        else:
            continue
        if argument == "-c":
            name, _, value = value.partition("=")
            settings[name.replace("-", "_")] = value
        else:
            settings[flags[argument]] = value
    return settings


def server_settings(server: RunningServer) -> ServerSettings:
    settings = parse_settings(server.argv)
    data_dir = _data_dir(server, settings)
    return ServerSettings(data_dir=data_dir, port=_port(server, settings, data_dir))


def _data_dir(server: RunningServer, settings: dict[str, str]) -> str | None:
    data_dir = (settings.get("data_directory") or settings.get("-D")
                or server.environment_variable("PGDATA"))
    if data_dir is None or not os.path.isabs(data_dir):
        # The postmaster works in its data directory; a relative path was relative to its starter.
        return server.working_directory()
    return data_dir


def _port(server: RunningServer, settings: dict[str, str], data_dir: str | None) -> int | None:
    port = settings.get("port")
    if port is None and data_dir is not None:
        port = _port_from_postmaster_pid_file(server, data_dir)
    return int(port) if port and port.isdigit() else None


def _port_from_postmaster_pid_file(server: RunningServer, data_dir: str) -> str | None:
    """postmaster.pid's fourth line is the port the postmaster listens on."""
    text = server.read_text(os.path.join(data_dir, "postmaster.pid"))
    lines = text.splitlines() if text is not None else []
    return lines[3].strip() if len(lines) > 3 else None
