/*
 * postgresql_query.bpf.c: statement timing for PostgreSQL, both protocols.
 *
 * A backend's statement goes through these hooks (see probes/postgresql.toml for the
 * probe or function behind each one):
 *
 *   pg_activity(text, database)  the backend reports a new activity: a statement's text
 *                          when it starts running (Parse, Bind, Execute, simple Query), NULL
 *                          when it goes idle (ReadyForQuery); its database OID (MyDatabaseId)
 *   pg_simple_start(text, database)  a simple-protocol query starts (USDT query__start)
 *   pg_simple_done()       a simple-protocol query ends         (USDT query__done)
 *   pg_portal_start()      a portal starts executing            (USDT query__execute__start)
 *   pg_portal_start_dest(dest_kind)  same, knowing the portal's destination (uprobe PortalRun)
 *   pg_portal_done()       a portal ends executing              (USDT query__execute__done,
 *                                                                 uretprobe PortalRun)
 *   pg_error()             error recovery aborts the transaction (AbortCurrentTransaction)
 *
 * The simple protocol is timed from query start to query done. The extended protocol has
 * no such probes (this is why dbslower cannot see it): an extended statement is timed from
 * the first activity report after idle (its Parse or Bind) to the end of its top-level
 * portal run, and named by the text of that report. A statement running when error
 * recovery starts failed or was cancelled (statement_timeout): it is reported then, with
 * DBP_QF_ERROR, while its text is still in memory. One still running when the backend goes
 * idle ended the same way unnoticed; it is reported too, without text if that is gone.
 */
#include "query.h"

enum pg_mode {
	PG_IDLE = 0,
	PG_PENDING,         /* a statement was reported, nothing executes yet */
	PG_SIMPLE,          /* inside a simple query (its start probe fired) */
	PG_SIMPLE_AT_IDLE,  /* a simple query known only from its portal; it ends at idle */
	PG_EXTENDED,        /* an extended-protocol portal runs */
};

/* PostgreSQL's CommandDest values that tell the protocol of a portal run. */
#define PG_DEST_REMOTE 2
#define PG_DEST_REMOTE_EXECUTE 3

struct pg_statement {
	u64 start_ns;
	u64 text;           /* pointer into the backend's memory */
	u32 database;       /* OID */
	u16 hook;
	u8 mode;
	u8 depth;           /* portal runs nested under the top-level one */
};

BPF_TABLE("lru_hash", u32, struct pg_statement, pg_statements, 16384);

/*
 * A simple query known only from its portal (uprobe recipe) ends when the backend goes
 * idle, after its text has been freed. One already slow when its portal returns has its
 * event prepared then, text included, and sent from here at idle.
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

static __always_inline void pg_finish(struct pg_statement *st, u8 protocol, u8 flags)
{
	dbp_query_done(st->start_ns, st->text, 0, st->hook, protocol, flags, st->database);
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
 * The end of a simple query of the uprobe recipe: at idle its text is only in a prepared
 * event; in error recovery it is still in the backend's memory.
 */
static __always_inline void pg_finish_portal_simple(u32 tid, struct pg_statement *st, u8 flags,
						    bool text_alive)
{
	u64 now = bpf_ktime_get_ns();
	u64 duration = now - st->start_ns;
	struct dbp_query_event *ev = pg_prepared_events.lookup(&tid);

	dbp_count_query(DBP_PROTO_SIMPLE, duration);
	if (duration >= DBP_QUERY_THRESHOLD_NS) {
		if (ev) {
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

/* A statement that stopped without its done probe: failed, cancelled, or (uprobe recipe) done. */
static __always_inline void pg_finish_interrupted(struct pg_statement *st)
{
	if (st->mode == PG_SIMPLE)
		pg_finish(st, DBP_PROTO_SIMPLE, DBP_QF_ERROR);
	else if (st->mode == PG_EXTENDED)
		pg_finish(st, DBP_PROTO_EXTENDED, DBP_QF_ERROR);
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
		if (st->mode == PG_SIMPLE_AT_IDLE)
			pg_finish_portal_simple(tid, st, 0, false);
		else
			pg_finish_interrupted(st);
		st->mode = PG_IDLE;
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

static __always_inline int pg_simple_done(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u32 tid = pg_tid();
	struct pg_statement *st = pg_statements.lookup(&tid);
	if (st && st->mode == PG_SIMPLE)
		pg_finish(st, DBP_PROTO_SIMPLE, 0);
	return 0;
}

static __always_inline void pg_portal_enter(struct pg_statement *st, u8 top_level_mode)
{
	if (st->mode == PG_PENDING) {
		st->mode = top_level_mode;
		st->depth = 1;
	} else if (st->depth < 255) {
		st->depth += 1;
	}
}

static __always_inline int pg_portal_start(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u32 tid = pg_tid();
	struct pg_statement *st = pg_statements.lookup(&tid);
	if (st)
		pg_portal_enter(st, PG_EXTENDED);
	return 0;
}

static __always_inline int pg_portal_start_dest(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u32 tid = pg_tid();
	struct pg_statement *st = pg_statements.lookup(&tid);
	if (st)
		pg_portal_enter(st, args[0] == PG_DEST_REMOTE_EXECUTE ? PG_EXTENDED : PG_SIMPLE_AT_IDLE);
	return 0;
}

static __always_inline int pg_portal_done(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u32 tid = pg_tid();
	struct pg_statement *st = pg_statements.lookup(&tid);
	if (!st || (st->mode != PG_EXTENDED && st->mode != PG_SIMPLE_AT_IDLE))
		return 0;
	if (st->depth > 1) {
		st->depth -= 1;
		return 0;
	}
	st->depth = 0;
	if (st->mode == PG_EXTENDED)
		pg_finish(st, DBP_PROTO_EXTENDED, 0);
	else
		pg_prepare_slow_event(tid, st);
	return 0;
}

static __always_inline int pg_error(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u32 tid = pg_tid();
	struct pg_statement *st = pg_statements.lookup(&tid);
	if (!st)
		return 0;
	if (st->mode == PG_SIMPLE_AT_IDLE)
		pg_finish_portal_simple(tid, st, DBP_QF_ERROR, true);
	else
		pg_finish_interrupted(st);
	return 0;
}
