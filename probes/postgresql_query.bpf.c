/*
 * postgresql_query.bpf.c: statement timing for PostgreSQL, both protocols.
 *
 * A backend's statement goes through these hooks (see probes/postgresql.toml for the
 * probe or function behind each one):
 *
 *   pg_activity(text, database)  the backend reports a new activity: a statement's text
 *                          when it starts running (Parse, Bind, Execute, simple Query), NULL
 *                          when it goes idle (before ReadyForQuery); its database OID
 *   pg_simple_start(text, database)  a simple-protocol query starts (USDT query__start)
 *   pg_portal_start_dest(dest_kind)  a portal starts, its destination telling the protocol
 *                          (uprobe PortalRun, for builds without USDT)
 *   pg_portal_done()       a portal ends executing   (USDT query__execute__done,
 *                                                       uretprobe PortalRun)
 *   pg_error()             error recovery aborts the transaction (AbortCurrentTransaction)
 *
 * A simple query runs from its start to the backend going idle. The extended protocol has
 * no start/done probes (this is why dbslower cannot see it): an extended statement is
 * timed from the first activity report after idle (its Parse or Bind) to the end of its
 * portal run, and named by the text of that report. A statement running when error
 * recovery starts failed or was cancelled (statement_timeout): it is reported then, with
 * DBP_QF_ERROR, while its text is still in memory.
 *
 * Every probe costs a trap on every statement, so the set is the smallest that tells the
 * protocols apart: four per simple query, four per prepared execution.
 */
#include "query.h"

enum pg_mode {
	PG_IDLE = 0,
	PG_PENDING,         /* a statement was reported; with USDT, an extended one runs */
	PG_SIMPLE,          /* a simple query: it ends when the backend goes idle */
	PG_EXTENDED,        /* an extended statement's portal runs (uprobe recipe) */
};

/* PostgreSQL's CommandDest values that tell the protocol of a portal run. */
#define PG_DEST_REMOTE_EXECUTE 3

struct pg_statement {
	u64 start_ns;
	u64 text;           /* pointer into the backend's memory */
	u32 database;       /* OID */
	u16 hook;
	u8 mode;
	u8 depth;           /* portal runs nested in an extended statement (uprobe recipe) */
};

BPF_TABLE("lru_hash", u32, struct pg_statement, pg_statements, 16384);

/*
 * A simple query ends when the backend goes idle, after its text has been freed. One that
 * is already slow when its portal returns has its event prepared then, text included, and
 * sent from here at idle.
 */
BPF_F_TABLE("hash", u32, struct dbp_query_event, pg_prepared_events, 1024, BPF_F_NO_PREALLOC);

static __always_inline u32 pg_tid(void)
{
	return (u32)bpf_get_current_pid_tgid();
}

/* The backend's statement slot, created when the backend belongs to a traced server. */
static __always_inline struct pg_statement *pg_statement_slot(u32 tid)
{
	struct pg_statement *st = pg_statements.lookup(&tid);
	if (st)
		return st;
	if (!dbp_pid_wanted(bpf_get_current_pid_tgid() >> 32))
		return 0;
	struct pg_statement fresh = {};
	pg_statements.update(&tid, &fresh);
	return pg_statements.lookup(&tid);
}

static __always_inline void pg_begin(struct pg_statement *st, const u64 *args, u16 hook, u8 mode)
{
	st->start_ns = bpf_ktime_get_ns();
	st->text = args[0];
	st->database = args[1];
	st->hook = hook;
	st->mode = mode;
	st->depth = 0;
}

static __always_inline void pg_finish_extended(struct pg_statement *st, u8 flags)
{
	dbp_query_done(st->start_ns, st->text, 0, st->hook, DBP_PROTO_EXTENDED, flags, st->database);
	st->mode = PG_IDLE;
	st->depth = 0;
}

