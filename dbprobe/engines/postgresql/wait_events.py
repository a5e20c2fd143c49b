"""PostgreSQL's wait events: the 32-bit ``wait_event_info`` word a backend sets while it waits.

The top byte is the class (``PG_WAIT_*`` in utils/wait_event.h), the low 16 bits the event:
an enum of each class for most, the lock tag type for Lock, the tranche id for LWLock. The
names are what ``pg_stat_activity.wait_event`` shows, per server version; the tables here
are PostgreSQL 15's, and a version without a table is decoded by class with the event's
number (``IO:17``).
"""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

from dbprobe.engines.postgresql import locks

CLASS_MASK = 0xFF000000
EVENT_MASK = 0x0000FFFF

LWLOCK = 0x01
LOCK = 0x03
BUFFER_PIN = 0x04
ACTIVITY = 0x05
CLIENT = 0x06
EXTENSION = 0x07
IPC = 0x08
TIMEOUT = 0x09
IO = 0x0A
INJECTION_POINT = 0x0B  # 17 and later

CLASS_NAMES = {
    LWLOCK: "LWLock", LOCK: "Lock", BUFFER_PIN: "BufferPin", ACTIVITY: "Activity",
    CLIENT: "Client", EXTENSION: "Extension", IPC: "IPC", TIMEOUT: "Timeout", IO: "IO",
    INJECTION_POINT: "InjectionPoint",
}

# Where dbprobe puts a class's off-CPU time in a statement's breakdown; the rest is "other".
BREAKDOWN_CLASS = {IO: "io", LOCK: "lock", LWLOCK: "lwlock", CLIENT: "client"}

_ACTIVITY_15 = (
    "ArchiverMain", "AutoVacuumMain", "BgWriterHibernate", "BgWriterMain", "CheckpointerMain",
    "LogicalApplyMain", "LogicalLauncherMain", "RecoveryWalStream", "SysLoggerMain",
    "WalReceiverMain", "WalSenderMain", "WalWriterMain",
)
_CLIENT_15 = (
    "ClientRead", "ClientWrite", "GSSOpenServer", "LibPQWalReceiverConnect",
    "LibPQWalReceiverReceive", "SSLOpenServer", "WalSenderWaitForWAL", "WalSenderWriteData",
)
_IPC_15 = (
    "AppendReady", "ArchiveCleanupCommand", "ArchiveCommand", "BackendTermination",
    "BackupWaitWalArchive", "BgWorkerShutdown", "BgWorkerStartup", "BtreePage", "BufferIO",
    "CheckpointDone", "CheckpointStart", "ExecuteGather", "HashBatchAllocate", "HashBatchElect",
    "HashBatchLoad", "HashBuildAllocate", "HashBuildElect", "HashBuildHashInner",
    "HashBuildHashOuter", "HashGrowBatchesAllocate", "HashGrowBatchesDecide",
    "HashGrowBatchesElect", "HashGrowBatchesFinish", "HashGrowBatchesRepartition",
    "HashGrowBucketsAllocate", "HashGrowBucketsElect", "HashGrowBucketsReinsert",
    "LogicalSyncData", "LogicalSyncStateChange", "MessageQueueInternal",
    "MessageQueuePutMessage", "MessageQueueReceive", "MessageQueueSend", "ParallelBitmapScan",
    "ParallelCreateIndexScan", "ParallelFinish", "ProcArrayGroupUpdate", "ProcSignalBarrier",
    "Promote", "RecoveryConflictSnapshot", "RecoveryConflictTablespace", "RecoveryEndCommand",
    "RecoveryPause", "ReplicationOriginDrop", "ReplicationSlotDrop", "RestoreCommand",
    "SafeSnapshot", "SyncRep", "WalReceiverExit", "WalReceiverWaitStart", "XactGroupUpdate",
)
_TIMEOUT_15 = (
    "BaseBackupThrottle", "CheckpointWriteDelay", "PgSleep", "RecoveryApplyDelay",
    "RecoveryRetrieveRetryInterval", "RegisterSyncRequest", "VacuumDelay", "VacuumTruncate",
)
_IO_15 = (
    "BaseBackupRead", "BaseBackupSync", "BaseBackupWrite", "BufFileRead", "BufFileWrite",
    "BufFileTruncate", "ControlFileRead", "ControlFileSync", "ControlFileSyncUpdate",
    "ControlFileWrite", "ControlFileWriteUpdate", "CopyFileRead", "CopyFileWrite",
    "DataFileExtend", "DataFileFlush", "DataFileImmediateSync", "DataFilePrefetch",
    "DataFileRead", "DataFileSync", "DataFileTruncate", "DataFileWrite", "DSMFillZeroWrite",
    "LockFileAddToDataDirRead", "LockFileAddToDataDirSync", "LockFileAddToDataDirWrite",
    "LockFileCreateRead", "LockFileCreateSync", "LockFileCreateWrite",
    "LockFileReCheckDataDirRead", "LogicalRewriteCheckpointSync", "LogicalRewriteMappingSync",
    "LogicalRewriteMappingWrite", "LogicalRewriteSync", "LogicalRewriteTruncate",
    "LogicalRewriteWrite", "RelationMapRead", "RelationMapSync", "RelationMapWrite",
    "ReorderBufferRead", "ReorderBufferWrite", "ReorderLogicalMappingRead",
    "ReplicationSlotRead", "ReplicationSlotRestoreSync", "ReplicationSlotSync",
    "ReplicationSlotWrite", "SLRUFlushSync", "SLRURead", "SLRUSync", "SLRUWrite",
    "SnapbuildRead", "SnapbuildSync", "SnapbuildWrite", "TimelineHistoryFileSync",
    "TimelineHistoryFileWrite", "TimelineHistoryRead", "TimelineHistorySync",
    "TimelineHistoryWrite", "TwophaseFileRead", "TwophaseFileSync", "TwophaseFileWrite",
    "VersionFileWrite", "WALSenderTimelineHistoryRead", "WALBootstrapSync", "WALBootstrapWrite",
    "WALCopyRead", "WALCopySync", "WALCopyWrite", "WALInitSync", "WALInitWrite", "WALRead",
    "WALSync", "WALSyncMethodAssign", "WALWrite", "VersionFileSync",
)

