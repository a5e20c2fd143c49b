/*
 * postgresql_locks.bpf.c: heavyweight lock waits, who holds what, and LWLock waits.
 *
 * Hooks (see probes/postgresql.toml for the probe or function behind each):
 *
 *   pg_activity(state, text)  the backend reports an activity (pgstat_report_activity):
 *                             postgresql.h keeps each backend's current or last statement
 *   pg_lock_wait_start(tag_lo, tag_hi, mode, lock, proc, pid_at)   ProcSleep: the backend
 *                             starts waiting for a lock. The LOCALLOCK's tag (as two 8-byte
 *                             words) and mode, its LOCK in shared memory, the waiter's own
 *                             PGPROC (the global MyProc), and where PGPROC keeps the pid in
 *                             this server version (0 when unknown: no holders are named)
 *   pg_lock_wait_returned(status)   ProcSleep returns: granted, or not (a deadlock)
 *   pg_lock_error(sqlstate)   errcode(): an error is being raised; while a wait is open, it
 *                             ends the wait (lock_timeout, statement_timeout, a cancel)
 *   pg_deadlock()             the deadlock detector found this backend in a cycle
 *   pg_lwlock_wait_start(tranche, mode) / pg_lwlock_wait_done()
 *
 * Waits are rare next to statements, and nothing here runs on the statements' path but the
 * shared activity report. Each wait's start and end go to user space, which pairs them and
 * shows a wait live while it lasts. The blockers are read when the wait starts, from the
 * server's own lock table: the LOCK's list of PROCLOCKs, one per backend that holds or
 * awaits the lock, each with the modes it holds and its PGPROC (whose pid is read). ProcSleep
 * runs with the lock's partition locked, so the list holds still while it is read. Only
 * backends that hold a mode are kept (user space keeps those whose modes conflict): a
 * waiter that gave up holds nothing. The waiter's statement, and each blocker's current or
 * last one, come from the backends' slots. LWLock waits are summed in kernel by tranche
 * and mode.
 *
 * Shared-memory layout read here (storage/lock.h, the same from 9.6 on): LOCK.procLocks
 * (a list head: prev, next) at 24; PROCLOCK: tag.myProc at 8, holdMask at 24, lockLink
 * (prev, next) at 32. A LOCALLOCK's LOCK is at 24 (the recipe reads it).
 */
#include "postgresql.h"

#define PG_LOCK_PROCLOCKS 24
#define PG_PROCLOCK_LOCKLINK 32
#define PG_LOCK_WALK_MAX 32           /* PROCLOCKs of one lock read at most */
#define PG_LOCK_WAIT_ERROR 2          /* beside DBP_LOCK_WAIT_FAILED: ended by an error, whose
                                         SQLSTATE is in field1 (dbprobe/correlate/lockwaits.py) */

struct pg_proclock {                  /* the head of a PROCLOCK */
	u64 my_lock;
	u64 my_proc;
	u64 group_leader;
	u32 hold_mask;
	u32 release_mask;
	u64 lock_link_prev;
	u64 lock_link_next;
};

struct pg_lwlock_key {
	u64 tranche;                /* the tranche name's address in the server's memory */
	u32 mode;
	u32 pad;
};

struct pg_lwlock_stats {
	u64 waits;
	u64 total_ns;
	u64 max_ns;
};

struct pg_lwlock_wait {
	u64 start_ns;
	u64 tranche;
	u32 mode;
	u32 pad;
};

BPF_PERCPU_ARRAY(lock_scratch, struct dbp_lock_event, 1);
BPF_HASH(pg_lwlock_waits, u32, struct pg_lwlock_wait, 16384);
BPF_HASH(pg_lwlock_totals, struct pg_lwlock_key, struct pg_lwlock_stats, 1024);

static __always_inline u32 pg_tgid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}

static __always_inline struct dbp_lock_event *pg_lock_event(u32 kind, u16 hook)
{
	u32 zero = 0;
	struct dbp_lock_event *ev = lock_scratch.lookup(&zero);
	if (!ev)
		return 0;
	dbp_fill_header(&ev->hdr, kind, hook);
	ev->ts_ns = bpf_ktime_get_ns();
	ev->field1 = 0;
	ev->field2 = 0;
	ev->field3 = 0;
	ev->field4 = 0;
	ev->locktype = 0;
	ev->mode = 0;
	ev->holders = 0;
	ev->flags = 0;
	ev->text_len = 0;
	ev->reserved = 0;
	return ev;
}

