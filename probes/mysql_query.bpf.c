/*
 * mysql_query.bpf.c: statement timing for MySQL and MariaDB, text and binary protocols.
 *
 * The hooks (probes/mariadb.toml and probes/mysql.toml say which function or probe feeds
 * each one, and where its arguments are in each server version):
 *
 *   my_dispatch(command, thd, text, text_len, stmt_id)
 *                       a client command starts (dispatch_command entry). `thd` is the
 *                       connection; `text`/`text_len` the statement of a COM_QUERY or a
 *                       COM_STMT_PREPARE (not NUL-terminated); `stmt_id` the statement of a
 *                       COM_STMT_EXECUTE or a COM_STMT_CLOSE. Each is garbage for the other
 *                       commands, and only read for its own.
 *   my_dispatch_done()  the command ends (dispatch_command return)
 *   my_query_start(text)    a text statement starts (USDT query__start; NUL-terminated)
 *   my_query_done(status)   it ends (USDT query__done); status is non-zero on error
 *
 * Statements are COM_QUERY (timed with protocol "simple") and COM_STMT_EXECUTE (and
 * MariaDB's COM_STMT_BULK_EXECUTE, protocol "prepared"); the other commands (COM_PING,
 * COM_QUIT, COM_STMT_PREPARE...) are not timed. A command runs from start to end on one
 * thread, so a command in flight is kept per thread id, in a slot the thread keeps while
 * it lives (a process exit frees it): its hot path is a lookup, no allocation.
 *
 * Why a statement's text is copied when it starts. A command arrives in the connection's
 * network buffer and dispatch_command's packet points into it; the server writes its
 * reply into that same buffer (one NET buffer serves both directions), a SELECT's result
 * metadata before its first row is even computed. When dispatch_command returns the text
 * is overwritten, and the server's own copy (thd->query()) would need THD's layout, which
 * changes with every release. So the text of a COM_QUERY or COM_STMT_PREPARE is copied into
 * the thread's slot at entry: one bpf_probe_read_user of the statement's own length into
 * memory that already exists, no map update. For a pgbench-sized statement (about 100
 * bytes) that is tens of nanoseconds, next to the microsecond or two that the uprobe and
 * uretprobe traps themselves cost on every command. A COM_STMT_EXECUTE copies nothing: its
 * text was kept when it was prepared, and is copied only when an execution is slow.
 *
 * Prepared statements. Statement ids are numbered per connection (and a thread pool runs
 * a connection on any of its threads, and many connections on one thread), so prepared
 * texts are kept per (server process, THD address, id), in a bounded LRU map. The id a
 * prepare got is in the server's reply: a PREPARE_OK packet (4-byte header, 0x00, 4-byte
 * id...) written at the start of the network buffer, that is one byte before the packet
 * the command arrived in (its command byte came first). Its header is checked before the
 * id is trusted (payload length, sequence number 1, OK marker); a reply that does not look
 * like that (an error, the compressed protocol) leaves the statement unknown. An execution
 * of an unknown statement (prepared before dbprobe attached, or forgotten by the LRU) is
 * reported as "EXECUTE <prepared statement #ID>".
 */
#include "query.h"
#include "classes.h"
#include "waits.h"

#define MY_IDLE 0                  /* COM_SLEEP: never dispatched as a client command */
#define MY_COM_QUERY 3
#define MY_COM_STMT_PREPARE 22
#define MY_COM_STMT_EXECUTE 23
#define MY_COM_STMT_CLOSE 25
#define MY_COM_STMT_BULK_EXECUTE 250   /* MariaDB */

/* MariaDB: an execute of statement id 0xffffffff runs the statement prepared last. */
#define MY_LAST_STATEMENT 0xffffffffU

#define MY_REPLY_HEAD 9            /* packet header (4), OK marker (1), statement id (4) */

struct my_text {
	u32 len;
	u8 flags;                  /* DBP_QF_TRUNCATED, DBP_QF_NO_TEXT */
	u8 reserved[3];
	char bytes[DBP_TEXT_MAX];
};

struct my_command {
	u64 start_ns;
	u64 thd;                   /* the connection, for statement ids; 0 from USDT */
	u64 reply;                 /* where the server writes its reply to a prepare */
	u32 stmt_id;
	u16 hook;
	u8 command;                /* MY_IDLE when no statement runs */
	u8 reserved;
	struct my_text text;       /* COM_QUERY and COM_STMT_PREPARE */
};

struct my_statement_key {
	u64 thd;
	u32 tgid;
	u32 stmt_id;
};

BPF_F_TABLE("hash", u32, struct my_command, my_commands, 65536, BPF_F_NO_PREALLOC);
BPF_TABLE("lru_hash", struct my_statement_key, struct my_text, my_prepared, 4096);

