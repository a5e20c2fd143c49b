"""Files as the kernel knows them: by device and inode, whatever path names them."""

from __future__ import annotations

import os
import stat

FileIdentity = tuple[int, int]  # (st_dev, st_ino)

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_identity(path: str) -> FileIdentity | None:
    """The file `path` names now (symbolic and /proc links followed); None if it names none."""
    try:
        found = os.stat(path)
    except (OSError, ValueError):
        return None
    return (found.st_dev, found.st_ino)


def kind_of(mode: int) -> str:
    """What a file of this st_mode is, for messages: "a regular file", "a directory"..."""
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "a regular file" if stat.S_ISREG(mode) else "a special file"
