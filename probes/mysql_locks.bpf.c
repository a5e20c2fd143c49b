/*
 * mysql_locks.bpf.c: lock waits in MySQL and MariaDB, as the server reports them.
 *
 * Hooks (probes/mariadb.toml and probes/mysql.toml say which function feeds each one, and
 * where its arguments are in each server version):
 *
 *   my_lock_statement(command, text, text_len)   a client command starts (dispatch_command
 *                         entry): the text of a COM_QUERY, not NUL-terminated
 *   my_wait_begin(type)   thd_wait_begin(THD *, int wait_type): the thread is about to wait
 *   my_wait_end()         thd_wait_end(THD *): it stopped waiting
 *   my_mdl_wait(wait, stage)   MDL_wait::timed_wait entry: the thread's wait slot, and the
 *                         address of the processlist state it sets ("Waiting for table
 *                         metadata lock", "User lock"...)
 *   my_mdl_waited(status) MDL_wait::timed_wait return: how the wait ended
 *
 * Both servers call thd_wait_begin/thd_wait_end around every wait that may last (for their
 * thread pools): InnoDB row and table lock waits, table locks (thr_lock), metadata-lock
 * waits, and also sleeps, disk reads, network reads, syncs, binlog and group-commit waits.
 * Only the lock types (row, global, metadata, table and user locks) become lock waits; a
 * wait that begins while one is open (another wait inside a lock wait) is only counted, so
 * that its end does not end the lock wait. None of these functions says which object is
 * locked or who holds it: the target is the kind of lock, and blockers are not known.
 *
 * Metadata-lock waits come from MDL_wait::timed_wait, when the recipe has it. The server
 * waits for a metadata lock one second at a time (to check that the client is still there
 * and to nudge the holders), so each second is a thd_wait_begin/thd_wait_end pair of its
 * own; timed_wait's status tells a short wait that expired (EMPTY: the server waits again)
 * from the wait's real end, so one acquisition is one wait however long it lasts. Without
 * that hook, a metadata-lock wait is reported a second at a time.
 *
 * The waiter's statement. dispatch_command's packet lives in the connection's network
 * buffer, which the server overwrites with its reply (a SELECT ... FOR UPDATE has sent its
 * result metadata before it waits for a row), so the text of each COM_QUERY is copied when
 * it starts, into the thread's slot: one bpf_probe_read_user of the statement's length,
 * at most MY_LOCK_TEXT_MAX bytes, into memory that already exists. For a statement of a
 * hundred bytes that is tens of nanoseconds, next to the microsecond or two that the
 * uprobe trap on dispatch_command costs on every command; the thd_wait hooks cost a trap
 * and a hash lookup per wait the server reports (several per statement: each network read
 * is one). Nothing reaches user space unless a lock wait starts or ends. Prepared statements
 * (COM_STMT_EXECUTE) are not named: their text would have to be kept from their prepare.
 *
 * Slots are kept per thread id in an LRU map: a thread that exits is forgotten once others
 * need its slot, and a server with more threads than slots forgets the least recently
 * active ones' statements.
 */
#include "dbprobe.h"

#define MY_LOCK_TEXT_MAX 1024        /* bytes of the waiter's statement kept; a power of two */
#define MY_LOCK_THREADS 4096

#define MY_COM_QUERY 3

/* enum thd_wait_type (include/mysql/service_thd_wait.h) */
#define MY_WAIT_ROW_LOCK 3
#define MY_WAIT_GLOBAL_LOCK 4
#define MY_WAIT_META_DATA_LOCK 5
#define MY_WAIT_TABLE_LOCK 6
#define MY_WAIT_USER_LOCK 7

/* MDL_wait::enum_wait_status, the same in MySQL and MariaDB */
#define MY_MDL_EMPTY 0
#define MY_MDL_GRANTED 1
#define MY_MDL_VICTIM 2
#define MY_MDL_TIMEOUT 3
#define MY_MDL_KILLED 4

/*
 * How a wait ended, in its end record's flags beside DBP_LOCK_WAIT_FAILED (a deadlock
 * victim); dbprobe/mylocks.py reads them.
 */
