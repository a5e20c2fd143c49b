"""From the kernel's statement classes to a digest: each class named by its sample.

The kernel sends the first text of each class (server, database, class hash) once; the
samples are kept here, fingerprinted in their server's dialect, and every reading of the
class map becomes a ``ClassDigest`` in which kernel classes of one fingerprint are one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from dbprobe.correlate.fingerprint import Fingerprint
from dbprobe.digest.classes import ClassDigest
from dbprobe.discover.backends import BackendDirectory, DatabaseNames
from dbprobe.engines.registry import engine_for
from dbprobe.kernel.maps import ClassCounters, ClassKey
from dbprobe.correlate.statements import named_waits
from dbprobe.kernel.records import QF_NO_TEXT, Breakdown, RawClassSample
from dbprobe.model import Source, WaitTime

UNKNOWN_PREPARED = "EXECUTE <prepared statement, prepared before dbprobe attached>"
NOT_SEEN = "(a statement whose text has not reached dbprobe yet)"


@dataclass(frozen=True, slots=True)
class ClassSample:
    text: str  # as the server saw it, literals included
    fingerprint: Fingerprint
    binary: str  # which server binary ran it: database OIDs are per server
    database: str | None  # the name its backend gave, when it was alive to tell
    db: str = ""  # the engine: wait events are named by it, for the server's version
    version: str | None = None


class ClassSamples:
    """The sample of every class the kernel counted, by its key."""

    def __init__(self, sources: Mapping[int, Source], backends: BackendDirectory,
                 databases: DatabaseNames, versions: Mapping[int, str | None] | None = None):
        self._sources = sources
        self._versions = versions if versions is not None else {}
        self._backends = backends
        self._databases = databases
        self._samples: dict[tuple[int, int, int], ClassSample] = {}

    def on_sample(self, raw: RawClassSample) -> None:
        key = (raw.server, raw.database_oid, raw.hash)
        if key in self._samples:
            return  # two CPUs sent the same new class: the first one stays
        source = self._sources[raw.hook]
        text = raw.text.decode("utf-8", errors="replace")
        if not text and raw.flags & QF_NO_TEXT:
            text = UNKNOWN_PREPARED
        backend = self._backends.lookup(raw.pid)
        alive_name = backend.info.database if backend.info else None
        database = self._databases.resolve(source.binary, raw.database_oid, alive_name)
        self._samples[key] = ClassSample(text, engine_for(source.db).fingerprint(text),
                                         source.binary, database, source.db,
                                         self._versions.get(raw.hook))

    def sample(self, key: ClassKey) -> ClassSample | None:
        return self._samples.get((key.server, key.database_oid, key.hash))

    def digest(self, counters: ClassCounters, seconds: float) -> ClassDigest:
        """The classes that grew in a window (``counters``: what grew), merged by fingerprint."""
        digest = ClassDigest(untracked=counters.untracked, seconds=seconds,
                             waits_untracked=counters.waits_untracked)
        for key, stats in counters.classes.items():
            sample = self.sample(key)
            if sample is None:
                fingerprint, text, database = Fingerprint(f"{key.hash:016x}", NOT_SEEN), NOT_SEEN, None
            else:
                fingerprint, text = sample.fingerprint, sample.text
                database = sample.database or (self._databases.name(sample.binary, key.database_oid)
                                               if key.database_oid else None)
            digest.add(fingerprint, text, database, calls=stats.calls, total_ns=stats.total_ns,
                       max_ns=stats.max_ns, errors=stats.errors, slow_calls=stats.slow,
                       slots=stats.slots, breakdown=stats.breakdown, timed=stats.timed,
                       waits=self.named_waits(stats.breakdown, sample))
        return digest

    @staticmethod
    def named_waits(breakdown: Breakdown | None, sample: ClassSample | None) -> tuple[WaitTime, ...]:
        """A class's wait events by name (the server's version's), longest first."""
        if breakdown is None or not breakdown.waits or sample is None or not sample.db:
            return ()
        return named_waits(breakdown.waits, engine_for(sample.db), sample.version)
