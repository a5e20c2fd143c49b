/*
 * waits.h: where a statement's time goes, counted in the kernel per thread.
 *
 * A thread is followed once it runs a statement of a traced server (waits_statement_begins
 * creates its slot, under the pid filter). Its time is cut into spans:
 *
 *   on CPU                    from a switch-in (or a file call's return) to a switch-out
 *                             (or a file call's entry)
 *   in a file read or write   the whole call, on or off CPU: I/O. The syscall tracepoints of
 *                             read, pread64, readv, preadv and the writes (not the *v2 ones,
 *                             which neither server uses; both read and write sockets with
 *                             recv and send, so these are files). PostgreSQL sets its wait
 *                             event around each (IO:DataFileRead around a pread), read at
 *                             the call's entry: the event gets the call's time and a count
 *   off CPU otherwise         sched_switch: on the prev side the thread is still `current`,
 *                             and what it waits for is read in its own address space: for
 *                             PostgreSQL the backend's wait_event_info word, through the
 *                             pointer in the global my_wait_event_info (into its PGPROC);
 *                             the task state (runnable: preempted, "runq"; uninterruptible
 *                             outside any wait event: a page fault reading the disk, "io").
 *                             On the next side, the span's time goes to that class and event
 *
 * (On this project's test machine a read from disk is mostly the kernel's CPU work: the
 * virtual disk answers before the reader sleeps. Counting only off-CPU time as I/O would
 * call it CPU.)
 *
 * A statement's breakdown is reset when it begins (the CPU total is a snapshot then) and
 * copied into its event when it ends, for slow statements only: on CPU plus each off-CPU
 * class is the statement's duration.
 *
 * With DBP_WAITS_PROFILE, every span off CPU or in a file call of a followed thread, inside
 * a statement or not, is also summed per wait event in waits_profile, for the whole-server
 * profile.
 *
 * Without DBP_WITH_BREAKDOWN the functions below do nothing and nothing is attached.
 */
#ifndef DBPROBE_WAITS_H
#define DBPROBE_WAITS_H

#include "dbprobe.h"

#define WAITS_TASK_RUNNING 0         /* task states as the sched_switch record gives them */
#define WAITS_TASK_UNINTERRUPTIBLE 0x2
#define WAITS_TASK_PREEMPTED 0x100   /* the sched_switch record's "preempted" bit */

#define WAITS_IN_READ 1
#define WAITS_IN_WRITE 2

/* wait_event_info classes (utils/wait_event.h): the top byte */
#define WAITS_PG_LWLOCK 0x01
#define WAITS_PG_LOCK 0x03
#define WAITS_PG_CLIENT 0x06
#define WAITS_PG_IO 0x0A

#ifdef DBP_WITH_BREAKDOWN

struct waits_thread {
	u64 wait_at;                /* PostgreSQL: where the backend's wait_event_info is; 0: none */
	u64 on_since;               /* when it went on CPU */
	u64 off_since;              /* when it went off CPU; 0 while it runs */
	u64 cpu_ns;                 /* on CPU, spans that ended */
	u64 cpu_at_start;           /* on CPU until its statement began */
	u64 syscall_since;
	u32 syscall_event;          /* wait_event_info as the read or write began */
	u32 off_event;              /* wait_event_info as it went off CPU */
	u8 off_class;               /* enum dbp_off_class */
	u8 in_syscall;              /* WAITS_IN_READ, WAITS_IN_WRITE, 0 */
	u8 reserved[2];
	u32 leader;                 /* a parallel worker: its leader's thread; 0 otherwise */
	struct dbp_breakdown statement;   /* since the statement began; cpu_ns filled at its end */
};

/* An LRU: a thread that exits leaves its slot to be evicted; one that reuses its id is
 * followed (its spans stay consistent) until then. */
BPF_TABLE("lru_hash", u32, struct waits_thread, waits_threads, 16384);

struct waits_profile_value {
	u64 count;
	u64 ns;
};

#ifdef DBP_WAITS_PROFILE
/* Key: the wait_event_info; a span outside any wait event is keyed 0xff000000 | its class. */
BPF_PERCPU_HASH(waits_profile, u32, struct waits_profile_value, 4096);
#endif


static __always_inline u32 waits_tid(void)
{
	return (u32)bpf_get_current_pid_tgid();
}

