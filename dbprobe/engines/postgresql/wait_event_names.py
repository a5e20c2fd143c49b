"""The names PostgreSQL gives its wait events, by major version, in the order of its enums.

The event number of a wait is the position of its name in its class's tuple: the C enum of
the class counts from the class's base. An LWLock's event is its tranche id: the individual
LWLocks by their fixed ids (a retired id is "<unassigned:N>"), then the built-in tranches.
Each version's names are transcribed from one release's sources, named below; a later minor
release may append an event to the end of a class, never insert one, so what it appends
stays unnamed here and earlier numbers keep their names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WaitEventNames:
    """One major version's names, each tuple indexed by event number."""

    activity: tuple[str, ...]
    client: tuple[str, ...]
    ipc: tuple[str, ...]
    timeout: tuple[str, ...]
    io: tuple[str, ...]
    individual_lwlocks: tuple[str, ...]  # LWLock ids 0 .. NUM_INDIVIDUAL_LWLOCKS - 1
    builtin_tranches: tuple[str, ...]  # from NUM_INDIVIDUAL_LWLOCKS on

    @property
    def lwlocks(self) -> tuple[str, ...]:
        """Every tranche id below LWTRANCHE_FIRST_USER_DEFINED; the ids above are extensions'."""
        return self.individual_lwlocks + self.builtin_tranches


# PostgreSQL 12, from 12.3's sources: the enums of pgstat.h, named in postmaster/pgstat.c;
# lwlocknames.txt; the tranches named where start-up registers them. Individual LWLocks keep
# their "Lock" suffix and the tranches have lower-case names.
PG12 = WaitEventNames(
    activity=(
        "ArchiverMain", "AutoVacuumMain", "BgWriterHibernate", "BgWriterMain", "CheckpointerMain",
        "LogicalApplyMain", "LogicalLauncherMain", "PgStatMain", "RecoveryWalAll",
        "RecoveryWalStream", "SysLoggerMain", "WalReceiverMain", "WalSenderMain", "WalWriterMain",
    ),
    client=(
        "ClientRead", "ClientWrite", "LibPQWalReceiverConnect", "LibPQWalReceiverReceive",
        "SSLOpenServer", "WalReceiverWaitStart", "WalSenderWaitForWAL", "WalSenderWriteData",
        "GSSOpenServer",
    ),
    ipc=(
        "BgWorkerShutdown", "BgWorkerStartup", "BtreePage", "ClogGroupUpdate", "CheckpointDone",
        "CheckpointStart", "ExecuteGather", "Hash/Batch/Allocating", "Hash/Batch/Electing",
        "Hash/Batch/Loading", "Hash/Build/Allocating", "Hash/Build/Electing",
        "Hash/Build/HashingInner", "Hash/Build/HashingOuter", "Hash/GrowBatches/Allocating",
        "Hash/GrowBatches/Deciding", "Hash/GrowBatches/Electing", "Hash/GrowBatches/Finishing",
        "Hash/GrowBatches/Repartitioning", "Hash/GrowBuckets/Allocating",
        "Hash/GrowBuckets/Electing", "Hash/GrowBuckets/Reinserting", "LogicalSyncData",
        "LogicalSyncStateChange", "MessageQueueInternal", "MessageQueuePutMessage",
        "MessageQueueReceive", "MessageQueueSend", "ParallelBitmapScan", "ParallelCreateIndexScan",
        "ParallelFinish", "ProcArrayGroupUpdate", "Promote", "ReplicationOriginDrop",
        "ReplicationSlotDrop", "SafeSnapshot", "SyncRep",
    ),
    timeout=(
        "BaseBackupThrottle", "PgSleep", "RecoveryApplyDelay",
    ),
    io=(
        "BufFileRead", "BufFileWrite", "ControlFileRead", "ControlFileSync",
        "ControlFileSyncUpdate", "ControlFileWrite", "ControlFileWriteUpdate", "CopyFileRead",
        "CopyFileWrite", "DataFileExtend", "DataFileFlush", "DataFileImmediateSync",
        "DataFilePrefetch", "DataFileRead", "DataFileSync", "DataFileTruncate", "DataFileWrite",
        "DSMFillZeroWrite", "LockFileAddToDataDirRead", "LockFileAddToDataDirSync",
        "LockFileAddToDataDirWrite", "LockFileCreateRead", "LockFileCreateSync",
        "LockFileCreateWrite", "LockFileReCheckDataDirRead", "LogicalRewriteCheckpointSync",
        "LogicalRewriteMappingSync", "LogicalRewriteMappingWrite", "LogicalRewriteSync",
        "LogicalRewriteTruncate", "LogicalRewriteWrite", "RelationMapRead", "RelationMapSync",
        "RelationMapWrite", "ReorderBufferRead", "ReorderBufferWrite", "ReorderLogicalMappingRead",
        "ReplicationSlotRead", "ReplicationSlotRestoreSync", "ReplicationSlotSync",
        "ReplicationSlotWrite", "SLRUFlushSync", "SLRURead", "SLRUSync", "SLRUWrite",
        "SnapbuildRead", "SnapbuildSync", "SnapbuildWrite", "TimelineHistoryFileSync",
        "TimelineHistoryFileWrite", "TimelineHistoryRead", "TimelineHistorySync",
        "TimelineHistoryWrite", "TwophaseFileRead", "TwophaseFileSync", "TwophaseFileWrite",
        "WALSenderTimelineHistoryRead", "WALBootstrapSync", "WALBootstrapWrite", "WALCopyRead",
        "WALCopySync", "WALCopyWrite", "WALInitSync", "WALInitWrite", "WALRead", "WALSync",
        "WALSyncMethodAssign", "WALWrite",
    ),
    individual_lwlocks=(
        "<unassigned:0>", "ShmemIndexLock", "OidGenLock", "XidGenLock", "ProcArrayLock",
        "SInvalReadLock", "SInvalWriteLock", "WALBufMappingLock", "WALWriteLock",
        "ControlFileLock", "CheckpointLock", "CLogControlLock", "SubtransControlLock",
        "MultiXactGenLock", "MultiXactOffsetControlLock", "MultiXactMemberControlLock",
        "RelCacheInitLock", "CheckpointerCommLock", "TwoPhaseStateLock", "TablespaceCreateLock",
        "BtreeVacuumLock", "AddinShmemInitLock", "AutovacuumLock", "AutovacuumScheduleLock",
        "SyncScanLock", "RelationMappingLock", "AsyncCtlLock", "AsyncQueueLock",
        "SerializableXactHashLock", "SerializableFinishedListLock",
        "SerializablePredicateLockListLock", "OldSerXidLock", "SyncRepLock",
        "BackgroundWorkerLock", "DynamicSharedMemoryControlLock", "AutoFileLock",
        "ReplicationSlotAllocationLock", "ReplicationSlotControlLock", "CommitTsControlLock",
        "CommitTsLock", "ReplicationOriginLock", "MultiXactTruncationLock",
        "OldSnapshotTimeMapLock", "LogicalRepWorkerLock", "CLogTruncationLock",
    ),
    builtin_tranches=(
        "clog", "commit_timestamp", "subtrans", "multixact_offset", "multixact_member", "async",
        "oldserxid", "wal_insert", "buffer_content", "buffer_io", "replication_origin",
        "replication_slot_io", "proc", "buffer_mapping", "lock_manager", "predicate_lock_manager",
        "parallel_hash_join", "parallel_query_dsa", "session_dsa", "session_record_table",
        "session_typmod_table", "shared_tuplestore", "tbm", "parallel_append", "serializable_xact",
    ),
)

