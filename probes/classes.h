/*
 * classes.h: every statement counted in the kernel by class.
 *
 * A statement's class is a hash of its captured text (up to DBP_TEXT_MAX bytes) with the
 * literals, comments and spacing taken out and words folded to lower case, in the manner
 * of user space's fingerprint (dbprobe/kernel/classhash.py builds the scanner's tables and
 * says exactly what is kept). The classes map, keyed by (server, database, class), holds
 * each class's calls, total and longest time, errors, calls at or over the query
 * threshold, and a log2 latency histogram. The first text of a class goes to user space
 * once, as its sample (struct dbp_class_sample); user space reads the map at each digest.
 * A statement whose class would not fit in the full map is counted as untracked, never
 * silently dropped.
 *
 * With DBP_WITH_BREAKDOWN each class also sums where its statements' time went (waits.h):
 * the parts in its entry, the wait events in class_waits, keyed by class and event.
 *
 * The scanner runs one table lookup per byte and no branch but the loop's own: the
 * verifier walks a loop byte by byte, and a branch per byte would give it more paths than
 * it follows over two thousand bytes (and BCC cannot pass bpf_loop a callback). The table
 * is indexed by the scanner's state, the byte's class and a class of the next byte; each
 * entry says the next state and what to mix into the hash: the byte (folded or as it is),
 * a mark for a gap before it, a symbol (a string, a number...), after returning to the
 * hash saved where a run of digits began when the run was a number, or saving it. User
 * space fills the tables (class_tables) before the probes are attached.
 *
 * Counts are atomic adds on one shared value per class, not per-CPU values: the map's
 * memory then does not grow with the number of CPUs. The longest time is updated without
 * a lock, so two statements ending together may keep the lesser of the two.
 */
#ifndef DBPROBE_CLASSES_H
#define DBPROBE_CLASSES_H

#include "dbprobe.h"

#ifndef DBP_CLASSES
#define DBP_CLASSES 8192               /* classes counted; a power of two */
#endif

#define DBP_EV_CLASS 6                 /* struct dbp_class_sample, beside enum dbp_event_kind */

#define DBP_DIALECT_POSTGRESQL 0       /* "..." is an identifier */
#define DBP_DIALECT_MYSQL 1            /* "..." is a string */

/* The class of a prepared statement whose text dbprobe did not see prepared. */
#define DBP_CLASS_UNKNOWN_PREPARED 1ULL

/* The scanner's tables, as dbprobe/kernel/classhash.py lays them out. */
#define DBP_CLASS_ENTRIES 4096         /* 5 bits of state, 4 of byte class, 3 of next class */
#define DBP_CLASS_N_SAME 1             /* the next byte's class when it is this byte again */
#define DBP_CLASS_BASIS 0xcbf29ce484222325ULL
#define DBP_CLASS_PRIME 0x100000001b3ULL

struct dbp_class_table {
	u16 info[256];             /* per byte: class | next class << 4 | 0x80 for A-Z */
	u16 entry[DBP_CLASS_ENTRIES];  /* next | use << 5 | spaced << 7 | save << 8 |
					 restore << 9 | symbol << 10 | mix << 13 */
};

BPF_ARRAY(class_tables, struct dbp_class_table, 2);   /* by dialect */

#ifdef DBP_WITH_BREAKDOWN
/* Where a class's time went (probes/waits.h), summed over its statements. */
struct dbp_class_time {
	u64 statements;            /* the statements summed: those of a followed thread */
	u64 cpu_ns;
	u64 off_ns[DBP_OFF_CLASSES];
	u64 reads;
	u64 read_bytes;
	u64 read_ns;
	u64 writes;
	u64 write_bytes;
	u64 write_ns;
	u64 workers;               /* PostgreSQL's parallel workers, in the statements' time */
	u64 workers_cpu_ns;
	u64 workers_io_ns;
	u64 workers_read_bytes;
};

/* A statement's wait events, as its breakdown holds them (PostgreSQL's; MySQL has none). */
struct dbp_class_job_waits {
	u32 events;                /* entries of wait[] used */
	u32 reserved;
	struct dbp_wait_count wait[DBP_WAIT_EVENTS];
};

/* The current thread's statement as it ends; all zero for a thread not followed. */
static __always_inline void waits_statement_time(struct dbp_class_time *time,
						 struct dbp_class_job_waits *waits);   /* waits.h */

#ifndef DBP_CLASS_WAITS
#define DBP_CLASS_WAITS 16384          /* (class, wait event) pairs counted */
#endif