static __always_inline void pg_prepare_slow_event(u32 tid, struct pg_statement *st)
{
	u32 zero = 0;
	if (bpf_ktime_get_ns() - st->start_ns < DBP_QUERY_THRESHOLD_NS || pg_prepared_events.lookup(&tid))
		return;
	struct dbp_query_event *ev = query_scratch.lookup(&zero);
	if (!ev)
		return;
	dbp_fill_event(ev, st->start_ns, 0, st->text, 0, st->hook, DBP_PROTO_SIMPLE, 0);
	ev->database = st->database;
	pg_prepared_events.update(&tid, ev);
}

/*
 * The end of a simple query: at idle its text is only in a prepared event; in error
 * recovery it is still in the backend's memory.
 */
static __always_inline void pg_finish_simple(u32 tid, struct pg_statement *st, u8 flags,
					     bool text_alive)
{
	u64 now = bpf_ktime_get_ns();
	u64 duration = now - st->start_ns;
	struct dbp_query_event *ev = pg_prepared_events.lookup(&tid);

	dbp_count_query(DBP_PROTO_SIMPLE, duration);
	if (duration >= DBP_QUERY_THRESHOLD_NS) {
		if (ev && !text_alive) {
			ev->end_ns = now;
			ev->flags |= flags;
			dbp_submit(ev, dbp_event_size(ev));
		} else {
			dbp_emit_query(st->start_ns, now, text_alive ? st->text : 0, 0, st->hook,
				       DBP_PROTO_SIMPLE, flags, st->database);
		}
	}
	if (ev)
		pg_prepared_events.delete(&tid);
	st->mode = PG_IDLE;
	st->depth = 0;
}

static __always_inline int pg_activity(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u64 text = args[0];
	u32 tid = pg_tid();
	struct pg_statement *st;

	if (!text) {
		st = pg_statements.lookup(&tid);
		if (!st)
			return 0;
		if (st->mode == PG_SIMPLE)
			pg_finish_simple(tid, st, 0, false);
		st->mode = PG_IDLE;     /* a Parse or Bind that never executed ends here too */
		return 0;
	}
	st = pg_statement_slot(tid);
	if (!st)
		return 0;
	if (st->mode == PG_IDLE)
		pg_begin(st, args, hook, PG_PENDING);
	else if (st->mode == PG_PENDING)
		st->text = text;    /* the Bind or Execute of the statement reported by Parse */
	return 0;
}

static __always_inline int pg_simple_start(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	struct pg_statement *st = pg_statement_slot(pg_tid());
	if (st)
		pg_begin(st, args, hook, PG_SIMPLE);
	return 0;
}

static __always_inline int pg_portal_start_dest(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u32 tid = pg_tid();
	struct pg_statement *st = pg_statements.lookup(&tid);
	if (!st)
		return 0;
	if (st->mode == PG_PENDING) {
		st->mode = args[0] == PG_DEST_REMOTE_EXECUTE ? PG_EXTENDED : PG_SIMPLE;
		st->depth = 1;
	} else if (st->mode == PG_EXTENDED && st->depth < 255) {
		st->depth += 1;
	}
	return 0;
}

static __always_inline int pg_portal_done(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u32 tid = pg_tid();
	struct pg_statement *st = pg_statements.lookup(&tid);
	if (!st)
		return 0;
	switch (st->mode) {
	case PG_SIMPLE:
		pg_prepare_slow_event(tid, st);
		break;
	case PG_PENDING:    /* USDT: no simple start came, so an extended statement ran */
		pg_finish_extended(st, 0);
		break;
	case PG_EXTENDED:
		if (st->depth > 1)
			st->depth -= 1;
		else
			pg_finish_extended(st, 0);
		break;
	}
	return 0;
}

static __always_inline int pg_error(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u32 tid = pg_tid();
	struct pg_statement *st = pg_statements.lookup(&tid);
	if (!st)
		return 0;
	if (st->mode == PG_SIMPLE)
		pg_finish_simple(tid, st, DBP_QF_ERROR, true);
	else if (st->mode != PG_IDLE)
		pg_finish_extended(st, DBP_QF_ERROR);
	return 0;
}