# PostgreSQL 13, from 13.1's sources: the enums of pgstat.h, named in postmaster/pgstat.c;
# lwlocknames.txt, whose names lose their "Lock" suffix; lwlock.c's BuiltinTrancheNames.
PG13 = WaitEventNames(
    activity=(
        "ArchiverMain", "AutoVacuumMain", "BgWriterHibernate", "BgWriterMain", "CheckpointerMain",
        "LogicalApplyMain", "LogicalLauncherMain", "PgStatMain", "RecoveryWalStream",
        "SysLoggerMain", "WalReceiverMain", "WalSenderMain", "WalWriterMain",
    ),
    client=(
        "ClientRead", "ClientWrite", "GSSOpenServer", "LibPQWalReceiverConnect",
        "LibPQWalReceiverReceive", "SSLOpenServer", "WalReceiverWaitStart", "WalSenderWaitForWAL",
        "WalSenderWriteData",
    ),
    ipc=(
        "BackupWaitWalArchive", "BgWorkerShutdown", "BgWorkerStartup", "BtreePage",
        "CheckpointDone", "CheckpointStart", "ExecuteGather", "HashBatchAllocate",
        "HashBatchElect", "HashBatchLoad", "HashBuildAllocate", "HashBuildElect",
        "HashBuildHashInner", "HashBuildHashOuter", "HashGrowBatchesAllocate",
        "HashGrowBatchesDecide", "HashGrowBatchesElect", "HashGrowBatchesFinish",
        "HashGrowBatchesRepartition", "HashGrowBucketsAllocate", "HashGrowBucketsElect",
        "HashGrowBucketsReinsert", "LogicalSyncData", "LogicalSyncStateChange",
        "MessageQueueInternal", "MessageQueuePutMessage", "MessageQueueReceive",
        "MessageQueueSend", "ParallelBitmapScan", "ParallelCreateIndexScan", "ParallelFinish",
        "ProcArrayGroupUpdate", "ProcSignalBarrier", "Promote", "RecoveryConflictSnapshot",
        "RecoveryConflictTablespace", "RecoveryPause", "ReplicationOriginDrop",
        "ReplicationSlotDrop", "SafeSnapshot", "SyncRep", "XactGroupUpdate",
    ),
    timeout=(
        "BaseBackupThrottle", "PgSleep", "RecoveryApplyDelay", "RecoveryRetrieveRetryInterval",
        "VacuumDelay",
    ),
    io=PG12.io,
    individual_lwlocks=(
        "<unassigned:0>", "ShmemIndex", "OidGen", "XidGen", "ProcArray", "SInvalRead",
        "SInvalWrite", "WALBufMapping", "WALWrite", "ControlFile", "Checkpoint", "XactSLRU",
        "SubtransSLRU", "MultiXactGen", "MultiXactOffsetSLRU", "MultiXactMemberSLRU",
        "RelCacheInit", "CheckpointerComm", "TwoPhaseState", "TablespaceCreate", "BtreeVacuum",
        "AddinShmemInit", "Autovacuum", "AutovacuumSchedule", "SyncScan", "RelationMapping",
        "NotifySLRU", "NotifyQueue", "SerializableXactHash", "SerializableFinishedList",
        "SerializablePredicateList", "SerialSLRU", "SyncRep", "BackgroundWorker",
        "DynamicSharedMemoryControl", "AutoFile", "ReplicationSlotAllocation",
        "ReplicationSlotControl", "CommitTsSLRU", "CommitTs", "ReplicationOrigin",
        "MultiXactTruncation", "OldSnapshotTimeMap", "LogicalRepWorker", "XactTruncation",
        "<unassigned:45>", "WrapLimitsVacuum", "NotifyQueueTail",
    ),
    builtin_tranches=(
        "XactBuffer", "CommitTSBuffer", "SubtransBuffer", "MultiXactOffsetBuffer",
        "MultiXactMemberBuffer", "NotifyBuffer", "SerialBuffer", "WALInsert", "BufferContent",
        "BufferIO", "ReplicationOriginState", "ReplicationSlotIO", "LockFastPath", "BufferMapping",
        "LockManager", "PredicateLockManager", "ParallelHashJoin", "ParallelQueryDSA",
        "PerSessionDSA", "PerSessionRecordType", "PerSessionRecordTypmod", "SharedTupleStore",
        "SharedTidBitmap", "ParallelAppend", "PerXactPredicateList",
    ),
)

