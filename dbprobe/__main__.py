"""``python -m dbprobe`` and the ``dbprobe`` command: an interrupt at any moment, even while
the modules load, ends quietly with status 130."""

import sys


def run() -> int:
    try:
        from dbprobe.cli import main

        return main()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(run())
