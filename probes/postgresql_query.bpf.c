/*
 * postgresql_query.bpf.c: statement timing for PostgreSQL, both protocols.
 *
 * Hooks (see probes/postgresql.toml for the probe or function behind each one):
 *
 *   pg_activity(text, database)  the backend reports an activity (USDT statement__status,
 *                          or pgstat_report_activity without USDT): a statement's text when
 *                          it starts running, NULL when the backend goes idle (before
 *                          ReadyForQuery); and the backend's database OID
 *   pg_error()             error recovery aborts the transaction (AbortCurrentTransaction)
 *
 * Every probe is a trap on every statement, so statements are timed from the activity
 * reports alone: two per simple query, three per prepared execution. What the server does
 * between two reports tells the protocols apart:
 *
 *   simple Query          Q(text) ................................ idle(NULL)
 *   extended, unnamed     Parse(a) Bind(b) Execute(b) ............ idle at Sync(NULL)
 *   extended, prepared    Bind(b) Execute(b) ..................... idle at Sync(NULL)
 *   pipelined / batched   Bind(b) Execute(b) Bind(c) Execute(c) .. idle at Sync(NULL)
 *
 * A statement begins at the first report after idle. An Execute reports the same text
 * (the portal's) as the Bind before it, so a report that repeats the previous one marks
 * an execution, and the report after an execution begins the next statement of a
 * pipeline. A statement with a single report is a simple query (or an Execute alone, such
 * as a cursor's next fetch). It ends at idle, at the next statement, or in error recovery
 * (a failure or a cancel: reported with DBP_QF_ERROR).
 *
 * A simple query's text is freed before the backend reports idle, so each statement's
 * text is copied into its slot when it begins: the slot is the event that is sent, for the
 * statements at or over the threshold.
 */
#include "query.h"

struct pg_statement {
	struct dbp_query_event ev;  /* start, database, text; sent as is when slow */
	u64 last_text;              /* the pointer the latest report passed */
	u8 active;
	u8 reports;                 /* reports since the statement began, up to 255 */
	u8 executed;                /* a report repeated the previous one: an Execute */
};

BPF_TABLE("lru_hash", u32, struct pg_statement, pg_statements, 4096);
BPF_PERCPU_ARRAY(pg_statement_zero, struct pg_statement, 1);

static __always_inline u32 pg_tid(void)
{
	return (u32)bpf_get_current_pid_tgid();
}

/* The backend's slot, created when the backend belongs to a traced server. */
static __always_inline struct pg_statement *pg_statement_slot(u32 tid)
{
	struct pg_statement *st = pg_statements.lookup(&tid);
	if (st)
		return st;
	u32 zero = 0;
	struct pg_statement *fresh = pg_statement_zero.lookup(&zero);
	if (!fresh || !dbp_pid_wanted(bpf_get_current_pid_tgid() >> 32))
		return 0;
	pg_statements.update(&tid, fresh);
	return pg_statements.lookup(&tid);
}

static __always_inline void pg_begin(struct pg_statement *st, u64 text, u32 database, u16 hook)
{
	dbp_fill_event_head(&st->ev, bpf_ktime_get_ns(), 0, hook, DBP_PROTO_SIMPLE, 0);
	st->ev.database = database;
	dbp_read_text(&st->ev, text, 0);
	st->last_text = text;
	st->active = 1;
	st->reports = 1;
	st->executed = 0;
}

static __always_inline void pg_finish(struct pg_statement *st, u8 flags)
{
	u64 now = bpf_ktime_get_ns();
	u64 duration = now - st->ev.start_ns;
	u8 protocol = st->reports > 1 ? DBP_PROTO_EXTENDED : DBP_PROTO_SIMPLE;

	st->active = 0;
	dbp_count_query(protocol, duration);
	if (duration < DBP_QUERY_THRESHOLD_NS)
		return;
	st->ev.end_ns = now;
	st->ev.protocol = protocol;
	st->ev.flags |= flags;
	dbp_submit(&st->ev, dbp_event_size(&st->ev));
}

static __always_inline int pg_activity(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u64 text = args[0];
	u32 tid = pg_tid();
	struct pg_statement *st;

	if (!text) {
		st = pg_statements.lookup(&tid);
		if (st && st->active)
			pg_finish(st, 0);
		return 0;
	}
	st = pg_statement_slot(tid);
	if (!st)
		return 0;
	if (!st->active) {
		pg_begin(st, text, args[1], hook);
		return 0;
	}
	if (st->executed) {         /* the next statement of a pipeline or batch */
		pg_finish(st, 0);
		pg_begin(st, text, args[1], hook);
		return 0;
	}
	if (text == st->last_text)
		st->executed = 1;
	st->last_text = text;
	if (st->reports < 255)
		st->reports += 1;
	return 0;
}

static __always_inline int pg_error(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u32 tid = pg_tid();
	struct pg_statement *st = pg_statements.lookup(&tid);
	if (st && st->active)
		pg_finish(st, DBP_QF_ERROR);
	return 0;
}
