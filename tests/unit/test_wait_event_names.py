"""Wait events named as each PostgreSQL major version names them, 12 to 18.

The expected names and numbers were read in each release's sources (the C enums, or from 17 on
wait_event_names.txt sorted as its generator sorts it): the first, a middle and the last event
of each class, so a table shifted by one fails.
"""

from __future__ import annotations

import hashlib

import pytest

from dbprobe.engines.postgresql import wait_event_names, wait_events
from dbprobe.engines.registry import engine_for

ACTIVITY, CLIENT, IPC, TIMEOUT, IO, LWLOCK, LOCK = (
    wait_events.ACTIVITY, wait_events.CLIENT, wait_events.IPC, wait_events.TIMEOUT, wait_events.IO,
    wait_events.LWLOCK, wait_events.LOCK)

SPOT_CHECKS = {
    "12.22": [
        (0x05000000, "Activity:ArchiverMain"), (0x05000007, "Activity:PgStatMain"),
        (0x0500000D, "Activity:WalWriterMain"),
        (0x06000000, "Client:ClientRead"), (0x06000008, "Client:GSSOpenServer"),
        (0x08000000, "IPC:BgWorkerShutdown"), (0x08000012, "IPC:Hash/GrowBatches/Repartitioning"),
        (0x0800001F, "IPC:ProcArrayGroupUpdate"), (0x08000024, "IPC:SyncRep"),
        (0x09000000, "Timeout:BaseBackupThrottle"), (0x09000002, "Timeout:RecoveryApplyDelay"),
        (0x0A000000, "IO:BufFileRead"), (0x0A00000D, "IO:DataFileRead"),
        (0x0A000043, "IO:WALWrite"),
        (0x01000008, "LWLock:WALWriteLock"), (0x0100002C, "LWLock:CLogTruncationLock"),
        (0x0100002D, "LWLock:clog"), (0x01000045, "LWLock:serializable_xact"),
        (0x01000046, "LWLock:extension"),
        (0x03000004, "Lock:transactionid"),
    ],
    "13.3": [
        (0x05000000, "Activity:ArchiverMain"), (0x0500000C, "Activity:WalWriterMain"),
        (0x06000000, "Client:ClientRead"), (0x06000008, "Client:WalSenderWriteData"),
        (0x08000000, "IPC:BackupWaitWalArchive"), (0x08000015, "IPC:HashGrowBucketsReinsert"),
        (0x0800001F, "IPC:ProcArrayGroupUpdate"), (0x08000029, "IPC:XactGroupUpdate"),
        (0x09000000, "Timeout:BaseBackupThrottle"), (0x09000004, "Timeout:VacuumDelay"),
        (0x0A000000, "IO:BufFileRead"), (0x0A00000D, "IO:DataFileRead"),
        (0x0A000043, "IO:WALWrite"),
        (0x01000008, "LWLock:WALWrite"), (0x0100002F, "LWLock:NotifyQueueTail"),
        (0x01000030, "LWLock:XactBuffer"), (0x01000048, "LWLock:PerXactPredicateList"),
        (0x01000049, "LWLock:extension"),
        (0x03000005, "Lock:transactionid"),
    ],
    "14.13": [
        (0x05000000, "Activity:ArchiverMain"), (0x0500000C, "Activity:WalWriterMain"),
        (0x06000000, "Client:ClientRead"), (0x06000007, "Client:WalSenderWriteData"),
        (0x08000000, "IPC:AppendReady"), (0x08000017, "IPC:HashGrowBucketsElect"),
        (0x08000022, "IPC:ProcArrayGroupUpdate"), (0x0800002E, "IPC:XactGroupUpdate"),
        (0x09000000, "Timeout:BaseBackupThrottle"), (0x09000006, "Timeout:RegisterSyncRequest"),
        (0x0A000000, "IO:BaseBackupRead"), (0x0A00000F, "IO:DataFileRead"),
        (0x0A000045, "IO:WALWrite"), (0x0A000049, "IO:LogicalSubxactWrite"),  # appended in 14.x
        (0x01000008, "LWLock:WALWrite"), (0x0100002F, "LWLock:NotifyQueueTail"),
        (0x01000030, "LWLock:XactBuffer"), (0x01000047, "LWLock:PerXactPredicateList"),
        (0x01000048, "LWLock:extension"),
    ],
    "15.18": [
        (0x05000000, "Activity:ArchiverMain"), (0x0500000B, "Activity:WalWriterMain"),
        (0x06000000, "Client:ClientRead"), (0x06000007, "Client:WalSenderWriteData"),
        (0x08000000, "IPC:AppendReady"), (0x08000019, "IPC:HashGrowBucketsElect"),
        (0x08000024, "IPC:ProcArrayGroupUpdate"), (0x08000032, "IPC:XactGroupUpdate"),
        (0x09000000, "Timeout:BaseBackupThrottle"), (0x09000007, "Timeout:VacuumTruncate"),
        (0x0A000000, "IO:BaseBackupRead"), (0x0A000011, "IO:DataFileRead"),
        (0x0A000048, "IO:WALWrite"), (0x0A000049, "IO:VersionFileSync"),  # appended in 15.x
        (0x01000008, "LWLock:WALWrite"), (0x0100002F, "LWLock:NotifyQueueTail"),
        (0x01000030, "LWLock:XactBuffer"), (0x0100004A, "LWLock:PgStatsData"),
        (0x0100004B, "LWLock:extension"),
    ],
    "16.4": [
        (0x05000000, "Activity:ArchiverMain"), (0x0500000C, "Activity:WalWriterMain"),
        (0x06000000, "Client:ClientRead"), (0x06000007, "Client:WalSenderWriteData"),
        (0x08000000, "IPC:AppendReady"), (0x0800001A, "IPC:HashGrowBucketsReinsert"),
        (0x08000026, "IPC:ProcArrayGroupUpdate"), (0x08000034, "IPC:XactGroupUpdate"),
        (0x09000000, "Timeout:BaseBackupThrottle"), (0x09000008, "Timeout:VacuumTruncate"),
        (0x0A000000, "IO:BaseBackupRead"), (0x0A000011, "IO:DataFileRead"),
        (0x0A000025, "IO:RelationMapReplace"), (0x0A000049, "IO:WALWrite"),
        (0x0A00004A, "IO:VersionFileSync"),
        (0x01000008, "LWLock:WALWrite"), (0x01000030, "LWLock:XactBuffer"),
        (0x0100004C, "LWLock:LogicalRepLauncherHash"), (0x0100004D, "LWLock:extension"),
        (0x0300000B, "Lock:applytransaction"),
    ],
    "17.2": [
        (0x05000000, "Activity:ArchiverMain"), (0x05000008, "Activity:RecoveryWalStream"),
        (0x0500000F, "Activity:WalWriterMain"),
        (0x06000000, "Client:ClientRead"), (0x06000004, "Client:LibpqwalreceiverReceive"),
        (0x06000008, "Client:WalSenderWriteData"),
        (0x08000000, "IPC:AppendReady"), (0x0800001C, "IPC:HashGrowBucketsReinsert"),
        (0x08000038, "IPC:XactGroupUpdate"),
        (0x09000000, "Timeout:BaseBackupThrottle"), (0x09000009, "Timeout:WalSummarizerError"),
        (0x0A000000, "IO:BasebackupRead"), (0x0A000011, "IO:DataFileRead"),
        (0x0A000026, "IO:RelationMapWrite"), (0x0A00004C, "IO:WalWrite"),
        (0x01000008, "LWLock:WALWrite"), (0x01000034, "LWLock:SerialControl"),
        (0x01000035, "LWLock:XactBuffer"), (0x0100005B, "LWLock:ParallelVacuumDSA"),
        (0x0100005C, "LWLock:extension"),
    ],
    "18.1": [
        (0x05000000, "Activity:ArchiverMain"), (0x05000009, "Activity:LogicalParallelApplyMain"),
        (0x05000011, "Activity:WalWriterMain"),
        (0x06000000, "Client:ClientRead"), (0x06000008, "Client:WalSenderWriteData"),
        (0x08000000, "IPC:AppendReady"), (0x08000038, "IPC:XactGroupUpdate"),
        (0x09000000, "Timeout:BaseBackupThrottle"), (0x09000009, "Timeout:WalSummarizerError"),
        (0x0A000000, "IO:AioIoCompletion"), (0x0A000015, "IO:DataFileRead"),
        (0x0A000028, "IO:RelationMapRead"), (0x0A000050, "IO:WalWrite"),
        (0x01000008, "LWLock:WALWrite"), (0x01000035, "LWLock:AioWorkerSubmissionQueue"),
        (0x01000036, "LWLock:XactBuffer"), (0x0100005E, "LWLock:AioUringCompletion"),
        (0x0100005F, "LWLock:extension"),
    ],
}


