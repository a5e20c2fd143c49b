/*
 * postgresql.h: a PostgreSQL backend's activity, the site every PostgreSQL family reads.
 *
 * The site is pgstat_report_activity(BackendState state, const char *cmd_str), the function
 * whose first line is the statement__status probe. A backend calls it when a statement
 * starts running (with its text) and when it goes idle (NULL), with the state it goes idle
 * in: idle, idle in transaction, or idle in a failed transaction. Its arguments are read at
 * the function's entry rather than at the probe, which passes the text alone: the state
 * says where transactions end, with no probe on every transaction's start and commit.
 *
 *   pg_activity(state, text, database, proc, lxid_at, backend)
 *       state and text: the function's arguments; database: the global MyDatabaseId;
 *       proc: the global MyProc (the backend's PGPROC, in shared memory); lxid_at: where
 *       PGPROC keeps the local transaction id in this server version, 0 when unknown;
 *       backend: the backend id (MyBackendId, MyProcNumber from 17). A family that does
 *       not need the last ones leaves them out of its recipe (a prefix of the arguments).
 *       The globals are read only when needed (args.h): the database when a statement
 *       begins, the others when a transaction goes idle in transaction or is sent.
 *
 * Each family that shares the site adds its part to the one program run per report, and
 * one slot per backend keeps the current or last statement (start, end, database, text
 * copied once when it begins) and each family's state:
 *   query (postgresql_query.bpf.c): the statement's duration; the slot's event is sent
 *          as it is when the statement is slow;
 *   locks (postgresql_locks.bpf.c): a waiter's statement and its blockers' last ones;
 *   txn   (postgresql_txn.bpf.c): transactions from the states the backend goes idle in.
 *
 * Statement boundaries. A client sends a statement as one simple Query, or as extended
 * protocol messages: Parse (the text), Bind (a portal of a parsed statement), Describe,
 * Execute (runs a portal, perhaps for a limited number of rows), repeated for as many
 * statements as it pipelines, then one Sync. The server reports an activity with the text
 * at the start of each Query, Parse, Bind and Execute, none at Describe, Close or Flush,
 * and goes idle at Sync (and after each Query). Every execution of a portal ends with
 * PortalRun returning (the query__execute__done probe, or a return probe on PortalRun):
 *
 *   simple Query       Q(a) ~~~~~~~~~~~~run~~~~~~~~~~~~| ..................... idle
 *   one statement      P(a) B(a) D E(a) ~~~~~run~~~~~| ....................... idle at Sync
 *   pipeline           P(a) B(a) E(a) ~run~| P(b) B(b) E(b) ~run~| B(a) E(a) ~run~| idle
 *   cursor, 3 fetches  B(c) E(c,10) ~run~| idle  E(c,10) ~run~| idle  E(c) ~run~| idle
 *
 * A statement begins at the first report after idle or after the previous statement's
 * execution; its text is its Execute's (the report before the execution). Once it ran,
 * the next report begins the next statement, and the statement ended when its last
 * execution did (pg_executed). The last one before idle ends at idle, so that what the
 * server does at Sync, such as the commit of the implicit transaction, is in it, as it is
 * in a simple Query: what the client waits for. Each Execute is a statement, also the
 * next fetch of a portal. Reports that lead to no execution (a Parse alone, as a driver
 * that prepares sends it) end at idle as no statement. A statement also ends in error
 * recovery (a failure or a cancel; DBP_QF_ERROR): an error in a pipeline makes the server
 * skip to the Sync, and the skipped messages report nothing.
 *
 * A simple query's text is freed before the backend reports idle, and an Execute's at the
 * next message, so a statement's text is copied into the slot when it begins, and again
 * when it was not its first report that named the statement executed.
 */
#ifndef DBPROBE_POSTGRESQL_H
#define DBPROBE_POSTGRESQL_H

#include "dbprobe.h"

