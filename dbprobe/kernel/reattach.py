"""Attaching to the new file of a replaced binary, for the servers restarted on it.

A package upgrade puts a new file (a new inode) at the path a traced server runs; the
server restarted from that path runs the new file, which no probe is on. Its program is
built and attached here, once per file, on a worker thread: compiling takes seconds and
the trace loop goes on draining the other programs meanwhile. A finished attach joins the
command's TraceSet, so the restarted server's records reach the same reports and digests.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable

from dbprobe.discover.files import FileIdentity, file_identity
from dbprobe.discover.processes import ServerProcess
from dbprobe.discover.replaced import restart_path
from dbprobe.discover.targets import Target, target_of_servers
from dbprobe.engines.registry import engine_for
from dbprobe.errors import DbprobeError
from dbprobe.kernel.trace import Trace, TraceRequest
from dbprobe.kernel.traceset import TraceSet


@dataclass(frozen=True, slots=True)
class Attaching:
    server: ServerProcess
    path: str  # the path it was restarted from
    file: FileIdentity
    job: Future


class Reattacher:
    """Attaches the programs of new files, and tells when each one is done."""

    def __init__(self, traces: TraceSet, request: TraceRequest, warn: Callable[[str], None],
                 on_attached: Callable[[str, str, FileIdentity], None],
                 opener: Callable[[Target, TraceRequest], Trace] = Trace.open_target):
        self._traces = traces
        self._request = request
        self._warn = warn
        self._on_attached = on_attached  # (db, path, file): the watch learns it is traced
        self._opener = opener
        self._worker: ThreadPoolExecutor | None = None
        self._attaching: list[Attaching] = []
        self._files: set[FileIdentity] = set()  # attached or being attached

    def follow(self, server: ServerProcess) -> None:
        """Attach to the file `server` runs, unless that file is attached or being attached."""
        file = file_identity(server.binary)
        if file is None or file in self._files:
            return
        self._files.add(file)
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dbprobe-attach")
        target = replace(target_of_servers([server]), file=file)
        job = self._worker.submit(self._opener, target, self._request)
        self._attaching.append(Attaching(server, restart_path(server), file, job))

    def poll(self) -> None:
        """Add the attaches that finished to the trace set, and say so."""
        for attaching in [entry for entry in self._attaching if entry.job.done()]:
            self._attaching.remove(attaching)
            self._finished(attaching)

    def _finished(self, attaching: Attaching) -> None:
        server = attaching.server
        name = f"{engine_for(server.db).display_name} server pid {server.pid}"
        try:
            trace = attaching.job.result()
        except Exception as error:
            reason = str(error) if isinstance(error, DbprobeError) else f"{type(error).__name__}: {error}"
            self._warn(f"cannot attach to the new {attaching.path}: {reason}; {name} is not "
                       f"traced: run dbprobe again to trace it")
            return
        self._traces.add(trace)
        self._on_attached(server.db, attaching.path, attaching.file)
        self._warn(f"{name} is traced again: attached {trace.probes_attached} probes to the new "
                   f"{attaching.path} (version {server.version or 'unknown'})")

    def close(self) -> None:
        """Wait for the attaches under way and detach what they attached (close the trace
        set after this: it detaches the programs added to it)."""
        if self._worker is None:
            return
        self._worker.shutdown(wait=True)
        for attaching in self._attaching:
            if attaching.job.exception() is None:
                attaching.job.result().close()
        self._attaching = []
