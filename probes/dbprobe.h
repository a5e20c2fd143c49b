/*
 * dbprobe.h: the contract between the BPF programs and user space.
 *
 * Every record a program sends to user space starts with struct dbp_header; its `kind`
 * says which struct follows. dbprobe/events.py mirrors these structs once with ctypes:
 * change both together.
 *
 * Compile-time parameters, passed by the loader as -D flags:
 *   DBP_QUERY_THRESHOLD_NS  statements at or over this duration are sent to user space
 *   DBP_TXN_THRESHOLD_NS    transactions at or over this duration are sent to user space
 *   DBP_FILTER_PIDS    when set, only processes in the traced_pids map: user space puts a
 *                      server's processes there, and its new children join at fork
 *   DBP_TASK_PID_OFFSET  where struct task_struct keeps the pid, from the running kernel's
 *                      BTF (its headers may be another version's); unknown: not set
 *   DBP_RINGBUF_PAGES  pages of the ring buffer that carries records to user space; a
 *                      power of two
 *   DBP_WITH_<FAMILY>  set for each report family in the program (DBP_WITH_QUERY, ...), so
 *                      that the handlers of a site shared by several families do each
 *                      family's part in one program run
 *
 * Besides the contract, the helpers every program uses: the pid filter, record headers,
 * submitting to the ring buffer, creating a thread's slot, and copying text from user memory.
 */
#ifndef DBPROBE_H
#define DBPROBE_H

#include <uapi/linux/ptrace.h>

#include "args.h"

#define DBP_TEXT_MAX 2048      /* bytes of statement text captured; a power of two */
#define DBP_HIST_SLOTS 64      /* slot 0: under 1 us; slot k: [2^(k-1), 2^k) us */
#define DBP_LOCK_HOLDERS 8     /* holders of one lock remembered, and sent with a wait */
#define DBP_TXN_STATEMENTS 3   /* statements of a transaction whose text is kept */
#define DBP_TXN_TEXT_MAX 256   /* bytes kept of each; a power of two */

enum dbp_event_kind {
	DBP_EV_QUERY = 1,
	DBP_EV_LOCK_WAIT_START = 2,
	DBP_EV_LOCK_WAIT_DONE = 3,
	DBP_EV_DEADLOCK = 4,
	DBP_EV_TXN = 5,
};

enum dbp_protocol {
	DBP_PROTO_SIMPLE = 0,     /* PostgreSQL simple query / MySQL COM_QUERY */
	DBP_PROTO_EXTENDED = 1,   /* PostgreSQL extended query (Parse/Bind/Execute) */
	DBP_PROTO_PREPARED = 2,   /* MySQL COM_STMT_EXECUTE */
	DBP_PROTOCOLS = 3,
};

enum dbp_query_flags {
	DBP_QF_TRUNCATED = 1,     /* text longer than DBP_TEXT_MAX */
	DBP_QF_ERROR = 2,         /* the statement ended without its done probe: an error or a cancel */
	DBP_QF_NO_TEXT = 4,       /* the text could not be read */
	DBP_QF_BREAKDOWN = 8,     /* the event's breakdown is filled (probes/waits.h) */
};

/*
 * Where a statement's time went (probes/waits.h): on CPU, and off CPU by what the thread
 * waited for; its read and write system calls; PostgreSQL's wait events by their
 * wait_event_info word. The parts add up to the statement's duration.
 */
enum dbp_off_class {
	DBP_OFF_IO = 0,           /* an IO wait event, a file read or write, or disk sleep */
	DBP_OFF_LOCK = 1,         /* a heavyweight lock */
	DBP_OFF_LWLOCK = 2,
	DBP_OFF_CLIENT = 3,       /* reading from or writing to the client */
	DBP_OFF_RUNQ = 4,         /* runnable, waiting for a CPU (preempted) */
	DBP_OFF_OTHER = 5,
};
#define DBP_OFF_CLASSES 6

#define DBP_WAIT_EVENTS 8         /* wait events kept per statement; more share the last */
#define DBP_WAIT_EVENT_MORE 0xffffffffU  /* the event of the entry that gathers the rest */

struct dbp_wait_count {
	u32 event;                /* wait_event_info */
	u32 count;                /* times the thread went off CPU in it */
	u64 ns;                   /* time off CPU in it */
};

struct dbp_breakdown {
	u64 cpu_ns;
	u64 off_ns[DBP_OFF_CLASSES];
	u64 read_ns;              /* time in read system calls (read, pread64, readv, preadv...) */
	u64 write_ns;
	u64 read_bytes;
	u64 write_bytes;
	u32 reads;
	u32 writes;
	u32 events;               /* entries of wait[] used */
	u32 reserved;
	struct dbp_wait_count wait[DBP_WAIT_EVENTS];
	/* PostgreSQL's parallel workers, processes of their own, for the leader's statement */
	u64 workers;              /* workers that joined it */
	u64 workers_cpu_ns;
	u64 workers_io_ns;        /* in file calls, or asleep on the disk */
	u64 workers_read_bytes;
};