/* A class's time in one wait event, summed over its statements. */
struct dbp_class_wait_key {
	u64 hash;
	u32 server;
	u32 database;
	u32 event;                 /* wait_event_info; DBP_WAIT_EVENT_MORE: the statements' rest */
	u32 reserved;
};

struct dbp_class_wait {
	u64 count;
	u64 ns;
};
#endif

struct dbp_class_key {
	u64 hash;
	u32 server;                /* PostgreSQL: the postmaster's pid; MySQL: the server's */
	u32 database;              /* PostgreSQL: the database's OID; 0 when unknown */
};

struct dbp_class_stats {
	u64 calls;
	u64 total_ns;
	u64 max_ns;
	u64 errors;
	u64 slow;                  /* calls at or over the query threshold */
	u64 sampled;               /* the class's sample reached the ring buffer */
	u64 hist[DBP_HIST_SLOTS];  /* calls per log2 slot of microseconds */
#ifdef DBP_WITH_BREAKDOWN
	struct dbp_class_time time;
#endif
};

/* The first text of a class, sent once. */
struct dbp_class_sample {
	struct dbp_header hdr;
	u64 hash;
	u32 server;
	u32 database;
	u8 protocol;
	u8 flags;                  /* DBP_QF_TRUNCATED, DBP_QF_NO_TEXT */
	u16 text_len;
	u32 reserved;
	char text[DBP_TEXT_MAX];
};

struct dbp_class_counts {
	u64 untracked;             /* statements of a class the full map had no room for */
	u64 samples_deferred;      /* samples the full ring buffer refused, sent again later */
	u64 waits_untracked;       /* a class's wait events the full class_waits had no room for */
};

BPF_TABLE("hash", struct dbp_class_key, struct dbp_class_stats, classes, DBP_CLASSES);
BPF_PERCPU_ARRAY(class_counts, struct dbp_class_counts, 1);
BPF_PERCPU_ARRAY(class_sample_scratch, struct dbp_class_sample, 1);
BPF_PERCPU_ARRAY(class_zero_stats, struct dbp_class_stats, 1);
#ifdef DBP_WITH_BREAKDOWN
BPF_TABLE("hash", struct dbp_class_wait_key, struct dbp_class_wait, class_waits, DBP_CLASS_WAITS);
#endif

/* Hide a value from the compiler: BPF has no set-on-condition, so a comparison it found
 * would become a branch. */
static __always_inline u64 dbp_class_opaque(u64 x)
{
	__asm__("" : "+r"(x));
	return x;
}

/* a where flag (0 or 1) is 1, else b; never a branch */
static __always_inline u64 dbp_class_select(u64 flag, u64 a, u64 b)
{
	return b ^ ((a ^ b) & dbp_class_opaque(0 - flag));
}

/* The class hash of the `len` bytes at `text` (at most DBP_TEXT_MAX), which holds a 0 after
 * them: the last byte's next. */
static __always_inline u64 dbp_class_hash(const char *text, u64 len, u32 dialect)
{
	const struct dbp_class_table *table = class_tables.lookup(&dialect);
	if (!table)
		return 0;
	u64 n = len > DBP_TEXT_MAX ? DBP_TEXT_MAX : len;
	u64 hash = DBP_CLASS_BASIS, saved = 0, state = 0;
	u64 byte = (u8)text[0];
	u64 info = table->info[byte & 255];

#pragma clang loop unroll(disable)
	for (u32 i = 0; i < DBP_TEXT_MAX; i++) {
		if (i >= n)
			break;
		u64 next = (u8)text[i + 1];
		u64 next_info = table->info[next & 255];
		u64 same = ((next ^ byte) - 1) >> 63;
		u64 next_class = dbp_class_select(same, DBP_CLASS_N_SAME, (next_info >> 4) & 7);
		u64 e = table->entry[((state << 7) | ((info & 15) << 3) | next_class) & (DBP_CLASS_ENTRIES - 1)];

		u64 h = dbp_class_select((e >> 9) & 1, saved, hash);
		saved = dbp_class_select((e >> 8) & 1, h, saved);
		u64 use = (e >> 5) & 3;
		u64 folded = byte + ((info >> 2) & 32);
		u64 symbol = (folded & dbp_class_opaque(0 - (use & 1))) | (byte & dbp_class_opaque(0 - (use >> 1)));
		symbol += (e & 0x80) << 1;
		symbol += (e & 0x1c00) >> 1;
		hash = (h ^ symbol) * (1 + (DBP_CLASS_PRIME - 1) * ((e >> 13) & 1));
		state = e & 31;
		byte = next;
		info = next_info;
	}
	return hash;
}