/* The backends other than the waiter that hold a mode of the lock, from its PROCLOCKs. */
static __always_inline void pg_read_holders(struct dbp_lock_event *ev, u64 lock, u64 waiter,
					    u64 pid_at)
{
	u64 head = lock + PG_LOCK_PROCLOCKS;
	u64 link = 0;
	u32 used = 0;

	if (!lock || !pid_at || bpf_probe_read_user(&link, sizeof(link), (void *)(head + 8)) != 0)
		return;
	for (int i = 0; i < PG_LOCK_WALK_MAX && link && link != head; i++) {
		struct pg_proclock proclock = {};
		if (bpf_probe_read_user(&proclock, sizeof(proclock),
					(void *)(link - PG_PROCLOCK_LOCKLINK)) != 0)
			break;
		link = proclock.lock_link_next;
		if (!proclock.hold_mask || proclock.my_proc == waiter)
			continue;
		u32 pid = 0;
		if (bpf_probe_read_user(&pid, sizeof(pid), (void *)(proclock.my_proc + pid_at)) != 0 || !pid)
			continue;           /* a prepared transaction's PGPROC has pid 0 */
		struct dbp_lock_holder *holder = &ev->holder[used & (DBP_LOCK_HOLDERS - 1)];
		holder->pid = pid;
		holder->modes = proclock.hold_mask;
		holder->session = 0;
		holder->reserved = 0;
		if (++used >= DBP_LOCK_HOLDERS)
			break;
	}
	ev->holders = used;
}

static __always_inline int pg_lock_wait_start(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	u64 tag_lo = dbp_arg(args, 0), tag_hi = dbp_arg(args, 1);
	struct pg_backend *b = pg_backend_slot(pg_tid());
	if (!b)
		return 0;
	struct dbp_lock_event *ev = pg_lock_event(DBP_EV_LOCK_WAIT_START, hook);
	if (!ev)
		return 0;
	ev->field1 = (u32)tag_lo;
	ev->field2 = (u32)(tag_lo >> 32);
	ev->field3 = (u32)tag_hi;
	ev->field4 = (u16)(tag_hi >> 32);
	ev->locktype = (u8)(tag_hi >> 48);
	ev->mode = dbp_arg(args, 2);
	__builtin_memset(ev->holder, 0, sizeof(ev->holder));
	pg_read_holders(ev, dbp_arg(args, 3), dbp_arg(args, 4), dbp_arg(args, 5));
	b->waiting = 1;
	u32 len = b->ev.text_len;
	if (len > DBP_TEXT_MAX)
		len = DBP_TEXT_MAX;
	if (len && b->active && bpf_probe_read_kernel(ev->text, DBP_TEXT_MAX, b->ev.text) == 0)
		ev->text_len = len;
	u32 size = offsetof(struct dbp_lock_event, text) + ev->text_len;
	dbp_submit(ev, size > sizeof(*ev) ? sizeof(*ev) : size);
	return 0;
}

static __always_inline void pg_lock_wait_ended(struct pg_backend *b, u8 flags, u32 sqlstate,
					       u16 hook)
{
	b->waiting = 0;
	struct dbp_lock_event *ev = pg_lock_event(DBP_EV_LOCK_WAIT_DONE, hook);
	if (!ev)
		return;
	ev->flags = flags;
	ev->field1 = sqlstate;
	dbp_submit(ev, offsetof(struct dbp_lock_event, holder));
}

static __always_inline int pg_lock_wait_returned(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	struct pg_backend *b = pg_backend_of(pg_tid());
	if (b && b->waiting)        /* PROC_WAIT_STATUS_OK is 0 */
		pg_lock_wait_ended(b, dbp_arg(args, 0) ? DBP_LOCK_WAIT_FAILED : 0, 0, hook);
	return 0;
}

/* An error raised while waiting ends the wait: ProcSleep never returns, the error unwinds it. */
static __always_inline int pg_lock_error(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	struct pg_backend *b = pg_backend_of(pg_tid());
	if (b && b->waiting)
		pg_lock_wait_ended(b, PG_LOCK_WAIT_ERROR, dbp_arg(args, 0), hook);
	return 0;
}

static __always_inline int pg_deadlock(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	struct dbp_lock_event *ev = pg_lock_event(DBP_EV_DEADLOCK, hook);
	if (ev)
		dbp_submit(ev, offsetof(struct dbp_lock_event, holder));
	return 0;
}

static __always_inline int pg_lwlock_wait_start(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	if (!dbp_pid_wanted(pg_tgid()))
		return 0;
	struct pg_lwlock_wait wait = {};
	wait.start_ns = bpf_ktime_get_ns();
	wait.tranche = dbp_arg(args, 0);
	wait.mode = dbp_arg(args, 1);
	pg_lwlock_waits.update(&tid, &wait);
	return 0;
}

static __always_inline int pg_lwlock_wait_done(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct pg_lwlock_wait *wait = pg_lwlock_waits.lookup(&tid);
	if (!wait)
		return 0;
	u64 waited = bpf_ktime_get_ns() - wait->start_ns;
	struct pg_lwlock_key key = {};
	key.tranche = wait->tranche;
	key.mode = wait->mode;
	pg_lwlock_waits.delete(&tid);
	struct pg_lwlock_stats empty = {};
	struct pg_lwlock_stats *stats = pg_lwlock_totals.lookup_or_try_init(&key, &empty);
	if (!stats)
		return 0;
	__sync_fetch_and_add(&stats->waits, 1);
	__sync_fetch_and_add(&stats->total_ns, waited);
	if (waited > stats->max_ns)
		stats->max_ns = waited;
	return 0;
}