/* Per-CPU totals; user space sums the CPUs. */
struct dbp_totals {
	u64 queries;              /* statements completed, whatever their duration */
	u64 query_ns;             /* their summed duration */
	u64 emitted;              /* records handed to the ring buffer */
	u64 lost;                 /* records dropped because the ring buffer was full */
	u64 slow;                 /* statements at or over the query threshold, sent or lost */
};

struct dbp_header {
	u32 kind;
	u32 pid;                  /* tgid, as the host sees it */
	u32 tid;
	u16 hook;                 /* index of the attached hook: which binary, usdt or uprobe */
	u16 reserved;
};

struct dbp_query_event {
	struct dbp_header hdr;
	u64 start_ns;             /* CLOCK_MONOTONIC */
	u64 end_ns;
	u8 protocol;
	u8 flags;
	u16 text_len;             /* bytes of text that follow, without a terminating NUL */
	u32 database;             /* PostgreSQL: the backend's database OID; 0 when unknown */
	struct dbp_breakdown breakdown;  /* filled when flags has DBP_QF_BREAKDOWN */
	char text[DBP_TEXT_MAX];  /* last: only text_len bytes of it are sent */
};

/*
 * A heavyweight lock wait starts or ends. The lock is PostgreSQL's LOCKTAG (four id fields
 * and a type, whose meaning depends on the type and the server version). The waiter's
 * statement is read in its own process; the holders are the backends dbprobe saw take the
 * lock in their current transaction (or for their session), as the wait began.
 */
struct dbp_lock_holder {
	u32 pid;
	u16 modes;                /* bit n: lock mode n held */
	u8 session;               /* a session lock, held across transactions */
	u8 reserved;
};

#define DBP_LOCK_WAIT_FAILED 1  /* the wait ended in an error: the deadlock victim */

struct dbp_lock_event {
	struct dbp_header hdr;
	u64 ts_ns;
	u32 field1;
	u32 field2;
	u32 field3;
	u16 field4;
	u8 locktype;
	u8 mode;
	u8 holders;               /* entries used in holder[] */
	u8 flags;                 /* DBP_LOCK_WAIT_FAILED */
	u16 text_len;
	u32 reserved;
	struct dbp_lock_holder holder[DBP_LOCK_HOLDERS];
	char text[DBP_TEXT_MAX];  /* the waiter's statement (wait start only) */
};

enum dbp_txn_outcome {
	DBP_TXN_COMMIT = 0,
	DBP_TXN_ABORT = 1,
};

struct dbp_txn_event {
	struct dbp_header hdr;
	u64 start_ns;
	u64 end_ns;
	u64 idle_ns;              /* time idle in transaction: between its statements */
	u32 backend_id;           /* the virtual transaction id is backend_id/lxid */
	u32 lxid;                 /* the backend's local transaction id; 0 when unknown */
	u16 statements;
	u8 outcome;
	u8 flags;
	u16 text_len[DBP_TXN_STATEMENTS];
	u16 reserved;
	char text[DBP_TXN_STATEMENTS][DBP_TXN_TEXT_MAX];
};

#ifndef DBP_RINGBUF_PAGES
#define DBP_RINGBUF_PAGES 2048   /* 8 MiB of 4 KiB pages */
#endif

#define DBP_SLOT_MAX 4096        /* bytes of the largest per-thread slot a program keeps */

BPF_RINGBUF_OUTPUT(events, DBP_RINGBUF_PAGES);
BPF_PERCPU_ARRAY(totals, struct dbp_totals, 1);
struct dbp_zero_block {
	char bytes[DBP_SLOT_MAX];
};

/* Zeroes that new slots are created from: slots are too big for the BPF stack. */
BPF_PERCPU_ARRAY(dbp_zeroes, struct dbp_zero_block, 1);

static __always_inline struct dbp_totals *dbp_totals(void)
{
	u32 zero = 0;
	return totals.lookup(&zero);
}

#ifdef DBP_FILTER_PIDS
BPF_TABLE("lru_hash", u32, u8, traced_pids, 65536);
#endif

/*
 * The server each process belongs to (the host pid of a PostgreSQL postmaster), for
 * counts kept per server: user space puts the servers' processes there as it attaches,
 * and a new process joins its parent's server at fork.
 */
BPF_TABLE("lru_hash", u32, u32, server_of, 65536);