# PostgreSQL 14, from 14.13's sources: utils/wait_event.h, named in
# utils/activity/wait_event.c; lwlocknames.txt; lwlock.c's BuiltinTrancheNames.
PG14 = WaitEventNames(
    activity=PG13.activity,
    client=(
        "ClientRead", "ClientWrite", "GSSOpenServer", "LibPQWalReceiverConnect",
        "LibPQWalReceiverReceive", "SSLOpenServer", "WalSenderWaitForWAL", "WalSenderWriteData",
    ),
    ipc=(
        "AppendReady", "BackendTermination", "BackupWaitWalArchive", "BgWorkerShutdown",
        "BgWorkerStartup", "BtreePage", "BufferIO", "CheckpointDone", "CheckpointStart",
        "ExecuteGather", "HashBatchAllocate", "HashBatchElect", "HashBatchLoad",
        "HashBuildAllocate", "HashBuildElect", "HashBuildHashInner", "HashBuildHashOuter",
        "HashGrowBatchesAllocate", "HashGrowBatchesDecide", "HashGrowBatchesElect",
        "HashGrowBatchesFinish", "HashGrowBatchesRepartition", "HashGrowBucketsAllocate",
        "HashGrowBucketsElect", "HashGrowBucketsReinsert", "LogicalSyncData",
        "LogicalSyncStateChange", "MessageQueueInternal", "MessageQueuePutMessage",
        "MessageQueueReceive", "MessageQueueSend", "ParallelBitmapScan", "ParallelCreateIndexScan",
        "ParallelFinish", "ProcArrayGroupUpdate", "ProcSignalBarrier", "Promote",
        "RecoveryConflictSnapshot", "RecoveryConflictTablespace", "RecoveryPause",
        "ReplicationOriginDrop", "ReplicationSlotDrop", "SafeSnapshot", "SyncRep",
        "WalReceiverExit", "WalReceiverWaitStart", "XactGroupUpdate",
    ),
    timeout=(
        "BaseBackupThrottle", "PgSleep", "RecoveryApplyDelay", "RecoveryRetrieveRetryInterval",
        "VacuumDelay", "CheckpointWriteDelay", "RegisterSyncRequest",
    ),
    io=(
        "BaseBackupRead", "BufFileRead", "BufFileWrite", "BufFileTruncate", "ControlFileRead",
        "ControlFileSync", "ControlFileSyncUpdate", "ControlFileWrite", "ControlFileWriteUpdate",
        "CopyFileRead", "CopyFileWrite", "DataFileExtend", "DataFileFlush",
        "DataFileImmediateSync", "DataFilePrefetch", "DataFileRead", "DataFileSync",
        "DataFileTruncate", "DataFileWrite", "DSMFillZeroWrite", "LockFileAddToDataDirRead",
        "LockFileAddToDataDirSync", "LockFileAddToDataDirWrite", "LockFileCreateRead",
        "LockFileCreateSync", "LockFileCreateWrite", "LockFileReCheckDataDirRead",
        "LogicalRewriteCheckpointSync", "LogicalRewriteMappingSync", "LogicalRewriteMappingWrite",
        "LogicalRewriteSync", "LogicalRewriteTruncate", "LogicalRewriteWrite", "RelationMapRead",
        "RelationMapSync", "RelationMapWrite", "ReorderBufferRead", "ReorderBufferWrite",
        "ReorderLogicalMappingRead", "ReplicationSlotRead", "ReplicationSlotRestoreSync",
        "ReplicationSlotSync", "ReplicationSlotWrite", "SLRUFlushSync", "SLRURead", "SLRUSync",
        "SLRUWrite", "SnapbuildRead", "SnapbuildSync", "SnapbuildWrite", "TimelineHistoryFileSync",
        "TimelineHistoryFileWrite", "TimelineHistoryRead", "TimelineHistorySync",
        "TimelineHistoryWrite", "TwophaseFileRead", "TwophaseFileSync", "TwophaseFileWrite",
        "WALSenderTimelineHistoryRead", "WALBootstrapSync", "WALBootstrapWrite", "WALCopyRead",
        "WALCopySync", "WALCopyWrite", "WALInitSync", "WALInitWrite", "WALRead", "WALSync",
        "WALSyncMethodAssign", "WALWrite", "LogicalChangesRead", "LogicalChangesWrite",
        "LogicalSubxactRead", "LogicalSubxactWrite",
    ),
    individual_lwlocks=(
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
    ),
    builtin_tranches=(
        "XactBuffer", "CommitTsBuffer", "SubtransBuffer", "MultiXactOffsetBuffer",
        "MultiXactMemberBuffer", "NotifyBuffer", "SerialBuffer", "WALInsert", "BufferContent",
        "ReplicationOriginState", "ReplicationSlotIO", "LockFastPath", "BufferMapping",
        "LockManager", "PredicateLockManager", "ParallelHashJoin", "ParallelQueryDSA",
        "PerSessionDSA", "PerSessionRecordType", "PerSessionRecordTypmod", "SharedTupleStore",
        "SharedTidBitmap", "ParallelAppend", "PerXactPredicateList",
    ),
)