/* enum BackendState (utils/backend_status.h), the same since 9.2 */
#define PG_STATE_UNDEFINED 0
#define PG_STATE_IDLE 1
#define PG_STATE_RUNNING 2
#define PG_STATE_IDLE_IN_TRANSACTION 3
#define PG_STATE_FASTPATH 4
#define PG_STATE_IDLE_IN_FAILED_TRANSACTION 5

/* pg_activity's arguments */
#define PG_ARG_STATE 0
#define PG_ARG_TEXT 1
#define PG_ARG_DATABASE 2
#define PG_ARG_PROC 3
#define PG_ARG_LXID_AT 4
#define PG_ARG_BACKEND 5

#ifdef DBP_WITH_POSTGRESQL_TXN
struct pg_txn {
	u64 start_ns;               /* 0: no transaction open */
	u64 idle_since;             /* 0: not idle */
	u64 idle_ns;
	u32 lxid;                   /* 0 until seen */
	u32 reserved2;
	u16 statements;
	u8 aborting;
	u8 pad;
	u16 text_len[DBP_TXN_STATEMENTS];
	u16 reserved;
	/* One dimension: BCC's Python mirror of a map value cannot size a two-dimensional array. */
	char text[DBP_TXN_STATEMENTS * DBP_TXN_TEXT_MAX];
};
#endif

struct pg_backend {
	struct dbp_query_event ev;  /* the current or last statement: start, database, text */
	u64 last_text;              /* the pointer the latest report passed */
	u64 end_ns;                 /* when the backend went idle after it; 0 while it runs */
	u64 executed_ns;            /* when its last execution ended; 0 before one */
	u8 active;                  /* a statement runs (or ran, until the next report) */
	u8 reports;                 /* reports since the statement began, up to 255 */
	u8 pipelined;               /* it began after another statement, with no idle between */
	u8 idle_state;              /* the state of the latest idle report; 0 before one */
	u8 waiting;                 /* locks: a heavyweight lock wait is open */
	u8 reserved[3];
	u32 server;                 /* the postmaster's host pid; 0 until known */
	u32 reserved2;
#ifdef DBP_WITH_POSTGRESQL_TXN
	struct pg_txn txn;
#endif
};

BPF_TABLE("lru_hash", u32, struct pg_backend, pg_backends, 4096);

/* A backend is one process of one thread: the thread id is its pid. */
static __always_inline u32 pg_tid(void)
{
	return (u32)bpf_get_current_pid_tgid();
}

static __always_inline struct pg_backend *pg_backend_of(u32 tid)
{
	return pg_backends.lookup(&tid);
}

/* The backend's slot, created when the backend belongs to a traced server. */
static __always_inline struct pg_backend *pg_backend_slot(u32 tid)
{
	struct pg_backend *b = pg_backends.lookup(&tid);
	const void *fresh;
	if (b || !(fresh = dbp_new_slot(sizeof(*b))))
		return b;
	return pg_backends.lookup_or_try_init(&tid, fresh);
}

/* A backend that exits gives its slot back: a new process that gets its pid starts afresh.
 * (A raw tracepoint: the MySQL programs' sched_process_exit tracepoint may be loaded too.) */
RAW_TRACEPOINT_PROBE(sched_process_exit)
{
	u32 tid = pg_tid();
	pg_backends.delete(&tid);
	server_of.delete(&tid);
	return 0;
}

/* Each family's part, defined in its own program. */
#ifdef DBP_WITH_POSTGRESQL_QUERY
static __always_inline void pg_query_ended(struct pg_backend *b, u64 now, u8 flags);
static __always_inline void waits_statement_begins(u64 now);   /* waits.h */
#endif
#ifdef DBP_WITH_POSTGRESQL_TXN
static __always_inline void pg_txn_statement_began(struct pg_backend *b, u64 now, const struct dbp_args *args);
static __always_inline void pg_txn_went_idle(struct pg_backend *b, u64 now, const struct dbp_args *args,
					     u16 hook);
