/*
 * postgresql_txn.bpf.c: transactions, their statements and their idle time.
 *
 * Hooks (see probes/postgresql.toml):
 *
 *   pg_txn_start(lxid, backend)   a transaction starts (USDT transaction__start: the local id;
 *                                 the backend id from the global MyBackendId)
 *   pg_txn_commit(vxid)           it commits (transaction__commit)
 *   pg_txn_abort(vxid)            it aborts, by ROLLBACK or by an error (transaction__abort)
 *   pg_txn_timestamp(ts, backend) uprobe recipe: pgstat_report_xact_timestamp, called with the
 *                                 start time when a transaction starts and 0 when it ends
 *   pg_txn_aborting()             uprobe recipe: AtAbort_Portals, only on the abort path
 *   pg_txn_statement(text)        a statement starts (activity report); NULL when idle
 *
 * Each backend's open transaction lives in a kernel map: its start, the statements that ran
 * in it (counted; the first few kept as text), and how long it sat idle between them. When
 * it ends, the duration goes into a kernel histogram and the commit/abort counters; only
 * transactions at or over DBP_TXN_THRESHOLD_NS go to user space, with their statements.
 */
#include "dbprobe.h"

#ifndef DBP_TXN_THRESHOLD_NS
#define DBP_TXN_THRESHOLD_NS 0
#endif

struct pg_txn {
	u64 start_ns;               /* 0: no transaction open */
	u64 idle_since;             /* 0: not idle */
	u64 idle_ns;
	u64 statement;              /* pointer to the running statement's text, 0 when idle */
	u32 backend_id;
	u32 lxid;
	u16 statements;
	u8 aborting;
	u8 pad;
	u16 text_len[DBP_TXN_STATEMENTS];
	u16 reserved;
	char text[DBP_TXN_STATEMENTS][DBP_TXN_TEXT_MAX];
};

struct pg_txn_totals {
	u64 commits;
	u64 aborts;
	u64 total_ns;
};

BPF_TABLE("lru_hash", u32, struct pg_txn, pg_txns, 4096);
BPF_PERCPU_ARRAY(pg_txn_zero, struct pg_txn, 1);
BPF_PERCPU_ARRAY(txn_scratch, struct dbp_txn_event, 1);
BPF_PERCPU_ARRAY(txn_totals, struct pg_txn_totals, 1);
BPF_PERCPU_ARRAY(txn_hist, u64, DBP_HIST_SLOTS);

static __always_inline struct pg_txn *pg_txn_slot(u32 tid)
{
	struct pg_txn *txn = pg_txns.lookup(&tid);
	if (txn)
		return txn;
	u32 zero = 0;
	struct pg_txn *fresh = pg_txn_zero.lookup(&zero);
	if (!fresh || !dbp_pid_wanted(bpf_get_current_pid_tgid() >> 32))
		return 0;
	pg_txns.update(&tid, fresh);
	return pg_txns.lookup(&tid);
}

static __always_inline void pg_txn_keep_statement(struct pg_txn *txn, u64 text)
{
	u16 index = txn->statements;
	txn->statements += 1;
	if (index >= DBP_TXN_STATEMENTS || !text)
		return;
	long copied = bpf_probe_read_user_str(txn->text[index], DBP_TXN_TEXT_MAX, (void *)text);
	txn->text_len[index] = copied > 0 ? copied - 1 : 0;
}

static __always_inline void pg_txn_begin(struct pg_txn *txn, u32 lxid, u32 backend_id)
{
	txn->start_ns = bpf_ktime_get_ns();
	txn->idle_since = 0;
	txn->idle_ns = 0;
	txn->lxid = lxid;
	txn->backend_id = backend_id;
	txn->statements = 0;
	txn->aborting = 0;
#pragma unroll
	for (int i = 0; i < DBP_TXN_STATEMENTS; i++)
		txn->text_len[i] = 0;
	/* The statement that opened it (BEGIN, or the implicit transaction's statement). */
	if (txn->statement)
		pg_txn_keep_statement(txn, txn->statement);
}