# PostgreSQL 15, from 15.15's sources (wait_event.h as 15.18 installs it): utils/wait_event.h,
# named in utils/activity/wait_event.c; lwlocknames.txt; lwlock.c's BuiltinTrancheNames.
PG15 = WaitEventNames(
    activity=(
        "ArchiverMain", "AutoVacuumMain", "BgWriterHibernate", "BgWriterMain", "CheckpointerMain",
        "LogicalApplyMain", "LogicalLauncherMain", "RecoveryWalStream", "SysLoggerMain",
        "WalReceiverMain", "WalSenderMain", "WalWriterMain",
    ),
    client=PG14.client,
    ipc=(
        "AppendReady", "ArchiveCleanupCommand", "ArchiveCommand", "BackendTermination",
        "BackupWaitWalArchive", "BgWorkerShutdown", "BgWorkerStartup", "BtreePage", "BufferIO",
        "CheckpointDone", "CheckpointStart", "ExecuteGather", "HashBatchAllocate",
        "HashBatchElect", "HashBatchLoad", "HashBuildAllocate", "HashBuildElect",
        "HashBuildHashInner", "HashBuildHashOuter", "HashGrowBatchesAllocate",
        "HashGrowBatchesDecide", "HashGrowBatchesElect", "HashGrowBatchesFinish",
        "HashGrowBatchesRepartition", "HashGrowBucketsAllocate", "HashGrowBucketsElect",
        "HashGrowBucketsReinsert", "LogicalSyncData", "LogicalSyncStateChange",
        "MessageQueueInternal", "MessageQueuePutMessage", "MessageQueueReceive",
        "MessageQueueSend", "ParallelBitmapScan", "ParallelCreateIndexScan", "ParallelFinish",
        "ProcArrayGroupUpdate", "ProcSignalBarrier", "Promote", "RecoveryConflictSnapshot",
        "RecoveryConflictTablespace", "RecoveryEndCommand", "RecoveryPause",
        "ReplicationOriginDrop", "ReplicationSlotDrop", "RestoreCommand", "SafeSnapshot",
        "SyncRep", "WalReceiverExit", "WalReceiverWaitStart", "XactGroupUpdate",
    ),
    timeout=(
        "BaseBackupThrottle", "CheckpointWriteDelay", "PgSleep", "RecoveryApplyDelay",
        "RecoveryRetrieveRetryInterval", "RegisterSyncRequest", "VacuumDelay", "VacuumTruncate",
    ),
    io=(
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
        "VersionFileWrite", "WALSenderTimelineHistoryRead", "WALBootstrapSync",
        "WALBootstrapWrite", "WALCopyRead", "WALCopySync", "WALCopyWrite", "WALInitSync",
        "WALInitWrite", "WALRead", "WALSync", "WALSyncMethodAssign", "WALWrite", "VersionFileSync",
    ),
    individual_lwlocks=PG14.individual_lwlocks,
    builtin_tranches=(
        "XactBuffer", "CommitTsBuffer", "SubtransBuffer", "MultiXactOffsetBuffer",
        "MultiXactMemberBuffer", "NotifyBuffer", "SerialBuffer", "WALInsert", "BufferContent",
        "ReplicationOriginState", "ReplicationSlotIO", "LockFastPath", "BufferMapping",
        "LockManager", "PredicateLockManager", "ParallelHashJoin", "ParallelQueryDSA",
        "PerSessionDSA", "PerSessionRecordType", "PerSessionRecordTypmod", "SharedTupleStore",
        "SharedTidBitmap", "ParallelAppend", "PerXactPredicateList", "PgStatsDSA", "PgStatsHash",
        "PgStatsData",
    ),
)

