from dbprobe.correlate.fingerprint import fingerprint
from dbprobe.digest.classes import ClassDigest, slot_percentile_ns
from dbprobe.kernel.records import HIST_SLOTS


def _slots(**counts):
    slots = [0] * HIST_SLOTS
    for slot, count in counts.items():
        slots[int(slot[1:])] = count
    return slots


def test_percentile_falls_in_the_slot_of_its_rank():
    slots = _slots(s4=90, s11=10)  # 90 calls of 8-16 us, 10 of 1-2 ms
    assert 8_000 <= slot_percentile_ns(slots, 0.50, 2_000_000) <= 16_000
    assert 1_024_000 <= slot_percentile_ns(slots, 0.95, 2_000_000) <= 2_048_000


def test_percentile_never_exceeds_the_longest_call():
    assert slot_percentile_ns(_slots(s11=1), 0.99, 1_100_000) == 1_100_000
    assert slot_percentile_ns([0] * HIST_SLOTS, 0.5, 0) == 0.0


def test_kernel_classes_of_one_fingerprint_merge_and_rank_by_total():
    digest = ClassDigest()
    short, long = fingerprint("select * from t where a in (1, 2)"), fingerprint("select 1")
    assert fingerprint("select * from t where a in (1, 2, 3)") == short
    digest.add(short, "select * from t where a in (1, 2)", "app", calls=2, total_ns=4_000_000,
               max_ns=3_000_000, errors=0, slow_calls=1, slots=_slots(s12=2))
    digest.add(short, "select * from t where a in (1, 2, 3)", "app", calls=1, total_ns=1_000_000,
               max_ns=1_000_000, errors=1, slow_calls=0, slots=_slots(s10=1))
    digest.add(long, "select 1", "app", calls=100, total_ns=1_000_000, max_ns=20_000, errors=0,
               slow_calls=0, slots=_slots(s4=100))
    ranked = digest.ranked()
    assert [t.fingerprint for t in ranked] == [short, long]
    top = ranked[0]
    assert (top.calls, top.errors, top.slow_calls, top.max_ns) == (3, 1, 1, 3_000_000)
    assert top.sample == "select * from t where a in (1, 2)"
    assert [t.fingerprint for t in digest.ranked("calls")] == [long, short]
    assert digest.calls == 103
