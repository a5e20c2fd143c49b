/*
 * postgresql_query.bpf.c: statement timing for PostgreSQL, both protocols.
 *
 * Hooks (see probes/postgresql.toml for the probe or function behind each one):
 *
 *   pg_activity(state, text, database)   the backend reports an activity
 *                          (pgstat_report_activity): postgresql.h follows the statements
 *   pg_executed()          a portal's execution ended (USDT query__execute__done, or
 *                          PortalRun's return): where a statement of a pipeline ends
 *   pg_error()             error recovery aborts the transaction (AbortCurrentTransaction)
 *
 * Every statement is counted in kernel maps when it ends (pg_query_ended, the one place a
 * statement completes), in the totals and in its class (classes.h), keyed by the server
 * (the postmaster the backend was forked by) and the database; the backend's slot, which holds the statement's start, database
 * and text, is sent as it is when the statement is slow. A statement that ends in error
 * recovery (a failure or a cancel) is sent with DBP_QF_ERROR.
 */
#include "query.h"
#include "classes.h"
#include "postgresql.h"
#include "waits.h"

static __always_inline void pg_query_ended(struct pg_backend *b, u64 end, u8 flags)
{
	/* A simple Query reports once; an Execute alone (a cursor's next fetch) looks the same,
	 * unless it follows another statement of a pipeline. */
	u8 protocol = b->reports > 1 || b->pipelined ? DBP_PROTO_EXTENDED : DBP_PROTO_SIMPLE;
	u64 duration = end - b->ev.start_ns;
	bool slow = dbp_count_query(protocol, duration);

	if (!b->server)
		b->server = dbp_server_of_current();
	dbp_class_count(b->server, b->ev.database, b->ev.text, b->ev.text_len, b->ev.flags, 0,
			DBP_DIALECT_POSTGRESQL, protocol, duration, (flags | b->ev.flags) & DBP_QF_ERROR,
			slow, b->ev.hdr.hook);
	if (!slow)
		return;
	b->ev.end_ns = end;
	b->ev.protocol = protocol;
	b->ev.flags |= flags;
	waits_fill(&b->ev);
	dbp_submit(&b->ev, dbp_event_size(&b->ev));
}

static __always_inline int pg_error(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	struct pg_backend *b = pg_backend_of(pg_tid());
	if (b && b->active)
		pg_statement_ends(b, bpf_ktime_get_ns(), DBP_QF_ERROR);
	return 0;
}
