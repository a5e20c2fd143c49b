/*
 * postgresql_locks.bpf.c: heavyweight lock waits, who holds what, and LWLock waits.
 *
 * Hooks (see probes/postgresql.toml for the probe or function behind each):
 *
 *   pg_lock_statement(text)   a statement starts (activity report); NULL when idle
 *   pg_lock_acquire(tag_lo, tag_hi, mode, session)   LockAcquireExtended: the backend takes
 *                             (or queues for) a lock
 *   pg_lock_release(tag_lo, tag_hi, mode, session)   LockRelease: gives one back early
 *   pg_locks_released(lockmethod)   LockReleaseAll: the transaction's locks all go
 *   pg_lock_wait_start(f1, f2, f3, f4, type, mode, statement)   the backend starts waiting
 *   pg_lock_wait_done(f1, f2, f3, f4, type, mode)               ... and stops
 *   pg_lock_wait_returned(status)   uprobe recipe: ProcSleep returns, not OK on a deadlock
 *   pg_deadlock()             the deadlock detector found this backend in a cycle
 *   pg_lwlock_wait_start(tranche, mode) / pg_lwlock_wait_done()
 *
 * Waits are rare next to statements, so each wait's start and end go to user space, which
 * pairs them and shows a wait live while it lasts. To name the blockers, the kernel side
 * remembers which backends took each lock in their current transaction: a holder entry is
 * valid while its backend's transaction generation (bumped when its locks are released) is
 * the one it recorded. It also keeps each backend's current statement, so user space can
 * show what a blocker ran last: the classic culprit sits idle in transaction.
 * LWLock waits are summed in kernel by tranche and mode.
 */
#include "dbprobe.h"

#define PG_LOCK_TEXT_MAX 1024

struct pg_locktag {
	u32 field1;
	u32 field2;
	u32 field3;
	u16 field4;
	u8 type;
	u8 pad;
};

struct pg_holder_slot {
	u32 pid;
	u32 generation;
	u16 modes;
	u8 session;
	u8 pad;
	u32 reserved;
};

struct pg_holders {
	struct pg_holder_slot slot[DBP_LOCK_HOLDERS];
};

struct pg_last_statement {
	u64 start_ns;
	u64 end_ns;                 /* 0 while it runs */
	u32 len;
	u32 reserved;
	char text[PG_LOCK_TEXT_MAX];
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

BPF_TABLE("lru_hash", struct pg_locktag, struct pg_holders, pg_lock_holders, 16384);
BPF_TABLE("lru_hash", u32, u32, pg_lock_generation, 16384);
BPF_TABLE("lru_hash", u32, struct pg_last_statement, pg_last_statements, 4096);
BPF_PERCPU_ARRAY(pg_last_statement_zero, struct pg_last_statement, 1);
BPF_PERCPU_ARRAY(lock_scratch, struct dbp_lock_event, 1);
BPF_HASH(pg_lwlock_waits, u32, struct pg_lwlock_wait, 16384);
BPF_HASH(pg_lwlock_totals, struct pg_lwlock_key, struct pg_lwlock_stats, 1024);

static __always_inline u32 pg_tgid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}

static __always_inline u32 pg_generation(u32 pid)
{
	u32 *generation = pg_lock_generation.lookup(&pid);
	return generation ? *generation : 0;
}

static __always_inline struct pg_locktag pg_locktag_of(u64 lo, u64 hi)
{
	struct pg_locktag tag = {};
	tag.field1 = (u32)lo;
	tag.field2 = (u32)(lo >> 32);
	tag.field3 = (u32)hi;
	tag.field4 = (u16)(hi >> 32);
	tag.type = (u8)(hi >> 48);
	return tag;
}

static __always_inline int pg_lock_statement(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u32 pid = pg_tgid();
	u32 zero = 0;
	u64 text = args[0];
	struct pg_last_statement *last = pg_last_statements.lookup(&pid);

	if (!text) {
		if (last && !last->end_ns)
			last->end_ns = bpf_ktime_get_ns();
		return 0;
	}
	if (!last) {
		struct pg_last_statement *fresh = pg_last_statement_zero.lookup(&zero);
		if (!fresh || !dbp_pid_wanted(pid))
			return 0;
		pg_last_statements.update(&pid, fresh);
		last = pg_last_statements.lookup(&pid);
		if (!last)
			return 0;
	} else if (!last->end_ns) {
		return 0;           /* the Bind or Execute of a statement already kept */
	}
	last->start_ns = bpf_ktime_get_ns();
	last->end_ns = 0;
	long copied = bpf_probe_read_user_str(last->text, sizeof(last->text), (void *)text);
	last->len = copied > 0 ? copied - 1 : 0;
	return 0;
}

static __always_inline int pg_lock_acquire(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u32 pid = pg_tgid();
	u32 mode = args[2];
	if (mode == 0 || mode > 15 || !dbp_pid_wanted(pid))
		return 0;
	struct pg_locktag tag = pg_locktag_of(args[0], args[1]);
	struct pg_holders empty = {};
	struct pg_holders *holders = pg_lock_holders.lookup_or_try_init(&tag, &empty);
	if (!holders)
		return 0;

	u32 generation = pg_generation(pid);
	int free_slot = -1, own_slot = -1;
#pragma unroll
	for (int i = 0; i < DBP_LOCK_HOLDERS; i++) {
		struct pg_holder_slot *slot = &holders->slot[i];
		if (slot->pid == pid && own_slot < 0)
			own_slot = i;
		else if (free_slot < 0 && (slot->pid == 0 || (!slot->session &&
					   slot->generation != pg_generation(slot->pid))))
			free_slot = i;
	}
	int index = own_slot >= 0 ? own_slot : free_slot;
	if (index < 0 || index >= DBP_LOCK_HOLDERS)
		return 0;           /* more holders than slots: the oldest stay named */
	struct pg_holder_slot *slot = &holders->slot[index];
	if (slot->pid != pid || (!slot->session && slot->generation != generation))
		slot->modes = 0;
	slot->pid = pid;
	slot->generation = generation;
	slot->modes |= 1 << mode;
	slot->session |= args[3] ? 1 : 0;
	return 0;
}