#endif

static __always_inline void pg_statement_begins(struct pg_backend *b, u64 now, const struct dbp_args *args,
						u16 hook, u8 pipelined)
{
	dbp_fill_header(&b->ev.hdr, DBP_EV_QUERY, hook);
	b->ev.start_ns = now;
	b->ev.end_ns = 0;
	b->ev.protocol = DBP_PROTO_SIMPLE;
	b->ev.flags = 0;
	u64 text = dbp_arg(args, PG_ARG_TEXT);
	if (!b->ev.database)        /* a backend's database is set once, at its start */
		b->ev.database = dbp_arg(args, PG_ARG_DATABASE);
	b->ev.text_len = dbp_capture_text(b->ev.text, DBP_TEXT_MAX, text, 0, false, &b->ev.flags);
	b->last_text = text;
	b->end_ns = 0;
	b->executed_ns = 0;
	b->active = 1;
	b->reports = 1;
	b->pipelined = pipelined;
#ifdef DBP_WITH_POSTGRESQL_QUERY
	waits_statement_begins(now);
#endif
#ifdef DBP_WITH_POSTGRESQL_TXN
	pg_txn_statement_began(b, now, args);
#endif
}

/* The statement ends `end` (flags: DBP_QF_ERROR in error recovery). One that never ran, a
 * Parse or a Bind alone, is no statement, unless it failed. */
static __always_inline void pg_statement_ends(struct pg_backend *b, u64 end, u8 flags)
{
	b->active = 0;
	if (!b->executed_ns && !(flags & DBP_QF_ERROR))
		return;
#ifdef DBP_WITH_POSTGRESQL_QUERY
	pg_query_ended(b, end, flags);
#endif
}

static __always_inline int pg_activity(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	u64 text = dbp_arg(args, PG_ARG_TEXT);
	u32 tid = pg_tid();
	u64 now = bpf_ktime_get_ns();
	struct pg_backend *b;

	if (!text) {
		b = pg_backend_of(tid);
		if (!b)
			return 0;
		if (b->active)
			pg_statement_ends(b, now, 0);
		if (!b->end_ns)
			b->end_ns = now;
		b->idle_state = dbp_arg(args, PG_ARG_STATE);
#ifdef DBP_WITH_POSTGRESQL_TXN
		pg_txn_went_idle(b, now, args, hook);
#endif
		return 0;
	}
	b = pg_backend_slot(tid);
	if (!b)
		return 0;
	if (!b->active) {
		pg_statement_begins(b, now, args, hook, 0);
		return 0;
	}
	if (b->executed_ns) {       /* the next statement of a pipeline */
		pg_statement_ends(b, b->executed_ns, 0);
		pg_statement_begins(b, now, args, hook, 1);
		return 0;
	}
	b->last_text = text;
	if (b->reports < 255)
		b->reports += 1;
	return 0;
}

/*
 * A portal's execution ended (PortalRun returned; also an inner PortalRun, as SQL EXECUTE
 * runs one, or each query of a multi-query portal: the last one is the statement's end).
 * The report before it was its Execute's: when that was not the statement's first report
 * (a Parse or Bind of another statement may come first), the text is read again, while
 * the Execute's copy of it is alive.
 */
static __always_inline int pg_executed(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	struct pg_backend *b = pg_backend_of(pg_tid());
	if (!b || !b->active)
		return 0;
	if (!b->executed_ns && b->reports > 2) {
		b->ev.flags &= ~(DBP_QF_TRUNCATED | DBP_QF_NO_TEXT);
		b->ev.text_len = dbp_capture_text(b->ev.text, DBP_TEXT_MAX, b->last_text, 0, false,
						  &b->ev.flags);
	}
	b->executed_ns = bpf_ktime_get_ns();
	return 0;
}

#endif /* DBPROBE_POSTGRESQL_H */