/* The thread's slot, created on its first statement when it belongs to a traced server. */
static __always_inline struct my_command *my_slot(void)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct my_command *slot = my_commands.lookup(&tid);
	const void *fresh;
	if (slot || !(fresh = dbp_new_slot(sizeof(*slot))))
		return slot;
	return my_commands.lookup_or_try_init(&tid, fresh);
}

static __always_inline void my_begin(struct my_command *slot, u8 command, u64 thd, u16 hook)
{
	slot->start_ns = bpf_ktime_get_ns();
	slot->thd = thd;
	slot->reply = 0;
	slot->stmt_id = 0;
	slot->hook = hook;
	slot->command = command;
	waits_statement_begins(slot->start_ns);
}

/* Copy a statement's text: `len` bytes when `sized`, else a NUL-terminated string. */
static __always_inline void my_capture(struct my_text *text, u64 src, u64 len, bool sized)
{
	text->flags = 0;
	text->len = dbp_capture_text(text->bytes, DBP_TEXT_MAX, src, len, sized, &text->flags);
}

static __always_inline struct dbp_query_event *my_event(const struct my_command *slot, u64 end_ns,
							u8 protocol, u8 flags)
{
	u32 zero = 0;
	struct dbp_query_event *ev = query_scratch.lookup(&zero);
	if (ev) {
		dbp_fill_event_head(ev, slot->start_ns, end_ns, slot->hook, protocol, flags);
		waits_fill(ev);
	}
	return ev;
}

/* Send a slow statement whose text this program holds. */
static __always_inline void my_emit(const struct my_command *slot, u64 end_ns, u8 protocol,
				    u8 flags, const struct my_text *text)
{
	struct dbp_query_event *ev = my_event(slot, end_ns, protocol, flags | text->flags);
	if (!ev)
		return;
	u32 len = text->len;
	if (len > DBP_TEXT_MAX)
		len = DBP_TEXT_MAX;
	if (len && bpf_probe_read_kernel(ev->text, DBP_TEXT_MAX, text->bytes) == 0)
		ev->text_len = len;
	dbp_submit(ev, dbp_event_size(ev));
}

/* Write `value` in decimal at `out`; the number of characters written (at most 10). */
static __always_inline u32 my_write_decimal(char *out, u32 value)
{
	u32 digits = 1;
	u32 rest = value;

#pragma unroll
	for (int i = 0; i < 9; i++) {
		rest /= 10;
		if (rest)
			digits += 1;
	}
#pragma unroll
	for (int i = 9; i >= 0; i--) {
		if ((u32)i < digits) {
			out[i] = '0' + value % 10;
			value /= 10;
		}
	}
	return digits;
}

/* Send a slow execution of a statement whose text is unknown, named by its id. */
static __always_inline void my_emit_unknown_statement(const struct my_command *slot, u64 end_ns)
{
	char prefix[] = "EXECUTE <prepared statement #";
	const u32 prefix_len = sizeof(prefix) - 1;
	struct dbp_query_event *ev = my_event(slot, end_ns, DBP_PROTO_PREPARED, 0);
	if (!ev)
		return;
#pragma unroll
	for (u32 i = 0; i < prefix_len; i++)
		ev->text[i] = prefix[i];
	u32 digits = my_write_decimal(ev->text + prefix_len, slot->stmt_id);
	if (digits > 10)
		digits = 10;
	ev->text[(prefix_len + digits) & (DBP_TEXT_MAX - 1)] = '>';
	ev->text_len = prefix_len + digits + 1;
	dbp_submit(ev, dbp_event_size(ev));
}

static __always_inline struct my_statement_key my_statement(u64 thd, u32 stmt_id)
{
	struct my_statement_key key = {};
	key.thd = thd;
	key.tgid = bpf_get_current_pid_tgid() >> 32;
	key.stmt_id = stmt_id;
	return key;
}

/* A prepare returned: keep its text under the id the server's reply gave it. */
static __always_inline void my_remember_prepared(struct my_command *slot)
{
	u8 reply[MY_REPLY_HEAD] = {};
	if (!slot->reply || (slot->text.flags & DBP_QF_NO_TEXT) ||
	    bpf_probe_read_user(reply, sizeof(reply), (void *)slot->reply) != 0)
		return;
	u32 payload = reply[0] | (reply[1] << 8) | (reply[2] << 16);
	/* PREPARE_OK is 12 bytes; 9 from the oldest servers, 13 where a metadata flag follows. */
	if (payload < 9 || payload > 13 || reply[3] != 1 || reply[4] != 0)
		return;
	u32 stmt_id = reply[5] | (reply[6] << 8) | (reply[7] << 16) | ((u32)reply[8] << 24);
	struct my_statement_key key = my_statement(slot->thd, stmt_id);
	my_prepared.update(&key, &slot->text);
	key.stmt_id = MY_LAST_STATEMENT;
	my_prepared.update(&key, &slot->text);
}