static __always_inline int pg_lock_release(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u32 pid = pg_tgid();
	u32 mode = args[2];
	struct pg_locktag tag = pg_locktag_of(args[0], args[1]);
	struct pg_holders *holders = pg_lock_holders.lookup(&tag);
	if (!holders || mode > 15)
		return 0;
#pragma unroll
	for (int i = 0; i < DBP_LOCK_HOLDERS; i++) {
		struct pg_holder_slot *slot = &holders->slot[i];
		if (slot->pid == pid) {
			slot->modes &= ~(1 << mode);
			if (!slot->modes)
				slot->pid = 0;
		}
	}
	return 0;
}

#define PG_DEFAULT_LOCKMETHOD 1

static __always_inline int pg_locks_released(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	if (args[0] != PG_DEFAULT_LOCKMETHOD)
		return 0;
	u32 pid = pg_tgid();
	u32 next = pg_generation(pid) + 1;
	pg_lock_generation.update(&pid, &next);
	return 0;
}

static __always_inline struct dbp_lock_event *pg_lock_event(u32 kind, const u64 *args, u16 hook)
{
	u32 zero = 0;
	struct dbp_lock_event *ev = lock_scratch.lookup(&zero);
	if (!ev)
		return 0;
	dbp_fill_header(&ev->hdr, kind, hook);
	ev->ts_ns = bpf_ktime_get_ns();
	ev->field1 = args[0];
	ev->field2 = args[1];
	ev->field3 = args[2];
	ev->field4 = args[3];
	ev->locktype = args[4];
	ev->mode = args[5];
	ev->holders = 0;
	ev->flags = 0;
	ev->text_len = 0;
	return ev;
}

static __always_inline void pg_copy_holders(struct dbp_lock_event *ev, u32 waiter)
{
	struct pg_locktag tag = {};
	tag.field1 = ev->field1;
	tag.field2 = ev->field2;
	tag.field3 = ev->field3;
	tag.field4 = ev->field4;
	tag.type = ev->locktype;
	struct pg_holders *holders = pg_lock_holders.lookup(&tag);
	if (!holders)
		return;
	u8 used = 0;
#pragma unroll
	for (int i = 0; i < DBP_LOCK_HOLDERS; i++) {
		struct pg_holder_slot *slot = &holders->slot[i];
		u32 pid = slot->pid;
		if (!pid || pid == waiter || !slot->modes)
			continue;
		if (!slot->session && slot->generation != pg_generation(pid))
			continue;   /* taken in a transaction that has ended */
		ev->holder[i].pid = pid;
		ev->holder[i].modes = slot->modes;
		ev->holder[i].session = slot->session;
		used = i + 1;
	}
	ev->holders = used;
}

static __always_inline int pg_lock_wait_start(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u32 pid = pg_tgid();
	if (!dbp_pid_wanted(pid))
		return 0;
	struct dbp_lock_event *ev = pg_lock_event(DBP_EV_LOCK_WAIT_START, args, hook);
	if (!ev)
		return 0;
	__builtin_memset(ev->holder, 0, sizeof(ev->holder));
	pg_copy_holders(ev, pid);
	if (args[6]) {
		long copied = bpf_probe_read_user_str(ev->text, sizeof(ev->text), (void *)args[6]);
		ev->text_len = copied > 0 ? copied - 1 : 0;
	}
	u32 size = offsetof(struct dbp_lock_event, text) + ev->text_len;
	dbp_submit(ev, size > sizeof(*ev) ? sizeof(*ev) : size);
	return 0;
}

static __always_inline int pg_lock_wait_done(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	if (!dbp_pid_wanted(pg_tgid()))
		return 0;
	struct dbp_lock_event *ev = pg_lock_event(DBP_EV_LOCK_WAIT_DONE, args, hook);
	if (ev)
		dbp_submit(ev, offsetof(struct dbp_lock_event, holder));
	return 0;
}

static __always_inline int pg_lock_wait_returned(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	if (!dbp_pid_wanted(pg_tgid()))
		return 0;
	u64 none[DBP_MAX_ARGS] = {};
	struct dbp_lock_event *ev = pg_lock_event(DBP_EV_LOCK_WAIT_DONE, none, hook);
	if (!ev)
		return 0;
	ev->flags = args[0] ? DBP_LOCK_WAIT_FAILED : 0;   /* PROC_WAIT_STATUS_OK is 0 */
	dbp_submit(ev, offsetof(struct dbp_lock_event, holder));
	return 0;
}

static __always_inline int pg_deadlock(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u64 none[DBP_MAX_ARGS] = {};
	struct dbp_lock_event *ev = pg_lock_event(DBP_EV_DEADLOCK, none, hook);
	if (ev)
		dbp_submit(ev, offsetof(struct dbp_lock_event, holder));
	return 0;
}

static __always_inline int pg_lwlock_wait_start(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	if (!dbp_pid_wanted(pg_tgid()))
		return 0;
	struct pg_lwlock_wait wait = {};
	wait.start_ns = bpf_ktime_get_ns();
	wait.tranche = args[0];
	wait.mode = args[1];
	pg_lwlock_waits.update(&tid, &wait);
	return 0;
}

static __always_inline int pg_lwlock_wait_done(struct pt_regs *ctx, const u64 *args, u16 hook)
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