static __always_inline void pg_txn_emit(struct pg_txn *txn, u64 now, u8 outcome, u16 hook)
{
	u32 zero = 0;
	struct dbp_txn_event *ev = txn_scratch.lookup(&zero);
	if (!ev)
		return;
	dbp_fill_header(&ev->hdr, DBP_EV_TXN, hook);
	ev->start_ns = txn->start_ns;
	ev->end_ns = now;
	ev->idle_ns = txn->idle_ns;
	ev->backend_id = txn->backend_id;
	ev->lxid = txn->lxid;
	ev->statements = txn->statements;
	ev->outcome = outcome;
	ev->flags = 0;
	ev->reserved = 0;
	__builtin_memcpy(ev->text_len, txn->text_len, sizeof(ev->text_len));
	__builtin_memcpy(ev->text, txn->text, sizeof(ev->text));
	dbp_submit(ev, sizeof(*ev));
}

static __always_inline void pg_txn_finish(struct pg_txn *txn, u8 outcome, u16 hook)
{
	u64 now = bpf_ktime_get_ns();
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
	u64 us = duration / 1000;
	u32 slot = us ? bpf_log2l(us) : 0;
	if (slot >= DBP_HIST_SLOTS)
		slot = DBP_HIST_SLOTS - 1;
	u64 *count = txn_hist.lookup(&slot);
	if (count)
		*count += 1;
	if (duration >= DBP_TXN_THRESHOLD_NS)
		pg_txn_emit(txn, now, outcome, hook);
	txn->start_ns = 0;
}

static __always_inline int pg_txn_start(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	struct pg_txn *txn = pg_txn_slot((u32)bpf_get_current_pid_tgid());
	if (txn)
		pg_txn_begin(txn, args[0], args[1]);
	return 0;
}

static __always_inline int pg_txn_commit(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct pg_txn *txn = pg_txns.lookup(&tid);
	if (txn && txn->start_ns)
		pg_txn_finish(txn, DBP_TXN_COMMIT, hook);
	return 0;
}

static __always_inline int pg_txn_abort(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct pg_txn *txn = pg_txns.lookup(&tid);
	if (txn && txn->start_ns)
		pg_txn_finish(txn, DBP_TXN_ABORT, hook);
	return 0;
}

static __always_inline int pg_txn_timestamp(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	if (args[0]) {
		struct pg_txn *txn = pg_txn_slot(tid);
		if (txn)
			pg_txn_begin(txn, 0, args[1]);
		return 0;
	}
	struct pg_txn *txn = pg_txns.lookup(&tid);
	if (txn && txn->start_ns)
		pg_txn_finish(txn, txn->aborting ? DBP_TXN_ABORT : DBP_TXN_COMMIT, hook);
	return 0;
}

static __always_inline int pg_txn_aborting(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct pg_txn *txn = pg_txns.lookup(&tid);
	if (txn && txn->start_ns)
		txn->aborting = 1;
	return 0;
}

static __always_inline int pg_txn_statement(struct pt_regs *ctx, const u64 *args, u16 hook)
{
	u64 text = args[0];
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct pg_txn *txn = text ? pg_txn_slot(tid) : pg_txns.lookup(&tid);
	if (!txn)
		return 0;
	u64 now = bpf_ktime_get_ns();
	if (!text) {
		txn->statement = 0;
		if (txn->start_ns && !txn->idle_since)
			txn->idle_since = now;
		return 0;
	}
	if (txn->statement)
		return 0;       /* Bind or Execute of the statement already counted */
	txn->statement = text;
	if (!txn->start_ns)
		return 0;       /* not in a transaction yet: counted when it starts */
	if (txn->idle_since) {
		txn->idle_ns += now - txn->idle_since;
		txn->idle_since = 0;
	}
	pg_txn_keep_statement(txn, text);
	return 0;
}