static __always_inline struct dbp_class_counts *dbp_class_counts(void)
{
	u32 zero = 0;
	return class_counts.lookup(&zero);
}

/* Send a class's first text; false when the ring buffer had no room. */
static __always_inline bool dbp_class_send_sample(const struct dbp_class_key *key, const char *text,
						  u32 len, u8 text_flags, u8 protocol, u16 hook)
{
	u32 zero = 0;
	struct dbp_class_sample *sample = class_sample_scratch.lookup(&zero);
	if (!sample)
		return false;
	dbp_fill_header(&sample->hdr, DBP_EV_CLASS, hook);
	sample->hash = key->hash;
	sample->server = key->server;
	sample->database = key->database;
	sample->protocol = protocol;
	sample->flags = text_flags;
	sample->reserved = 0;
	u64 size = len;
	if (size > DBP_TEXT_MAX)
		size = DBP_TEXT_MAX;
	sample->text_len = 0;
	if (size && bpf_probe_read_kernel(sample->text, size, text) == 0)
		sample->text_len = size;
	u32 bytes = offsetof(struct dbp_class_sample, text) + sample->text_len;
	if (bytes > sizeof(*sample))
		bytes = sizeof(*sample);
	return events.ringbuf_output(sample, bytes, 0) == 0;
}

/*
 * The statement a hook's run counted, for the class counter. The hash loop is verified
 * once, in a program of its own that the hook tail-calls as it ends (DBP_AFTER_HOOK): in
 * line, it would be verified again on every path that ends a statement, more than the
 * verifier follows. The statement's text is copied here because the rest of the hook may
 * reuse the slot it was in (the next statement of a pipeline begins in the same run).
 */
struct dbp_class_job {
	u64 hash;                  /* 0: the counter computes it */
	u64 duration;
	u32 server;
	u32 database;
	u16 hook;
	u8 dialect;
	u8 protocol;
	u8 text_flags;
	u8 error;
	u8 slow;
	u8 pending;
	u32 len;
	u32 reserved;
#ifdef DBP_WITH_BREAKDOWN
	struct dbp_class_time time;   /* taken as the statement ends: the next may begin in the run */
	struct dbp_class_job_waits waits;
#endif
	char text[DBP_TEXT_MAX + 8];  /* and a 0 after the text: the hash looks one byte ahead */
};

BPF_PERCPU_ARRAY(class_jobs, struct dbp_class_job, 1);
BPF_PROG_ARRAY(class_programs, 1);   /* [0]: dbp_class_counter, put there by user space */

/*
 * Count one finished statement in its class, once the hook's run ends. `text` is kernel
 * memory (the slot the program copied the statement into); `hash` is its class when the
 * caller knows it already (0: computed from the text).
 */
static __always_inline void dbp_class_count(u32 server, u32 database, const char *text, u32 len,
					    u8 text_flags, u64 hash, u32 dialect, u8 protocol,
					    u64 duration, bool error, bool slow, u16 hook)
{
	u32 zero = 0;
	struct dbp_class_job *job = class_jobs.lookup(&zero);
	if (!job)
		return;
	job->hash = hash;
	job->duration = duration;
	job->server = server;
	job->database = database;
	job->hook = hook;
	job->dialect = dialect;
	job->protocol = protocol;
	job->text_flags = text_flags;
	job->error = error;
	job->slow = slow;
	job->len = 0;
	u32 size = len;
	if (size > DBP_TEXT_MAX)
		size = DBP_TEXT_MAX;
	if (text && size && bpf_probe_read_kernel(job->text, size, text) == 0)
		job->len = size;
	else
		size = 0;
	job->text[size] = 0;
#ifdef DBP_WITH_BREAKDOWN
	waits_statement_time(&job->time, &job->waits);
#endif
	job->pending = 1;
}

#ifdef DBP_WITH_BREAKDOWN
static __always_inline void dbp_class_add_time(struct dbp_class_time *sum, const struct dbp_class_time *time)
{
	if (!time->statements)
		return;
	__sync_fetch_and_add(&sum->statements, 1);
	__sync_fetch_and_add(&sum->cpu_ns, time->cpu_ns);
#pragma unroll
	for (int i = 0; i < DBP_OFF_CLASSES; i++)
		if (time->off_ns[i])
			__sync_fetch_and_add(&sum->off_ns[i], time->off_ns[i]);
	if (time->reads) {
		__sync_fetch_and_add(&sum->reads, time->reads);
		__sync_fetch_and_add(&sum->read_bytes, time->read_bytes);
		__sync_fetch_and_add(&sum->read_ns, time->read_ns);
	}
	if (time->writes) {
		__sync_fetch_and_add(&sum->writes, time->writes);
		__sync_fetch_and_add(&sum->write_bytes, time->write_bytes);
		__sync_fetch_and_add(&sum->write_ns, time->write_ns);
	}
	if (time->workers) {
		__sync_fetch_and_add(&sum->workers, time->workers);
		__sync_fetch_and_add(&sum->workers_cpu_ns, time->workers_cpu_ns);
		__sync_fetch_and_add(&sum->workers_io_ns, time->workers_io_ns);
		__sync_fetch_and_add(&sum->workers_read_bytes, time->workers_read_bytes);
	}
}