/* Count a statement in its class: keyed by the server process; MySQL has no database id. */
static __always_inline void my_count_class(const struct my_command *slot, const struct my_text *text,
					   u8 protocol, u64 duration, u8 flags, bool slow)
{
	u32 server = bpf_get_current_pid_tgid() >> 32;
	if (text)
		dbp_class_count(server, 0, text->bytes, text->len, text->flags, 0,
				DBP_DIALECT_MYSQL, protocol, duration, flags & DBP_QF_ERROR, slow, slot->hook);
	else
		dbp_class_count(server, 0, 0, 0, DBP_QF_NO_TEXT, DBP_CLASS_UNKNOWN_PREPARED,
				DBP_DIALECT_MYSQL, protocol, duration, flags & DBP_QF_ERROR, slow, slot->hook);
}

static __always_inline void my_finish_execute(struct my_command *slot, u64 now)
{
	u64 duration = now - slot->start_ns;
	bool slow = dbp_count_query(DBP_PROTO_PREPARED, duration);
	struct my_statement_key key = my_statement(slot->thd, slot->stmt_id);
	struct my_text *text = my_prepared.lookup(&key);
	my_count_class(slot, text, DBP_PROTO_PREPARED, duration, 0, slow);
	if (!slow)
		return;
	if (text)
		my_emit(slot, now, DBP_PROTO_PREPARED, 0, text);
	else
		my_emit_unknown_statement(slot, now);
}

static __always_inline void my_finish_query(struct my_command *slot, u64 now, u8 flags)
{
	u64 duration = now - slot->start_ns;
	bool slow = dbp_count_query(DBP_PROTO_SIMPLE, duration);
	my_count_class(slot, &slot->text, DBP_PROTO_SIMPLE, duration, flags, slow);
	if (slow)
		my_emit(slot, now, DBP_PROTO_SIMPLE, flags, &slot->text);
}

static __always_inline int my_dispatch(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	u8 command = dbp_arg(args, 0);
	u64 thd = dbp_arg(args, 1);
	struct my_command *slot;

	switch (command) {
	case MY_COM_QUERY:
	case MY_COM_STMT_PREPARE:
		slot = my_slot();
		if (!slot)
			return 0;
		my_begin(slot, command, thd, hook);
		u64 text = dbp_arg(args, 2);
		my_capture(&slot->text, text, dbp_arg(args, 3), true);
		if (text)
			slot->reply = text - 1;
		return 0;
	case MY_COM_STMT_EXECUTE:
	case MY_COM_STMT_BULK_EXECUTE:
		slot = my_slot();
		if (!slot)
			return 0;
		my_begin(slot, command, thd, hook);
		slot->stmt_id = (u32)dbp_arg(args, 4);
		return 0;
	case MY_COM_STMT_CLOSE: {
		struct my_statement_key key = my_statement(thd, (u32)dbp_arg(args, 4));
		my_prepared.delete(&key);
		return 0;
	}
	default:
		return 0;
	}
}

static __always_inline int my_dispatch_done(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct my_command *slot = my_commands.lookup(&tid);
	if (!slot || slot->command == MY_IDLE)
		return 0;
	u64 now = bpf_ktime_get_ns();
	u8 command = slot->command;
	slot->command = MY_IDLE;
	if (command == MY_COM_QUERY)
		my_finish_query(slot, now, 0);
	else if (command == MY_COM_STMT_PREPARE)
		my_remember_prepared(slot);
	else
		my_finish_execute(slot, now);
	return 0;
}

static __always_inline int my_query_start(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	struct my_command *slot = my_slot();
	if (!slot)
		return 0;
	my_begin(slot, MY_COM_QUERY, 0, hook);
	my_capture(&slot->text, dbp_arg(args, 0), 0, false);
	return 0;
}

static __always_inline int my_query_done(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct my_command *slot = my_commands.lookup(&tid);
	if (!slot || slot->command != MY_COM_QUERY)
		return 0;
	slot->command = MY_IDLE;
	my_finish_query(slot, bpf_ktime_get_ns(), dbp_arg(args, 0) ? DBP_QF_ERROR : 0);
	return 0;
}

/* A thread that ends gives its slot back. */
TRACEPOINT_PROBE(sched, sched_process_exit)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	my_commands.delete(&tid);
	return 0;
}