# LWLocks: the individual locks of lwlocknames.txt (named without their "Lock" suffix),
# then the built-in tranches; tranche ids from LWTRANCHE_FIRST_USER_DEFINED are extensions'.
_LWLOCK_INDIVIDUAL_15 = (
    "<unassigned:0>", "ShmemIndex", "OidGen", "XidGen", "ProcArray", "SInvalRead",
    "SInvalWrite", "WALBufMapping", "WALWrite", "ControlFile", "<unassigned:10>", "XactSLRU",
    "SubtransSLRU", "MultiXactGen", "MultiXactOffsetSLRU", "MultiXactMemberSLRU",
    "RelCacheInit", "CheckpointerComm", "TwoPhaseState", "TablespaceCreate", "BtreeVacuum",
    "AddinShmemInit", "Autovacuum", "AutovacuumSchedule", "SyncScan", "RelationMapping",
    "NotifySLRU", "NotifyQueue", "SerializableXactHash", "SerializableFinishedList",
    "SerializablePredicateList", "SerialSLRU", "SyncRep", "BackgroundWorker",
    "DynamicSharedMemoryControl", "AutoFile", "ReplicationSlotAllocation",
    "ReplicationSlotControl", "CommitTsSLRU", "CommitTs", "ReplicationOrigin",
    "MultiXactTruncation", "OldSnapshotTimeMap", "LogicalRepWorker", "XactTruncation",
    "<unassigned:45>", "WrapLimitsVacuum", "NotifyQueueTail",
)
_LWLOCK_TRANCHES_15 = (
    "XactBuffer", "CommitTsBuffer", "SubtransBuffer", "MultiXactOffsetBuffer",
    "MultiXactMemberBuffer", "NotifyBuffer", "SerialBuffer", "WALInsert", "BufferContent",
    "ReplicationOriginState", "ReplicationSlotIO", "LockFastPath", "BufferMapping",
    "LockManager", "PredicateLockManager", "ParallelHashJoin", "ParallelQueryDSA",
    "PerSessionDSA", "PerSessionRecordType", "PerSessionRecordTypmod", "SharedTupleStore",
    "SharedTidBitmap", "ParallelAppend", "PerXactPredicateList", "PgStatsDSA", "PgStatsHash",
    "PgStatsData",
)

_TABLES_15 = {
    ACTIVITY: _ACTIVITY_15, CLIENT: _CLIENT_15, IPC: _IPC_15, TIMEOUT: _TIMEOUT_15, IO: _IO_15,
    LWLOCK: _LWLOCK_INDIVIDUAL_15 + _LWLOCK_TRANCHES_15,
}


def _tables(version: str | None) -> dict[int, tuple[str, ...]] | None:
    try:
        parsed = Version(version) if version else None
    except InvalidVersion:
        return None
    if parsed is not None and parsed.major == 15:
        return _TABLES_15
    return None


def class_of(info: int) -> int:
    return (info & CLASS_MASK) >> 24


def event_name(info: int, version: str | None) -> str:
    """``Class:Event`` as pg_stat_activity shows it, e.g. ``IO:DataFileRead``."""
    klass = class_of(info)
    event = info & EVENT_MASK
    class_name = CLASS_NAMES.get(klass, f"class {klass:#04x}")
    return f"{class_name}:{_event(klass, event, version)}"


def _event(klass: int, event: int, version: str | None) -> str:
    if klass == LOCK:
        types = locks.tag_types(version)
        return types[event] if event < len(types) else str(event)
    if klass == BUFFER_PIN:
        return "BufferPin"
    if klass == EXTENSION:
        return "Extension"
    tables = _tables(version)
    names = tables.get(klass) if tables else None
    if klass == LWLOCK and names and event >= len(names):
        return "extension"
    if names and event < len(names):
        return names[event]
    return str(event)


def breakdown_class(info: int) -> str:
    """io, lock, lwlock, client or other: where a wait's time goes in a statement's breakdown."""
    return BREAKDOWN_CLASS.get(class_of(info), "other")