static __always_inline void dbp_class_add_waits(const struct dbp_class_key *key,
						const struct dbp_class_job_waits *waits)
{
	struct dbp_class_wait_key wkey = {};
	struct dbp_class_wait fresh = {};
	wkey.hash = key->hash;
	wkey.server = key->server;
	wkey.database = key->database;
	u32 used = waits->events;
#pragma unroll
	for (int i = 0; i < DBP_WAIT_EVENTS; i++) {
		if (i < used) {
			struct dbp_wait_count wait = waits->wait[i];
			wkey.event = wait.event;
			struct dbp_class_wait *sum = class_waits.lookup(&wkey);
			if (!sum) {
				class_waits.insert(&wkey, &fresh);
				sum = class_waits.lookup(&wkey);
			}
			if (sum) {
				__sync_fetch_and_add(&sum->count, wait.count);
				__sync_fetch_and_add(&sum->ns, wait.ns);
			} else {
				struct dbp_class_counts *counts = dbp_class_counts();
				if (counts)
					counts->waits_untracked += 1;
			}
		}
	}
}
#endif

/* The end of every hook's run: hand a counted statement to the class counter. */
static __always_inline void dbp_class_flush(struct pt_regs *ctx)
{
	u32 zero = 0;
	struct dbp_class_job *job = class_jobs.lookup(&zero);
	if (!job || !job->pending)
		return;
	class_programs.call(ctx, 0);
	job->pending = 0;          /* reached only when the counter is not loaded */
	struct dbp_class_counts *counts = dbp_class_counts();
	if (counts)
		counts->untracked += 1;
}
#define DBP_AFTER_HOOK(ctx) dbp_class_flush(ctx)   /* the generated entry points call it */

int dbp_class_counter(struct pt_regs *ctx)
{
	u32 zero = 0;
	struct dbp_class_job *job = class_jobs.lookup(&zero);
	if (!job || !job->pending)
		return 0;
	job->pending = 0;

	struct dbp_class_key key = {};
	key.hash = job->hash ? job->hash : dbp_class_hash(job->text, job->len, job->dialect);
	key.server = job->server;
	key.database = job->database;

	struct dbp_class_stats *stats = classes.lookup(&key);
	if (!stats) {
		struct dbp_class_stats *fresh = class_zero_stats.lookup(&zero);
		if (!fresh)
			return 0;
		classes.insert(&key, fresh);  /* no overwrite: a class another CPU just made stays */
		stats = classes.lookup(&key);
		if (!stats) {
			struct dbp_class_counts *counts = dbp_class_counts();
			if (counts)
				counts->untracked += 1;
			return 0;
		}
	}
	u64 duration = job->duration;
	__sync_fetch_and_add(&stats->calls, 1);
	__sync_fetch_and_add(&stats->total_ns, duration);
	if (job->error)
		__sync_fetch_and_add(&stats->errors, 1);
	if (job->slow)
		__sync_fetch_and_add(&stats->slow, 1);
	if (duration > stats->max_ns)
		stats->max_ns = duration;
	u32 slot = dbp_hist_slot(duration);
	__sync_fetch_and_add(&stats->hist[slot & (DBP_HIST_SLOTS - 1)], 1);
#ifdef DBP_WITH_BREAKDOWN
	dbp_class_add_time(&stats->time, &job->time);
	dbp_class_add_waits(&key, &job->waits);
#endif
	/* Two CPUs may both send a new class's sample: user space keeps the first. */
	if (!stats->sampled) {
		stats->sampled = 1;
		if (!dbp_class_send_sample(&key, job->text, job->len, job->text_flags, job->protocol,
					   job->hook)) {
			stats->sampled = 0;
			struct dbp_class_counts *counts = dbp_class_counts();
			if (counts)
				counts->samples_deferred += 1;
		}
	}
	return 0;
}

#endif /* DBPROBE_CLASSES_H */