# PostgreSQL 16, from 16.2's sources: utils/wait_event.h, named in
# utils/activity/wait_event.c; lwlocknames.txt; lwlock.c's BuiltinTrancheNames.
PG16 = WaitEventNames(
    activity=(
        "ArchiverMain", "AutoVacuumMain", "BgWriterHibernate", "BgWriterMain", "CheckpointerMain",
        "LogicalApplyMain", "LogicalLauncherMain", "LogicalParallelApplyMain", "RecoveryWalStream",
        "SysLoggerMain", "WalReceiverMain", "WalSenderMain", "WalWriterMain",
    ),
    client=PG14.client,
    ipc=(
        "AppendReady", "ArchiveCleanupCommand", "ArchiveCommand", "BackendTermination",
        "BackupWaitWalArchive", "BgWorkerShutdown", "BgWorkerStartup", "BtreePage", "BufferIO",
        "CheckpointDone", "CheckpointStart", "ExecuteGather", "HashBatchAllocate",
        "HashBatchElect", "HashBatchLoad", "HashBuildAllocate", "HashBuildElect",
        "HashBuildHashInner", "HashBuildHashOuter", "HashGrowBatchesDecide",
        "HashGrowBatchesElect", "HashGrowBatchesFinish", "HashGrowBatchesReallocate",
        "HashGrowBatchesRepartition", "HashGrowBucketsElect", "HashGrowBucketsReallocate",
        "HashGrowBucketsReinsert", "LogicalApplySendData", "LogicalParallelApplyStateChange",
        "LogicalSyncData", "LogicalSyncStateChange", "MessageQueueInternal",
        "MessageQueuePutMessage", "MessageQueueReceive", "MessageQueueSend", "ParallelBitmapScan",
        "ParallelCreateIndexScan", "ParallelFinish", "ProcArrayGroupUpdate", "ProcSignalBarrier",
        "Promote", "RecoveryConflictSnapshot", "RecoveryConflictTablespace", "RecoveryEndCommand",
        "RecoveryPause", "ReplicationOriginDrop", "ReplicationSlotDrop", "RestoreCommand",
        "SafeSnapshot", "SyncRep", "WalReceiverExit", "WalReceiverWaitStart", "XactGroupUpdate",
    ),
    timeout=(
        "BaseBackupThrottle", "CheckpointWriteDelay", "PgSleep", "RecoveryApplyDelay",
        "RecoveryRetrieveRetryInterval", "RegisterSyncRequest", "SpinDelay", "VacuumDelay",
        "VacuumTruncate",
    ),
    io=(
        "BaseBackupRead", "BaseBackupSync", "BaseBackupWrite", "BufFileRead", "BufFileWrite",
        "BufFileTruncate", "ControlFileRead", "ControlFileSync", "ControlFileSyncUpdate",
        "ControlFileWrite", "ControlFileWriteUpdate", "CopyFileRead", "CopyFileWrite",
        "DataFileExtend", "DataFileFlush", "DataFileImmediateSync", "DataFilePrefetch",
        "DataFileRead", "DataFileSync", "DataFileTruncate", "DataFileWrite", "DSMAllocate",
        "DSMFillZeroWrite", "LockFileAddToDataDirRead", "LockFileAddToDataDirSync",
        "LockFileAddToDataDirWrite", "LockFileCreateRead", "LockFileCreateSync",
        "LockFileCreateWrite", "LockFileReCheckDataDirRead", "LogicalRewriteCheckpointSync",
        "LogicalRewriteMappingSync", "LogicalRewriteMappingWrite", "LogicalRewriteSync",
        "LogicalRewriteTruncate", "LogicalRewriteWrite", "RelationMapRead", "RelationMapReplace",
        "RelationMapWrite", "ReorderBufferRead", "ReorderBufferWrite", "ReorderLogicalMappingRead",
        "ReplicationSlotRead", "ReplicationSlotRestoreSync", "ReplicationSlotSync",
        "ReplicationSlotWrite", "SLRUFlushSync", "SLRURead", "SLRUSync", "SLRUWrite",
        "SnapbuildRead", "SnapbuildSync", "SnapbuildWrite", "TimelineHistoryFileSync",
        "TimelineHistoryFileWrite", "TimelineHistoryRead", "TimelineHistorySync",
        "TimelineHistoryWrite", "TwophaseFileRead", "TwophaseFileSync", "TwophaseFileWrite",
        "VersionFileWrite", "WALSenderTimelineHistoryRead", "WALBootstrapSync",
        "WALBootstrapWrite", "WALCopyRead", "WALCopySync", "WALCopyWrite", "WALInitSync",
        "WALInitWrite", "WALRead", "WALSync", "WALSyncMethodAssign", "WALWrite", "VersionFileSync",
    ),
    individual_lwlocks=PG14.individual_lwlocks,
    builtin_tranches=(
        "XactBuffer", "CommitTsBuffer", "SubtransBuffer", "MultiXactOffsetBuffer",
        "MultiXactMemberBuffer", "NotifyBuffer", "SerialBuffer", "WALInsert", "BufferContent",
        "ReplicationOriginState", "ReplicationSlotIO", "LockFastPath", "BufferMapping",
        "LockManager", "PredicateLockManager", "ParallelHashJoin", "ParallelQueryDSA",
        "PerSessionDSA", "PerSessionRecordType", "PerSessionRecordTypmod", "SharedTupleStore",
        "SharedTidBitmap", "ParallelAppend", "PerXactPredicateList", "PgStatsDSA", "PgStatsHash",
        "PgStatsData", "LogicalRepLauncherDSA", "LogicalRepLauncherHash",
    ),
)