@pytest.mark.parametrize("version, info, name", [
    (version, info, name) for version, checks in SPOT_CHECKS.items() for info, name in checks])
def test_each_version_names_its_events_at_their_numbers(version: str, info: int, name: str) -> None:
    assert wait_events.event_name(info, version) == name
    assert engine_for("postgresql").wait_event_name(info, version) == name


def test_every_major_from_12_to_18_has_its_names_and_no_other() -> None:
    assert sorted(wait_event_names.BY_MAJOR) == list(range(12, 19))


@pytest.mark.parametrize("version", ["11.22", "9.6.24", "19.0", "19beta1", None, "not a version"])
def test_a_version_without_names_shows_the_class_and_the_number(version: str | None) -> None:
    assert wait_events.event_name(0x0A000011, version) == "IO:17"
    assert wait_events.event_name(0x01000008, version) == "LWLock:8"


def test_an_event_past_the_end_of_its_list_shows_its_number() -> None:
    # A later minor release may append an event; it stays a number rather than a wrong name.
    assert wait_events.event_name(0x0A00004A, "15.18") == "IO:74"
    assert wait_events.event_name(0x0900000A, "18.1") == "Timeout:10"


# Counted in each release's sources: the enum of each class, the individual LWLocks (the
# highest id plus one) and the built-in tranches (BuiltinTrancheIds).
LENGTHS = {
    12: (14, 9, 37, 3, 68, 45, 25),
    13: (13, 9, 42, 5, 68, 48, 25),
    14: (13, 8, 47, 7, 74, 48, 24),
    15: (12, 8, 51, 8, 74, 48, 27),
    16: (13, 8, 53, 9, 75, 48, 29),
    17: (16, 9, 57, 10, 77, 53, 39),
    18: (18, 9, 57, 10, 81, 54, 41),
}


@pytest.mark.parametrize("major", sorted(LENGTHS))
def test_every_list_has_its_enum_length_and_no_name_twice(major: int) -> None:
    names = wait_event_names.BY_MAJOR[major]
    lists = (names.activity, names.client, names.ipc, names.timeout, names.io,
             names.individual_lwlocks, names.builtin_tranches)
    assert tuple(len(each) for each in lists) == LENGTHS[major]
    for each in lists:
        assert len(set(each)) == len(each)


# The PostgreSQL 15 lists dbprobe had before it named the other versions, by a digest of each.
FIFTEEN_BEFORE = {
    LWLOCK: "26446d115ecde176", ACTIVITY: "7376e85d1772045c", CLIENT: "35e7e8fe0e3f22c3",
    IPC: "254c5f7b6dd5dda3", TIMEOUT: "d5c8f7d7c4926e15", IO: "0a2a590ffa1a3867",
}


def test_the_postgresql_15_lists_are_the_ones_dbprobe_had() -> None:
    tables = wait_events.tables_of_major(15)
    digests = {klass: hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
               for klass, names in tables.items()}
    assert digests == FIFTEEN_BEFORE
