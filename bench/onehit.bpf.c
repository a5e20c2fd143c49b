/*
 * onehit.bpf.c: statement timing for PostgreSQL from one probe hit per statement,
 * an experiment that bench/onehit.py measures against the query family (see the README,
 * "Benchmarks"); no report uses it.
 *
 * Hooks:
 *
 *   pg_statement_done(entry, query_size, start_at, database_at, state_at, raw_at, dest)
 *                          EndCommand(qc, dest), which sends a completed statement's CommandComplete
 *                          (dest DestRemoteExecute: the extended protocol's Execute):
 *                          the backend's own status entry (the global MyBEEntry, a
 *                          PgBackendStatus in shared memory) says when the statement began
 *                          (st_activity_start_timestamp, the statement_timestamp() of the
 *                          latest message that reported a text), its database, its state
 *                          and its text (st_activity_raw, track_activity_query_size bytes);
 *                          the _at arguments are where the entry keeps them in this version
 *   pg_statement_failed(entry, ...)  error recovery (AbortCurrentTransaction) while a
 *                          statement runs
 *
 * The start is a TimestampTz, microseconds since 2000-01-01 on CLOCK_REALTIME, so the end
 * is read on CLOCK_TAI (the one wall clock BPF has) less DBP_TAI_OFFSET_NS, which user
 * space measures as it loads the program.
 */
#include "../probes/query.h"
#include "../probes/classes.h"

#ifndef DBP_TAI_OFFSET_NS
#define DBP_TAI_OFFSET_NS 0
#endif

#define PG_EPOCH_UNIX_US 946684800000000ULL  /* 2000-01-01 in microseconds since 1970 */
#define PG_STATE_RUNNING 2

#define PG_ONEHIT_ENTRY 0
#define PG_ONEHIT_QUERY_SIZE 1
#define PG_ONEHIT_START_AT 2
#define PG_ONEHIT_DATABASE_AT 3
#define PG_ONEHIT_STATE_AT 4
#define PG_ONEHIT_RAW_AT 5
#define PG_ONEHIT_DEST 6
#define PG_DEST_REMOTE_EXECUTE 3   /* enum CommandDest (tcop/dest.h) */

static u64 (*dbp_ktime_get_tai_ns)(void) = (void *)BPF_FUNC_ktime_get_tai_ns;

static __always_inline u64 pg_entry_field(u64 entry, const struct dbp_args *args, int at, u32 size)
{
	u64 value = 0;
	bpf_probe_read_user(&value, size, (void *)(entry + dbp_arg(args, at)));
	return value;
}

static __always_inline void pg_onehit_count(const struct dbp_args *args, u16 hook, u8 protocol,
					    u8 flags)
{
	if (!dbp_pid_wanted(bpf_get_current_pid_tgid() >> 32))
		return;
	u64 entry = dbp_arg(args, PG_ONEHIT_ENTRY);
	if (!entry || pg_entry_field(entry, args, PG_ONEHIT_STATE_AT, 4) != PG_STATE_RUNNING)
		return;             /* track_activities off, or no statement running */
	s64 start_us = pg_entry_field(entry, args, PG_ONEHIT_START_AT, 8);
	u64 now_tai = dbp_ktime_get_tai_ns();
	u64 start_ns = ((u64)start_us + PG_EPOCH_UNIX_US) * 1000;
	u64 end_ns = now_tai - DBP_TAI_OFFSET_NS;
	u64 duration = end_ns > start_ns ? end_ns - start_ns : 0;

	u32 zero = 0;
	struct dbp_query_event *ev = query_scratch.lookup(&zero);
	if (!ev)
		return;
	u64 mono = bpf_ktime_get_ns();
	dbp_fill_event_head(ev, mono - duration, mono, hook, protocol, flags);
	ev->database = pg_entry_field(entry, args, PG_ONEHIT_DATABASE_AT, 4);
	u64 raw = pg_entry_field(entry, args, PG_ONEHIT_RAW_AT, 8);
	dbp_read_text(ev, raw, 0, false);
	if (ev->text_len + 1 >= dbp_arg(args, PG_ONEHIT_QUERY_SIZE))
		ev->flags |= DBP_QF_TRUNCATED;

	bool slow = dbp_count_query(protocol, duration);
	dbp_class_count(dbp_server_of_current(), ev->database, ev->text, ev->text_len, ev->flags, 0,
			DBP_DIALECT_POSTGRESQL, protocol, duration, flags & DBP_QF_ERROR, slow,
			hook);
	if (slow)
		dbp_submit(ev, dbp_event_size(ev));
}

static __always_inline int pg_statement_done(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	u8 protocol = dbp_arg(args, PG_ONEHIT_DEST) == PG_DEST_REMOTE_EXECUTE ? DBP_PROTO_EXTENDED
									       : DBP_PROTO_SIMPLE;
	pg_onehit_count(args, hook, protocol, 0);
	return 0;
}

static __always_inline int pg_statement_failed(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	pg_onehit_count(args, hook, DBP_PROTO_SIMPLE, DBP_QF_ERROR);
	return 0;
}