static __always_inline u8 waits_class(u32 event, u32 prev_state, bool preempted)
{
	if (preempted)
		return DBP_OFF_RUNQ;
	switch (event >> 24) {
	case WAITS_PG_IO:
		return DBP_OFF_IO;
	case WAITS_PG_LOCK:
		return DBP_OFF_LOCK;
	case WAITS_PG_LWLOCK:
		return DBP_OFF_LWLOCK;
	case WAITS_PG_CLIENT:
		return DBP_OFF_CLIENT;
	case 0:
		/* uninterruptible outside any wait event: a page fault reading from disk */
		return prev_state & WAITS_TASK_UNINTERRUPTIBLE ? DBP_OFF_IO : DBP_OFF_OTHER;
	default:
		return DBP_OFF_OTHER;
	}
}

static __always_inline void waits_count_event(struct dbp_breakdown *b, u32 event, u64 ns)
{
	u32 used = b->events;
#pragma unroll
	for (int i = 0; i < DBP_WAIT_EVENTS; i++) {
		if (i < used && b->wait[i].event == event) {
			b->wait[i].count += 1;
			b->wait[i].ns += ns;
			return;
		}
	}
	if (used < DBP_WAIT_EVENTS - 1) {
		b->wait[used].event = event;
		b->wait[used].count = 1;
		b->wait[used].ns = ns;
		b->events = used + 1;
		return;
	}
	/* The last entry gathers the events that found no place. */
	b->wait[DBP_WAIT_EVENTS - 1].event = DBP_WAIT_EVENT_MORE;
	b->wait[DBP_WAIT_EVENTS - 1].count += 1;
	b->wait[DBP_WAIT_EVENTS - 1].ns += ns;
	b->events = DBP_WAIT_EVENTS;
}

static __always_inline void waits_profile_add(u32 key, u64 ns)
{
#ifdef DBP_WAITS_PROFILE
	struct waits_profile_value zero = {}, *sum;
	sum = waits_profile.lookup_or_try_init(&key, &zero);
	if (sum) {
		sum->count += 1;
		sum->ns += ns;
	}
#endif
}

/* Inside a file read or write the CPU span is already closed (waits_syscall_enter), and the
 * whole call, on or off CPU, is counted when it returns. */
/* A parallel worker's time is also its leader's statement's, apart from the leader's own. */
static __always_inline struct dbp_breakdown *waits_leader_statement(const struct waits_thread *t)
{
	u32 leader = t->leader;
	if (!leader)
		return 0;
	struct waits_thread *l = waits_threads.lookup(&leader);
	return l ? &l->statement : 0;
}

static __always_inline void waits_switched_out(struct waits_thread *t, u64 now, u32 prev_state,
					       bool preempted)
{
	u32 event = 0;
	t->off_since = now;
	if (t->in_syscall)
		return;
	t->cpu_ns += now - t->on_since;
	struct dbp_breakdown *leader = waits_leader_statement(t);
	if (leader)
		__sync_fetch_and_add(&leader->workers_cpu_ns, now - t->on_since);
	if (t->wait_at && !preempted)
		bpf_probe_read_user(&event, sizeof(event), (void *)t->wait_at);
	t->off_event = event;
	t->off_class = waits_class(event, prev_state, preempted);
}

static __always_inline void waits_switched_in(struct waits_thread *t, u64 now)
{
	u64 off = t->off_since ? now - t->off_since : 0;
	u8 klass = t->off_class < DBP_OFF_CLASSES ? t->off_class : DBP_OFF_OTHER;
	t->on_since = now;
	if (!t->off_since)
		return;
	t->off_since = 0;
	if (t->in_syscall)
		return;
	t->statement.off_ns[klass] += off;
	struct dbp_breakdown *leader = klass == DBP_OFF_IO ? waits_leader_statement(t) : 0;
	if (leader)
		__sync_fetch_and_add(&leader->workers_io_ns, off);
	if (t->off_event)
		waits_count_event(&t->statement, t->off_event, off);
	waits_profile_add(t->off_event ? t->off_event : 0xff000000U | klass, off);
}

static __always_inline void waits_switch(u64 now, u32 prev_state, bool preempted, u32 next_tid)
{
	u32 tid = waits_tid();      /* prev: still current */
	struct waits_thread *t = waits_threads.lookup(&tid);
	if (t)
		waits_switched_out(t, now, prev_state, preempted);
	if (!next_tid)
		return;
	t = waits_threads.lookup(&next_tid);
	if (t)
		waits_switched_in(t, now);
}

