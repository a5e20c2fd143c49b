/*
 * postgresql_txn.bpf.c: transactions, their statements and their idle time.
 *
 * Hooks (see probes/postgresql.toml):
 *
 *   pg_activity(state, text, database, proc, lxid_at, backend)   the backend reports an
 *                                 activity (pgstat_report_activity; postgresql.h)
 *   pg_txn_abort()                the transaction aborts, by ROLLBACK or by an error
 *                                 (USDT transaction__abort, or AtAbort_Portals)
 *
 * Transactions are read from the activity reports, with no probe on every transaction's
 * start and commit: a statement that starts while the backend is idle (outside a
 * transaction) opens one, and the transaction ends when the backend next goes idle
 * outside a transaction, or in a failed one. In between, the backend goes idle in
 * transaction, and the time until its next statement is the transaction's idle time.
 * Statements in a failed transaction (up to its ROLLBACK) open none; neither does a
 * connection's start-up, which reports no statement. A transaction's start is its first
 * statement's, its end the report that it went idle: what the client waits for.
 *
 * The transaction's local id is read from the backend's PGPROC when it goes idle in
 * transaction (an implicit transaction of one statement is over before any report sees
 * it), and when a backend's first statement since dbprobe attached starts, to tell
 * whether it runs in a transaction that began before (not reported: its start is unknown).
 *
 * Each backend's open transaction lives in its slot: its start, its statements (counted;
 * the first few kept as text, from the slot's copy), its idle time. When it ends, the
 * duration goes into a kernel histogram and the commit/abort counters; only transactions
 * at or over DBP_TXN_THRESHOLD_NS go to user space, with their statements.
 */
#include "postgresql.h"

#ifndef DBP_TXN_THRESHOLD_NS
#define DBP_TXN_THRESHOLD_NS 0
#endif

struct pg_txn_totals {
	u64 commits;
	u64 aborts;
	u64 total_ns;
};

BPF_PERCPU_ARRAY(txn_scratch, struct dbp_txn_event, 1);
BPF_PERCPU_ARRAY(txn_totals, struct pg_txn_totals, 1);
BPF_PERCPU_ARRAY(txn_hist, u64, DBP_HIST_SLOTS);

/* The backend's local transaction id, 0 outside a transaction (or when unknown). */
static __always_inline u32 pg_txn_local_id(const struct dbp_args *args)
{
	u64 proc = dbp_arg(args, PG_ARG_PROC);
	u64 at = dbp_arg(args, PG_ARG_LXID_AT);
	u32 lxid = 0;
	if (proc && at)
		bpf_probe_read_user(&lxid, sizeof(lxid), (void *)(proc + at));
	return lxid;
}

static __always_inline void pg_txn_keep_statement(struct pg_backend *b)
{
	struct pg_txn *txn = &b->txn;
	u16 index = txn->statements;
	txn->statements += 1;
	if (index >= DBP_TXN_STATEMENTS)
		return;
	u32 len = b->ev.text_len;
	/* From the slot's copy, in kernel memory: a plain copy, cheaper than a helper's. */
	__builtin_memcpy(txn->text + index * DBP_TXN_TEXT_MAX, b->ev.text, DBP_TXN_TEXT_MAX);
	txn->text_len[index] = len < DBP_TXN_TEXT_MAX ? len : DBP_TXN_TEXT_MAX;
}

static __always_inline void pg_txn_statement_began(struct pg_backend *b, u64 now, const struct dbp_args *args)
{
	struct pg_txn *txn = &b->txn;

	if (txn->start_ns) {
		if (txn->idle_since) {
			txn->idle_ns += now - txn->idle_since;
			txn->idle_since = 0;
		}
		pg_txn_keep_statement(b);
		return;
	}
	u8 before = b->idle_state;
	u32 lxid = 0;
	if (before == PG_STATE_UNDEFINED) {   /* the first statement since dbprobe attached */
		lxid = pg_txn_local_id(args);
		before = lxid ? PG_STATE_IDLE_IN_TRANSACTION : PG_STATE_IDLE;
	}
	if (before != PG_STATE_IDLE)
		return;                        /* in a failed transaction, or one begun unseen */
	txn->start_ns = now;
	txn->idle_since = 0;
	txn->idle_ns = 0;
	txn->lxid = lxid;
	txn->statements = 0;
	txn->aborting = 0;
#pragma unroll
	for (int i = 0; i < DBP_TXN_STATEMENTS; i++)
		txn->text_len[i] = 0;
	pg_txn_keep_statement(b);
}

static __always_inline void pg_txn_emit(struct pg_txn *txn, u64 now, u8 outcome,
				       const struct dbp_args *args, u16 hook)
{
	u32 zero = 0;
	struct dbp_txn_event *ev = txn_scratch.lookup(&zero);
	if (!ev)
		return;
	dbp_fill_header(&ev->hdr, DBP_EV_TXN, hook);
	ev->start_ns = txn->start_ns;
	ev->end_ns = now;
	ev->idle_ns = txn->idle_ns;
	ev->backend_id = dbp_arg(args, PG_ARG_BACKEND);   /* the same for the backend's life */
	ev->lxid = txn->lxid;
	ev->statements = txn->statements;
	ev->outcome = outcome;
	ev->flags = 0;
	ev->reserved = 0;
	__builtin_memcpy(ev->text_len, txn->text_len, sizeof(ev->text_len));
	__builtin_memcpy(ev->text, txn->text, sizeof(ev->text));
	dbp_submit(ev, sizeof(*ev));
}

static __always_inline void pg_txn_finish(struct pg_txn *txn, u64 now, u8 outcome,
					 const struct dbp_args *args, u16 hook)
{
	u64 duration = now - txn->start_ns;
	u32 zero = 0;
	struct pg_txn_totals *totals = txn_totals.lookup(&zero);
	if (totals) {
		if (outcome == DBP_TXN_ABORT)
			totals->aborts += 1;
		else
			totals->commits += 1;
		totals->total_ns += duration;
	}
	u32 slot = dbp_hist_slot(duration);
	u64 *count = txn_hist.lookup(&slot);
	if (count)
		*count += 1;
	if (duration >= DBP_TXN_THRESHOLD_NS)
		pg_txn_emit(txn, now, outcome, args, hook);
	txn->start_ns = 0;
}

static __always_inline void pg_txn_went_idle(struct pg_backend *b, u64 now, const struct dbp_args *args,
					     u16 hook)
{
	struct pg_txn *txn = &b->txn;
	u32 state = dbp_arg(args, PG_ARG_STATE);

	if (!txn->start_ns)
		return;
	if (state == PG_STATE_IDLE_IN_TRANSACTION) {
		txn->idle_since = now;
		if (!txn->lxid)
			txn->lxid = pg_txn_local_id(args);
		return;
	}
	if (state == PG_STATE_IDLE || state == PG_STATE_IDLE_IN_FAILED_TRANSACTION)
		pg_txn_finish(txn, now, txn->aborting || state != PG_STATE_IDLE ? DBP_TXN_ABORT
						: DBP_TXN_COMMIT, args, hook);
}

static __always_inline int pg_txn_abort(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	struct pg_backend *b = pg_backend_of(pg_tid());
	if (b && b->txn.start_ns)
		b->txn.aborting = 1;
	return 0;
}