#define MY_LOCK_WAIT_TIMEOUT 2
#define MY_LOCK_WAIT_KILLED 4
#define MY_LOCK_WAIT_OUTCOME_UNKNOWN 8   /* thd_wait_end does not say whether it was granted */

struct my_lock_thread {
	u64 mdl_wait;              /* the MDL_wait of the open wait, when it is a metadata-lock wait */
	u64 stage;                 /* its processlist state's name (address in the server) */
	u32 nested;                /* waits begun inside the open wait and not ended yet */
	u8 open_type;              /* the open lock wait's wait type; 0 when none is open */
	u8 in_mdl_wait;            /* inside MDL_wait::timed_wait */
	u16 reserved;
	u32 text_len;              /* the thread's current COM_QUERY; 0 for other commands */
	u32 reserved2;
	char text[MY_LOCK_TEXT_MAX];
};

BPF_TABLE("lru_hash", u32, struct my_lock_thread, my_lock_threads, MY_LOCK_THREADS);
BPF_PERCPU_ARRAY(my_lock_scratch, struct dbp_lock_event, 1);

static __always_inline bool my_is_lock_wait(u32 type)
{
	return type >= MY_WAIT_ROW_LOCK && type <= MY_WAIT_USER_LOCK;
}

static __always_inline struct my_lock_thread *my_lock_thread_of(u32 tid)
{
	return my_lock_threads.lookup(&tid);
}

/* The thread's slot, created when the thread belongs to a traced server. */
static __always_inline struct my_lock_thread *my_lock_thread_slot(void)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct my_lock_thread *slot = my_lock_threads.lookup(&tid);
	const void *fresh;
	if (slot || !(fresh = dbp_new_slot(sizeof(*slot))))
		return slot;
	return my_lock_threads.lookup_or_try_init(&tid, fresh);
}

static __always_inline struct dbp_lock_event *my_lock_event(u32 kind, u8 type, u16 hook)
{
	u32 zero = 0;
	struct dbp_lock_event *ev = my_lock_scratch.lookup(&zero);
	if (!ev)
		return 0;
	dbp_fill_header(&ev->hdr, kind, hook);
	ev->ts_ns = bpf_ktime_get_ns();
	ev->field1 = 0;
	ev->field2 = 0;
	ev->field3 = 0;
	ev->field4 = 0;
	ev->locktype = type;
	ev->mode = 0;
	ev->holders = 0;
	ev->flags = 0;
	ev->text_len = 0;
	ev->reserved = 0;
	return ev;
}

/* A lock wait starts: its type, the stage name's address (field1 low, field2 high), the statement. */
static __always_inline void my_lock_wait_opened(struct my_lock_thread *slot, u8 type, u64 stage,
						u64 mdl_wait, u16 hook)
{
	slot->open_type = type;
	slot->nested = 0;
	slot->mdl_wait = mdl_wait;
	slot->stage = stage;
	struct dbp_lock_event *ev = my_lock_event(DBP_EV_LOCK_WAIT_START, type, hook);
	if (!ev)
		return;
	ev->field1 = (u32)stage;
	ev->field2 = (u32)(stage >> 32);
	__builtin_memset(ev->holder, 0, sizeof(ev->holder));
	u32 len = slot->text_len;
	if (len > MY_LOCK_TEXT_MAX)
		len = MY_LOCK_TEXT_MAX;
	if (len && bpf_probe_read_kernel(ev->text, MY_LOCK_TEXT_MAX, slot->text) == 0)
		ev->text_len = len;
	u32 size = offsetof(struct dbp_lock_event, text) + ev->text_len;
	dbp_submit(ev, size > sizeof(*ev) ? sizeof(*ev) : size);
}

