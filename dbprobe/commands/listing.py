"""``dbprobe list``: the database servers on this host and how each report would trace them.

For every server discovery finds: what it is and where it runs (version, pids, container,
binary, data directory, port, OS user), for PostgreSQL its backends, and for each report
family its recipe declares, the mechanism dbprobe would use (USDT, uprobe fallback, or none)
with the reason. Nothing is attached: this only reads /proc and the binaries.
"""

from __future__ import annotations

import argparse
import os
import sys

from dbprobe.discover import processes as discovery
from dbprobe.recipes.survey import inspect_servers
from dbprobe.render.listing import listing_json, listing_text
from dbprobe.render.output import terminal_width, write_stdout
from dbprobe.render.text import terminal_safe

NOT_ROOT_NOTE = ("not root: what other users' processes run (binary, version, probes) may be "
                 "missing or guessed; run as root (sudo dbprobe list) to see everything")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--pid", type=int, metavar="PID",
                        help="only the server this process belongs to (postmaster, backend, mysqld)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per server per line on stdout")


def run_command(args: argparse.Namespace) -> int:
    servers = [discovery.server_for_pid(args.pid)] if args.pid is not None else discovery.find_servers()
    listings = inspect_servers(servers)
    if args.json:
        for listing in listings:
            write_stdout(listing_json(listing) + "\n")
    elif listings:
        write_stdout(terminal_safe(listing_text(listings, terminal_width())) + "\n")
    if not listings:
        print("no PostgreSQL, MariaDB or MySQL server is running on this host",
              file=sys.stderr if args.json else sys.stdout)
    if os.geteuid() != 0:
        print(f"dbprobe: note: {NOT_ROOT_NOTE}", file=sys.stderr)
    return 0