#ifdef DBP_TASK_PID_OFFSET
/*
 * The raw tracepoint: TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct
 * *next, unsigned int prev_state). The next task's pid is read at its offset in the running
 * kernel's task_struct, which user space takes from the kernel's BTF (the headers BCC
 * compiles against need not be the running kernel's). A raw tracepoint's program is never
 * skipped because another BPF program runs on the CPU, as a perf tracepoint's is (a uprobe
 * program preempted there): a switch missed would merge an off-CPU span into a CPU one.
 */
RAW_TRACEPOINT_PROBE(sched_switch)
{
	u32 next_tid = 0;
	bpf_probe_read_kernel(&next_tid, sizeof(next_tid),
			      (void *)(ctx->args[2] + DBP_TASK_PID_OFFSET));
	u32 state = (u32)ctx->args[3];
	waits_switch(bpf_ktime_get_ns(), state, ctx->args[0] || state == WAITS_TASK_RUNNING,
		     next_tid);
	return 0;
}
#else
/* The tracepoint's record, whose format is the running kernel's. Its prev_state is 0
 * (WAITS_TASK_RUNNING) for a task still runnable, and WAITS_TASK_PREEMPTED for one that
 * was preempted. */
TRACEPOINT_PROBE(sched, sched_switch)
{
	u32 state = args->prev_state;
	bool preempted = (state & (WAITS_TASK_PREEMPTED - 1)) == 0 || (state & WAITS_TASK_PREEMPTED);
	waits_switch(bpf_ktime_get_ns(), state, preempted, args->next_pid);
	return 0;
}
#endif

/* A file read or write begins: the CPU span ends, and the call's whole time is I/O, in the
 * wait event the server set for it (PostgreSQL sets IO:DataFileRead around a pread). */
static __always_inline void waits_syscall_enter(u8 kind)
{
	u32 tid = waits_tid();
	struct waits_thread *t = waits_threads.lookup(&tid);
	u32 event = 0;
	if (!t)
		return;
	u64 now = bpf_ktime_get_ns();
	t->cpu_ns += now - t->on_since;
	t->in_syscall = kind;
	t->syscall_since = now;
	if (t->wait_at)
		bpf_probe_read_user(&event, sizeof(event), (void *)t->wait_at);
	t->syscall_event = event;
}

static __always_inline void waits_syscall_exit(long ret)
{
	u32 tid = waits_tid();
	struct waits_thread *t = waits_threads.lookup(&tid);
	if (!t || !t->in_syscall)
		return;
	u64 now = bpf_ktime_get_ns();
	u64 took = now - t->syscall_since;
	u64 bytes = ret > 0 ? ret : 0;
	if (t->in_syscall == WAITS_IN_READ) {
		t->statement.reads += 1;
		t->statement.read_ns += took;
		t->statement.read_bytes += bytes;
	} else {
		t->statement.writes += 1;
		t->statement.write_ns += took;
		t->statement.write_bytes += bytes;
	}
	t->statement.off_ns[DBP_OFF_IO] += took;
	struct dbp_breakdown *leader = waits_leader_statement(t);
	if (leader) {
		__sync_fetch_and_add(&leader->workers_io_ns, took);
		if (t->in_syscall == WAITS_IN_READ)
			__sync_fetch_and_add(&leader->workers_read_bytes, bytes);
	}
	if (t->syscall_event)
		waits_count_event(&t->statement, t->syscall_event, took);
	waits_profile_add(t->syscall_event ? t->syscall_event : 0xff000000U | DBP_OFF_IO, took);
	t->in_syscall = 0;
	t->on_since = now;
}