# PostgreSQL 17, from 17.4's sources: the enums are generated from wait_event_names.txt,
# sorted by their upper-case names (DATA_FILE_READ) and named by camel-casing them
# (DataFileRead, WalWrite, SlruRead); storage/lwlocklist.h; lwlock.c's BuiltinTrancheNames.
# The SLRU locks are tranches now.
PG17 = WaitEventNames(
    activity=(
        "ArchiverMain", "AutovacuumMain", "BgwriterHibernate", "BgwriterMain", "CheckpointerMain",
        "LogicalApplyMain", "LogicalLauncherMain", "LogicalParallelApplyMain", "RecoveryWalStream",
        "ReplicationSlotsyncMain", "ReplicationSlotsyncShutdown", "SysloggerMain",
        "WalReceiverMain", "WalSenderMain", "WalSummarizerWal", "WalWriterMain",
    ),
    client=(
        "ClientRead", "ClientWrite", "GssOpenServer", "LibpqwalreceiverConnect",
        "LibpqwalreceiverReceive", "SslOpenServer", "WaitForStandbyConfirmation",
        "WalSenderWaitForWal", "WalSenderWriteData",
    ),
    ipc=(
        "AppendReady", "ArchiveCleanupCommand", "ArchiveCommand", "BackendTermination",
        "BackupWaitWalArchive", "BgworkerShutdown", "BgworkerStartup", "BtreePage", "BufferIo",
        "CheckpointDelayComplete", "CheckpointDelayStart", "CheckpointDone", "CheckpointStart",
        "ExecuteGather", "HashBatchAllocate", "HashBatchElect", "HashBatchLoad",
        "HashBuildAllocate", "HashBuildElect", "HashBuildHashInner", "HashBuildHashOuter",
        "HashGrowBatchesDecide", "HashGrowBatchesElect", "HashGrowBatchesFinish",
        "HashGrowBatchesReallocate", "HashGrowBatchesRepartition", "HashGrowBucketsElect",
        "HashGrowBucketsReallocate", "HashGrowBucketsReinsert", "LogicalApplySendData",
        "LogicalParallelApplyStateChange", "LogicalSyncData", "LogicalSyncStateChange",
        "MessageQueueInternal", "MessageQueuePutMessage", "MessageQueueReceive",
        "MessageQueueSend", "MultixactCreation", "ParallelBitmapScan", "ParallelCreateIndexScan",
        "ParallelFinish", "ProcarrayGroupUpdate", "ProcSignalBarrier", "Promote",
        "RecoveryConflictSnapshot", "RecoveryConflictTablespace", "RecoveryEndCommand",
        "RecoveryPause", "ReplicationOriginDrop", "ReplicationSlotDrop", "RestoreCommand",
        "SafeSnapshot", "SyncRep", "WalReceiverExit", "WalReceiverWaitStart", "WalSummaryReady",
        "XactGroupUpdate",
    ),
    timeout=(
        "BaseBackupThrottle", "CheckpointWriteDelay", "PgSleep", "RecoveryApplyDelay",
        "RecoveryRetrieveRetryInterval", "RegisterSyncRequest", "SpinDelay", "VacuumDelay",
        "VacuumTruncate", "WalSummarizerError",
    ),
    io=(
        "BasebackupRead", "BasebackupSync", "BasebackupWrite", "BuffileRead", "BuffileTruncate",
        "BuffileWrite", "ControlFileRead", "ControlFileSync", "ControlFileSyncUpdate",
        "ControlFileWrite", "ControlFileWriteUpdate", "CopyFileRead", "CopyFileWrite",
        "DataFileExtend", "DataFileFlush", "DataFileImmediateSync", "DataFilePrefetch",
        "DataFileRead", "DataFileSync", "DataFileTruncate", "DataFileWrite", "DsmAllocate",
        "DsmFillZeroWrite", "LockFileAddtodatadirRead", "LockFileAddtodatadirSync",
        "LockFileAddtodatadirWrite", "LockFileCreateRead", "LockFileCreateSync",
        "LockFileCreateWrite", "LockFileRecheckdatadirRead", "LogicalRewriteCheckpointSync",
        "LogicalRewriteMappingSync", "LogicalRewriteMappingWrite", "LogicalRewriteSync",
        "LogicalRewriteTruncate", "LogicalRewriteWrite", "RelationMapRead", "RelationMapReplace",
        "RelationMapWrite", "ReorderBufferRead", "ReorderBufferWrite", "ReorderLogicalMappingRead",
        "ReplicationSlotRead", "ReplicationSlotRestoreSync", "ReplicationSlotSync",
        "ReplicationSlotWrite", "SlruFlushSync", "SlruRead", "SlruSync", "SlruWrite",
        "SnapbuildRead", "SnapbuildSync", "SnapbuildWrite", "TimelineHistoryFileSync",
        "TimelineHistoryFileWrite", "TimelineHistoryRead", "TimelineHistorySync",
        "TimelineHistoryWrite", "TwophaseFileRead", "TwophaseFileSync", "TwophaseFileWrite",
        "VersionFileSync", "VersionFileWrite", "WalsenderTimelineHistoryRead", "WalBootstrapSync",
        "WalBootstrapWrite", "WalCopyRead", "WalCopySync", "WalCopyWrite", "WalInitSync",
        "WalInitWrite", "WalRead", "WalSummaryRead", "WalSummaryWrite", "WalSync",
        "WalSyncMethodAssign", "WalWrite",
    ),
    individual_lwlocks=(
        "<unassigned:0>", "ShmemIndex", "OidGen", "XidGen", "ProcArray", "SInvalRead",
        "SInvalWrite", "WALBufMapping", "WALWrite", "ControlFile", "<unassigned:10>",
        "<unassigned:11>", "<unassigned:12>", "MultiXactGen", "<unassigned:14>", "<unassigned:15>",
        "RelCacheInit", "CheckpointerComm", "TwoPhaseState", "TablespaceCreate", "BtreeVacuum",
        "AddinShmemInit", "Autovacuum", "AutovacuumSchedule", "SyncScan", "RelationMapping",
        "<unassigned:26>", "NotifyQueue", "SerializableXactHash", "SerializableFinishedList",
        "SerializablePredicateList", "<unassigned:31>", "SyncRep", "BackgroundWorker",
        "DynamicSharedMemoryControl", "AutoFile", "ReplicationSlotAllocation",
        "ReplicationSlotControl", "<unassigned:38>", "CommitTs", "ReplicationOrigin",
        "MultiXactTruncation", "<unassigned:42>", "LogicalRepWorker", "XactTruncation",
        "<unassigned:45>", "WrapLimitsVacuum", "NotifyQueueTail", "WaitEventCustom",
        "WALSummarizer", "DSMRegistry", "InjectionPoint", "SerialControl",
    ),
    builtin_tranches=(
        "XactBuffer", "CommitTsBuffer", "SubtransBuffer", "MultiXactOffsetBuffer",
        "MultiXactMemberBuffer", "NotifyBuffer", "SerialBuffer", "WALInsert", "BufferContent",
        "ReplicationOriginState", "ReplicationSlotIO", "LockFastPath", "BufferMapping",
        "LockManager", "PredicateLockManager", "ParallelHashJoin", "ParallelQueryDSA",
        "PerSessionDSA", "PerSessionRecordType", "PerSessionRecordTypmod", "SharedTupleStore",
        "SharedTidBitmap", "ParallelAppend", "PerXactPredicateList", "PgStatsDSA", "PgStatsHash",
        "PgStatsData", "LogicalRepLauncherDSA", "LogicalRepLauncherHash", "DSMRegistryDSA",
        "DSMRegistryHash", "CommitTsSLRU", "MultixactMemberSLRU", "MultixactOffsetSLRU",
        "NotifySLRU", "SerialSLRU", "SubtransSLRU", "XactSLRU", "ParallelVacuumDSA",
    ),
)

