/*
 * dbprobe.h: the contract between the BPF programs and user space.
 *
 * Every record a program sends to user space starts with struct dbp_header; its `kind`
 * says which struct follows. dbprobe/events.py mirrors these structs once with ctypes:
 * change both together.
 *
 * Compile-time parameters, passed by the loader as -D flags:
 *   DBP_THRESHOLD_NS   queries at or over this duration are sent to user space
 *   DBP_FILTER_PIDS    when set, only processes in the traced_pids map: user space puts a
 *                      server's processes there, and its new children join at fork
 */
#ifndef DBPROBE_H
#define DBPROBE_H

#include <uapi/linux/ptrace.h>

#define DBP_TEXT_MAX 2048      /* bytes of statement text captured; a power of two */
#define DBP_HIST_SLOTS 64      /* slot 0: under 1 us; slot k: [2^(k-1), 2^k) us */
#define DBP_MAX_ARGS 6         /* arguments a hook handler receives */

enum dbp_event_kind {
	DBP_EV_QUERY = 1,
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
};

/* Per-CPU totals; user space sums the CPUs. */
struct dbp_totals {
	u64 queries;              /* statements completed, whatever their duration */
	u64 query_ns;             /* their summed duration */
	u64 emitted;              /* records handed to the ring buffer */
	u64 lost;                 /* records dropped because the ring buffer was full */
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
	u32 reserved;
	char text[DBP_TEXT_MAX];
};

BPF_RINGBUF_OUTPUT(events, 1 << 11);          /* 2048 pages: 8 MiB */
BPF_PERCPU_ARRAY(totals, struct dbp_totals, 1);
BPF_PERCPU_ARRAY(query_hist, u64, DBP_HIST_SLOTS * DBP_PROTOCOLS);

static __always_inline struct dbp_totals *dbp_totals(void)
{
	u32 zero = 0;
	return totals.lookup(&zero);
}

static __always_inline void dbp_hist_add(u32 protocol, u64 duration_ns)
{
	u64 us = duration_ns / 1000;
	u32 slot = us ? bpf_log2l(us) : 0;
	if (slot >= DBP_HIST_SLOTS)
		slot = DBP_HIST_SLOTS - 1;
	u32 index = protocol * DBP_HIST_SLOTS + slot;
	u64 *value = query_hist.lookup(&index);
	if (value)
		*value += 1;
}

#ifdef DBP_FILTER_PIDS
BPF_TABLE("lru_hash", u32, u8, traced_pids, 65536);

TRACEPOINT_PROBE(sched, sched_process_fork)
{
	u32 parent = args->parent_pid;
	if (traced_pids.lookup(&parent)) {
		u32 child = args->child_pid;
		u8 yes = 1;
		traced_pids.update(&child, &yes);
	}
	return 0;
}
#endif

/* Whether a process belongs to the servers being traced (all of them, without -p). */
static __always_inline bool dbp_pid_wanted(u32 tgid)
{
#ifdef DBP_FILTER_PIDS
	return traced_pids.lookup(&tgid) != 0;
#else
	return true;
#endif
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

#endif /* DBPROBE_H */