static __always_inline void my_lock_wait_closed(struct my_lock_thread *slot, u8 flags, u16 hook)
{
	u8 type = slot->open_type;
	slot->open_type = 0;
	slot->nested = 0;
	slot->mdl_wait = 0;
	slot->stage = 0;
	struct dbp_lock_event *ev = my_lock_event(DBP_EV_LOCK_WAIT_DONE, type, hook);
	if (!ev)
		return;
	ev->flags = flags;
	dbp_submit(ev, offsetof(struct dbp_lock_event, holder));
}

static __always_inline int my_lock_statement(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	bool query = dbp_arg(args, 0) == MY_COM_QUERY;
	struct my_lock_thread *slot = query ? my_lock_thread_slot()
				      : my_lock_thread_of((u32)bpf_get_current_pid_tgid());

	if (!slot)
		return 0;
	/* A wait still open when a new command starts lost its end (the waiter gave up). */
	if (slot->open_type)
		my_lock_wait_closed(slot, MY_LOCK_WAIT_OUTCOME_UNKNOWN, hook);
	slot->in_mdl_wait = 0;
	slot->text_len = 0;
	u64 text = query ? dbp_arg(args, 1) : 0;
	if (!text)
		return 0;
	u8 flags = 0;
	slot->text_len = dbp_capture_text(slot->text, MY_LOCK_TEXT_MAX, text, dbp_arg(args, 2), true,
					  &flags);
	return 0;
}

static __always_inline int my_wait_begin(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	u32 type = (u32)dbp_arg(args, 0);
	struct my_lock_thread *slot = my_lock_thread_of((u32)bpf_get_current_pid_tgid());

	if (slot && slot->open_type) {
		slot->nested += 1;
		return 0;
	}
	if (!my_is_lock_wait(type))
		return 0;
	if (!slot)
		slot = my_lock_thread_slot();
	if (!slot || slot->in_mdl_wait)
		return 0;
	my_lock_wait_opened(slot, type, 0, 0, hook);
	return 0;
}

static __always_inline int my_wait_end(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	struct my_lock_thread *slot = my_lock_thread_of((u32)bpf_get_current_pid_tgid());

	if (!slot || !slot->open_type)
		return 0;
	if (slot->nested) {
		slot->nested -= 1;
		return 0;
	}
	if (slot->mdl_wait)
		return 0;           /* a metadata-lock wait ends when timed_wait returns */
	my_lock_wait_closed(slot, MY_LOCK_WAIT_OUTCOME_UNKNOWN, hook);
	return 0;
}

static __always_inline int my_mdl_wait(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	u64 mdl_wait = dbp_arg(args, 0);
	u64 stage = dbp_arg(args, 1);
	struct my_lock_thread *slot = my_lock_thread_slot();

	if (!slot)
		return 0;
	slot->in_mdl_wait = 1;
	if (slot->open_type && slot->mdl_wait == mdl_wait && slot->stage == stage)
		return 0;           /* the same acquisition waits again after a short wait */
	if (slot->open_type)
		my_lock_wait_closed(slot, MY_LOCK_WAIT_OUTCOME_UNKNOWN, hook);
	my_lock_wait_opened(slot, MY_WAIT_META_DATA_LOCK, stage, mdl_wait, hook);
	return 0;
}

static __always_inline u8 my_mdl_outcome(u32 status)
{
	switch (status) {
	case MY_MDL_GRANTED:
		return 0;
	case MY_MDL_VICTIM:
		return DBP_LOCK_WAIT_FAILED;
	case MY_MDL_TIMEOUT:
		return MY_LOCK_WAIT_TIMEOUT;
	case MY_MDL_KILLED:
		return MY_LOCK_WAIT_KILLED;
	default:
		return MY_LOCK_WAIT_OUTCOME_UNKNOWN;
	}
}

static __always_inline int my_mdl_waited(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	u32 status = (u32)dbp_arg(args, 0);
	struct my_lock_thread *slot = my_lock_thread_of((u32)bpf_get_current_pid_tgid());

	if (!slot)
		return 0;
	slot->in_mdl_wait = 0;
	if (!slot->open_type || !slot->mdl_wait || status == MY_MDL_EMPTY)
		return 0;
	my_lock_wait_closed(slot, my_mdl_outcome(status), hook);
	return 0;
}
