"""The wait-event profile report: where the traced backends' time off CPU went, by wait
event over the whole server (counted in the kernel) and by statement class."""

from __future__ import annotations

from dbprobe.correlate.statements import Correlator
from dbprobe.digest.waits import ClassWaitDigest, EventTime, WaitProfile, ranked
from dbprobe.engines.registry import engine_for
from dbprobe.kernel.records import OFF_CPU_CLASSES, RawQuery
from dbprobe.kernel.trace import Trace
from dbprobe.render import waits as render
from dbprobe.render.output import Output
from dbprobe.reports.window import Window

PROFILE_MAP = "waits_profile"  # probes/waits.h
NO_EVENT = 0xFF000000  # a key of this top byte: a span in no wait event, its class below


class KernelProfile:
    """The kernel's sums per wait-event key, (count, ns), as they stood when read."""

    def __init__(self, sums: dict[int, tuple[int, int]]):
        self.sums = sums

    def __sub__(self, earlier: "KernelProfile") -> "KernelProfile":
        return KernelProfile({key: (count - earlier.sums.get(key, (0, 0))[0],
                                    ns - earlier.sums.get(key, (0, 0))[1])
                              for key, (count, ns) in self.sums.items()})


def read_profile(collector) -> KernelProfile:
    sums: dict[int, tuple[int, int]] = {}
    for key, value in collector.items(PROFILE_MAP):
        per_cpu = value if hasattr(value, "__len__") else [value]
        sums[key.value] = (sum(cpu.count for cpu in per_cpu), sum(cpu.ns for cpu in per_cpu))
    return KernelProfile(sums)


def event_label(key: int, db: str, version: str | None) -> str:
    if key & 0xFF000000 == NO_EVENT:
        klass = key & 0xFF
        name = OFF_CPU_CLASSES[klass] if klass < len(OFF_CPU_CLASSES) else "other"
        return f"({name}, no wait event)"
    return engine_for(db).wait_event_name(key, version)


class WaitProfileReport:
    def __init__(self, output: Output):
        self._output = output
        self.description = "wait events of every traced backend"
        self._classes = ClassWaitDigest()
        self._window: Window[KernelProfile] | None = None
        self._name = lambda key: f"{key:#010x}"

    def attach_to(self, trace: Trace) -> None:
        correlator = Correlator(trace.sources, trace.backends, databases=trace.databases,
                                versions=trace.versions)
        trace.on(RawQuery, lambda raw: self._classes.add(correlator.query(raw)))
        self._window = Window(lambda: read_profile(trace.collector), KernelProfile({}),
                              trace.started)
        # One program per trace: the wait events are named for its first server.
        target = trace.targets[0]
        self._name = lambda key: event_label(key, target.db, target.version)

    def start(self) -> None:
        pass

    def tick(self, now: float) -> None:
        pass

    def print_digest(self) -> None:
        started, ended, grown = self._window.close()
        events: dict[str, EventTime] = {}
        for key, (count, ns) in grown.sums.items():
            if count:
                events.setdefault(self._name(key), EventTime()).add(count, ns / 1e6)
        classes, self._classes = self._classes, ClassWaitDigest()
        profile = WaitProfile(started, ended, ranked(events), classes.ranked())
        if self._output.json:
            self._output.emit(render.summary_json(profile))
        else:
            self._output.emit(render.digest_text(profile, width=self._output.width))