# PostgreSQL 18, from 18.3's sources, as 17's.
PG18 = WaitEventNames(
    activity=(
        "ArchiverMain", "AutovacuumMain", "BgwriterHibernate", "BgwriterMain", "CheckpointerMain",
        "CheckpointerShutdown", "IoWorkerMain", "LogicalApplyMain", "LogicalLauncherMain",
        "LogicalParallelApplyMain", "RecoveryWalStream", "ReplicationSlotsyncMain",
        "ReplicationSlotsyncShutdown", "SysloggerMain", "WalReceiverMain", "WalSenderMain",
        "WalSummarizerWal", "WalWriterMain",
    ),
    client=PG17.client,
    ipc=PG17.ipc,
    timeout=PG17.timeout,
    io=(
        "AioIoCompletion", "AioIoUringExecution", "AioIoUringSubmit", "BasebackupRead",
        "BasebackupSync", "BasebackupWrite", "BuffileRead", "BuffileTruncate", "BuffileWrite",
        "ControlFileRead", "ControlFileSync", "ControlFileSyncUpdate", "ControlFileWrite",
        "ControlFileWriteUpdate", "CopyFileCopy", "CopyFileRead", "CopyFileWrite",
        "DataFileExtend", "DataFileFlush", "DataFileImmediateSync", "DataFilePrefetch",
        "DataFileRead", "DataFileSync", "DataFileTruncate", "DataFileWrite", "DsmAllocate",
        "DsmFillZeroWrite", "LockFileAddtodatadirRead", "LockFileAddtodatadirSync",
        "LockFileAddtodatadirWrite", "LockFileCreateRead", "LockFileCreateSync",
        "LockFileCreateWrite", "LockFileRecheckdatadirRead", "LogicalRewriteCheckpointSync",
        "LogicalRewriteMappingSync", "LogicalRewriteMappingWrite", "LogicalRewriteSync",
        "LogicalRewriteTruncate", "LogicalRewriteWrite", "RelationMapRead", "RelationMapReplace",
        "RelationMapWrite", "ReorderBufferRead", "ReorderBufferWrite", "ReorderLogicalMappingRead",
        "ReplicationSlotRead", "ReplicationSlotRestoreSync", "ReplicationSlotSync",
        "ReplicationSlotWrite", "SlruFlushSync", "SlruRead", "SlruSync", "SlruWrite",
        "SnapbuildRead", "SnapbuildSync", "SnapbuildWrite", "TimelineHistoryFileSync",
        "TimelineHistoryFileWrite", "TimelineHistoryRead", "TimelineHistorySync",
        "TimelineHistoryWrite", "TwophaseFileRead", "TwophaseFileSync", "TwophaseFileWrite",
        "VersionFileSync", "VersionFileWrite", "WalsenderTimelineHistoryRead", "WalBootstrapSync",
        "WalBootstrapWrite", "WalCopyRead", "WalCopySync", "WalCopyWrite", "WalInitSync",
        "WalInitWrite", "WalRead", "WalSummaryRead", "WalSummaryWrite", "WalSync",
        "WalSyncMethodAssign", "WalWrite",
    ),
    individual_lwlocks=(
        "<unassigned:0>", "ShmemIndex", "OidGen", "XidGen", "ProcArray", "SInvalRead",
        "SInvalWrite", "WALBufMapping", "WALWrite", "ControlFile", "<unassigned:10>",
        "<unassigned:11>", "<unassigned:12>", "MultiXactGen", "<unassigned:14>", "<unassigned:15>",
        "RelCacheInit", "CheckpointerComm", "TwoPhaseState", "TablespaceCreate", "BtreeVacuum",
        "AddinShmemInit", "Autovacuum", "AutovacuumSchedule", "SyncScan", "RelationMapping",
        "<unassigned:26>", "NotifyQueue", "SerializableXactHash", "SerializableFinishedList",
        "SerializablePredicateList", "<unassigned:31>", "SyncRep", "BackgroundWorker",
        "DynamicSharedMemoryControl", "AutoFile", "ReplicationSlotAllocation",
        "ReplicationSlotControl", "<unassigned:38>", "CommitTs", "ReplicationOrigin",
        "MultiXactTruncation", "<unassigned:42>", "LogicalRepWorker", "XactTruncation",
        "<unassigned:45>", "WrapLimitsVacuum", "NotifyQueueTail", "WaitEventCustom",
        "WALSummarizer", "DSMRegistry", "InjectionPoint", "SerialControl",
        "AioWorkerSubmissionQueue",
    ),
    builtin_tranches=(
        "XactBuffer", "CommitTsBuffer", "SubtransBuffer", "MultiXactOffsetBuffer",
        "MultiXactMemberBuffer", "NotifyBuffer", "SerialBuffer", "WALInsert", "BufferContent",
        "ReplicationOriginState", "ReplicationSlotIO", "LockFastPath", "BufferMapping",
        "LockManager", "PredicateLockManager", "ParallelHashJoin", "ParallelBtreeScan",
        "ParallelQueryDSA", "PerSessionDSA", "PerSessionRecordType", "PerSessionRecordTypmod",
        "SharedTupleStore", "SharedTidBitmap", "ParallelAppend", "PerXactPredicateList",
        "PgStatsDSA", "PgStatsHash", "PgStatsData", "LogicalRepLauncherDSA",
        "LogicalRepLauncherHash", "DSMRegistryDSA", "DSMRegistryHash", "CommitTsSLRU",
        "MultiXactMemberSLRU", "MultiXactOffsetSLRU", "NotifySLRU", "SerialSLRU", "SubtransSLRU",
        "XactSLRU", "ParallelVacuumDSA", "AioUringCompletion",
    ),
)

BY_MAJOR = {12: PG12, 13: PG13, 14: PG14, 15: PG15, 16: PG16, 17: PG17, 18: PG18}