/* A process forked `child`: it joins its parent's server, and the traced processes. */
static __always_inline void dbp_forked(u32 parent, u32 child)
{
	u32 *server = server_of.lookup(&parent);
	if (server) {
		u32 value = *server;
		server_of.update(&child, &value);
	}
#ifdef DBP_FILTER_PIDS
	if (traced_pids.lookup(&parent)) {
		u8 yes = 1;
		traced_pids.update(&child, &yes);
	}
#endif
}

#ifdef DBP_TASK_PID_OFFSET
/* A raw tracepoint, which holds no perf event: its arguments are the parent (the task that
 * runs it) and the child, whose pid is at the offset the running kernel's BTF gives. */
RAW_TRACEPOINT_PROBE(sched_process_fork)
{
	u32 child = 0;
	bpf_probe_read_kernel(&child, sizeof(child), (void *)(ctx->args[1] + DBP_TASK_PID_OFFSET));
	dbp_forked((u32)bpf_get_current_pid_tgid(), child);
	return 0;
}
#else
TRACEPOINT_PROBE(sched, sched_process_fork)
{
	dbp_forked(args->parent_pid, args->child_pid);
	return 0;
}
#endif

/* The server of the current process; 0 when unknown (started before user space saw it). */
static __always_inline u32 dbp_server_of_current(void)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	u32 *server = server_of.lookup(&tgid);
	return server ? *server : 0;
}

/* Whether a process belongs to the servers being traced (all of them, without -p). */
static __always_inline bool dbp_pid_wanted(u32 tgid)
{
#ifdef DBP_FILTER_PIDS
	return traced_pids.lookup(&tgid) != 0;
#else
	return true;
#endif
}

/*
 * What a new slot of the current thread starts as, in the manner of libbpf-tools'
 * bpf_map_lookup_or_try_init: NULL when the thread is not one to trace. A program's slot
 * lookup is then one line: map.lookup(&key), or map.lookup_or_try_init(&key, this).
 * (BCC accepts map operations only in plain code, not in a macro or through a pointer.)
 */
static __always_inline const void *dbp_new_slot(u32 size)
{
	u32 zero = 0;
	if (size > DBP_SLOT_MAX || !dbp_pid_wanted(bpf_get_current_pid_tgid() >> 32))
		return 0;
	return dbp_zeroes.lookup(&zero);
}

static __always_inline void dbp_fill_header(struct dbp_header *hdr, u32 kind, u16 hook)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	hdr->kind = kind;
	hdr->pid = pid_tgid >> 32;
	hdr->tid = (u32)pid_tgid;
	hdr->hook = hook;
	hdr->reserved = 0;
}

/* Hand `size` bytes of `record` to user space; a full ring buffer is counted, never silent. */
static __always_inline void dbp_submit(void *record, u32 size)
{
	int failed = events.ringbuf_output(record, size, 0);
	struct dbp_totals *t = dbp_totals();
	if (!t)
		return;
	if (failed)
		t->lost += 1;
	else
		t->emitted += 1;
}

/*
 * Copy text at `src` (user memory of the current process) into `dst`, which holds
 * `capacity` bytes (a constant, so the verifier sees every length bounded): `len` bytes
 * when `sized` (MySQL packets are not NUL-terminated), else a C string, without its NUL.
 * Returns the bytes copied; sets DBP_QF_TRUNCATED or DBP_QF_NO_TEXT in *flags. `len` is a
 * u64 so that the verifier sees the bound checked on the very register passed on.
 */
static __always_inline u32 dbp_capture_text(char *dst, const u32 capacity, u64 src, u64 len,
					    bool sized, u8 *flags)
{
	long copied;

	if (!src) {
		*flags |= DBP_QF_NO_TEXT;
		return 0;
	}
	if (sized) {
		if (len > capacity) {
			len = capacity;
			*flags |= DBP_QF_TRUNCATED;
		}
		if (bpf_probe_read_user(dst, len, (void *)src) != 0) {
			*flags |= DBP_QF_NO_TEXT;
			return 0;
		}
		return len;
	}
	copied = bpf_probe_read_user_str(dst, capacity, (void *)src);
	if (copied <= 0) {
		*flags |= DBP_QF_NO_TEXT;
		return 0;
	}
	if (copied == capacity)
		*flags |= DBP_QF_TRUNCATED;
	return copied - 1;
}

/* The duration of a span as a histogram slot: slot 0 under 1 us, slot k [2^(k-1), 2^k) us. */
static __always_inline u32 dbp_hist_slot(u64 duration_ns)
{
	u64 us = duration_ns / 1000;
	u32 slot = us ? bpf_log2l(us) : 0;
	return slot < DBP_HIST_SLOTS ? slot : DBP_HIST_SLOTS - 1;
}

#endif /* DBPROBE_H */
