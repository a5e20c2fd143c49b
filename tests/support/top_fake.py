"""``dbprobe top``'s full-screen view on a terminal, fed by made-up intervals instead of a
trace: ``python -m tests.support.top_fake``. The view, keys and terminal handling are the
real ones; only the source and the poll loop are stand-ins."""

from __future__ import annotations

import sys
import time

from dbprobe.correlate.fingerprint import fingerprint
from dbprobe.digest.classes import ClassDigest
from dbprobe.kernel.records import HIST_SLOTS
from dbprobe.render.top import TopHeader, TopView
from dbprobe.reports.top import LiveScreen

INTERVAL_S = 0.5
TICK_S = 0.05

# sample, database, calls per interval, mean microseconds (a power of two: its slot)
CLASSES = [
    ("select pg_sleep(0.2)", "app", 2, 1 << 17),
    ("select * from orders where id = 7", "shop", 400, 1 << 6),
    ("update stock set n = n - 1 where item = 'anvil'", "shop", 40, 1 << 10),
]


def interval(number: int) -> ClassDigest:
    digest = ClassDigest(seconds=INTERVAL_S)
    for sample, database, calls, mean_us in CLASSES:
        slots = [0] * HIST_SLOTS
        slots[mean_us.bit_length()] = calls
        digest.add(fingerprint(sample), sample, database, calls=calls,
                   total_ns=calls * mean_us * 1000, max_ns=mean_us * 1000, errors=number % 2,
                   slow_calls=0, slots=slots)
    return digest


def main() -> int:
    header = TopHeader("PostgreSQL server pid 4242 (made up)", INTERVAL_S, time.time())
    with LiveScreen(header, TopView()) as screen:
        number, next_at = 0, time.monotonic() + INTERVAL_S
        while not screen.quit:
            screen.tick()
            if time.monotonic() >= next_at:
                number += 1
                screen.show(interval(number), time.time())
                if number == 2:
                    screen.warn("warning: a made-up warning")
                next_at += INTERVAL_S
            time.sleep(TICK_S)
    print(f"quit after {number} intervals", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
