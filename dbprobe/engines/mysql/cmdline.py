"""What a mysqld's or mariadbd's command line says about where it runs."""

from __future__ import annotations

import os

from dbprobe.engines.base import RunningServer, ServerSettings

# Options that make the server binary do a one-off job rather than serve clients.
ONE_OFF_OPTIONS = frozenset({"--bootstrap", "--initialize", "--initialize-insecure", "-V",
                             "--version", "-?", "--help", "--print-defaults"})


def option(argv: list[str], long_name: str, short_flag: str) -> str | None:
    """An option given as --name=value, --name value, -Xvalue or -X value; the last counts."""
    value = None
    arguments = iter(argv[1:])
    for argument in arguments:
        if argument.startswith(f"--{long_name}="):
            value = argument.partition("=")[2]
        elif argument in (f"--{long_name}", short_flag):
            value = next(arguments, None)
        elif argument.startswith(short_flag) and not argument.startswith("--"):
            value = argument[len(short_flag):]
    return value


def server_settings(server: RunningServer) -> ServerSettings:
    data_dir = option(server.argv, "datadir", "-h")
    if data_dir is None or not os.path.isabs(data_dir):
        data_dir = server.working_directory()  # the server works in its data directory
    port = option(server.argv, "port", "-P")
    return ServerSettings(data_dir=data_dir, port=int(port) if port and port.isdigit() else None)