#define WAITS_SYSCALL(name, kind)                                  \
	TRACEPOINT_PROBE(syscalls, sys_enter_##name)               \
	{                                                          \
		waits_syscall_enter(kind);                         \
		return 0;                                          \
	}                                                          \
	TRACEPOINT_PROBE(syscalls, sys_exit_##name)                \
	{                                                          \
		waits_syscall_exit(args->ret);                     \
		return 0;                                          \
	}

WAITS_SYSCALL(read, WAITS_IN_READ)
WAITS_SYSCALL(pread64, WAITS_IN_READ)
WAITS_SYSCALL(readv, WAITS_IN_READ)
WAITS_SYSCALL(preadv, WAITS_IN_READ)
WAITS_SYSCALL(write, WAITS_IN_WRITE)
WAITS_SYSCALL(pwrite64, WAITS_IN_WRITE)
WAITS_SYSCALL(writev, WAITS_IN_WRITE)
WAITS_SYSCALL(pwritev, WAITS_IN_WRITE)

/* The current thread's slot, made for it (on CPU since now) if it has none. */
static __always_inline struct waits_thread *waits_follow(u32 tid, u64 now)
{
	struct waits_thread *t = waits_threads.lookup(&tid);
	const void *fresh;
	if (t || !(fresh = dbp_new_slot(sizeof(*t))))
		return t;
	t = waits_threads.lookup_or_try_init(&tid, fresh);
	if (t)
		t->on_since = now;
	return t;
}

/* A statement begins on the current thread, which is on CPU: its breakdown starts at 0. */
static __always_inline void waits_statement_begins(u64 now)
{
	struct waits_thread *t = waits_follow(waits_tid(), now);
	if (!t)
		return;
	t->cpu_at_start = t->cpu_ns + (now - t->on_since);
	__builtin_memset(&t->statement, 0, sizeof(t->statement));
}

/* PostgreSQL: where the backend keeps its wait_event_info (the value of the global
 * my_wait_event_info, argument 0), learned once per backend at an activity report. */
static __always_inline int pg_wait_storage(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	u32 tid = waits_tid();
	struct waits_thread *t = waits_threads.lookup(&tid);
	if (t && !t->wait_at)
		t->wait_at = dbp_arg(args, 0);
	return 0;
}

/* PostgreSQL: a parallel worker learns its leader (pq_set_parallel_leader, argument 0: the
 * leader's pid, which is its thread's). The worker is followed from here, for the leader's
 * current statement. */
static __always_inline int pg_parallel_leader(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	u32 leader = (u32)dbp_arg(args, 0);
	struct waits_thread *t = waits_follow(waits_tid(), bpf_ktime_get_ns());
	if (!t || !leader)
		return 0;
	t->leader = leader;
	struct dbp_breakdown *statement = waits_leader_statement(t);
	if (statement)
		__sync_fetch_and_add(&statement->workers, 1);
	return 0;
}

/* The statement of the current thread ended: its breakdown into its event. */
static __always_inline void waits_fill(struct dbp_query_event *ev)
{
	u32 tid = waits_tid();
	struct waits_thread *t = waits_threads.lookup(&tid);
	if (!t)
		return;
	t->statement.cpu_ns = t->cpu_ns + (bpf_ktime_get_ns() - t->on_since) - t->cpu_at_start;
	ev->breakdown = t->statement;
	ev->flags |= DBP_QF_BREAKDOWN;
}

/* The statement of the current thread ends: its parts, for its class's sums (classes.h). */
static __always_inline void waits_statement_time(struct dbp_class_time *time,
						 struct dbp_class_job_waits *waits)
{
	u32 tid = waits_tid();
	struct waits_thread *t = waits_threads.lookup(&tid);
	if (!t) {
		__builtin_memset(time, 0, sizeof(*time));
		waits->events = 0;
		return;
	}
	const struct dbp_breakdown *s = &t->statement;
	time->statements = 1;
	time->cpu_ns = t->cpu_ns + (bpf_ktime_get_ns() - t->on_since) - t->cpu_at_start;
#pragma unroll
	for (int i = 0; i < DBP_OFF_CLASSES; i++)
		time->off_ns[i] = s->off_ns[i];
	time->reads = s->reads;
	time->read_bytes = s->read_bytes;
	time->read_ns = s->read_ns;
	time->writes = s->writes;
	time->write_bytes = s->write_bytes;
	time->write_ns = s->write_ns;
	time->workers = s->workers;
	time->workers_cpu_ns = s->workers_cpu_ns;
	time->workers_io_ns = s->workers_io_ns;
	time->workers_read_bytes = s->workers_read_bytes;
	waits->events = s->events;
	if (s->events)   /* most statements wait in no event: nothing to copy */
		__builtin_memcpy(waits->wait, s->wait, sizeof(waits->wait));
}

#else /* !DBP_WITH_BREAKDOWN */

static __always_inline void waits_statement_begins(u64 now) {}
static __always_inline void waits_fill(struct dbp_query_event *ev) {}
static __always_inline int pg_wait_storage(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	return 0;
}
static __always_inline int pg_parallel_leader(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	return 0;
}

#endif /* DBP_WITH_BREAKDOWN */

#endif /* DBPROBE_WAITS_H */
