/*
 * query.h: what every database's query program does with a statement's text and when it
 * completes.
 *
 * The hot path: every statement updates the per-CPU totals and the latency histogram in
 * kernel maps; only statements at or over DBP_QUERY_THRESHOLD_NS travel to user space.
 */
#ifndef DBPROBE_QUERY_H
#define DBPROBE_QUERY_H

#include "dbprobe.h"

#ifndef DBP_QUERY_THRESHOLD_NS
#define DBP_QUERY_THRESHOLD_NS 0
#endif

BPF_PERCPU_ARRAY(query_scratch, struct dbp_query_event, 1);  /* an event being assembled */

/*
 * Copy the statement text at `text` (user memory of the current process) into the event.
 * `len` is the known length (MySQL packets are not NUL-terminated), or 0 for a C string.
 */
static __always_inline void dbp_read_text(struct dbp_query_event *ev, u64 text, u32 len)
{
	long copied;

	ev->text_len = 0;
	if (!text) {
		ev->flags |= DBP_QF_NO_TEXT;
		return;
	}
	if (len) {
		if (len > DBP_TEXT_MAX) {
			len = DBP_TEXT_MAX;
			ev->flags |= DBP_QF_TRUNCATED;
		}
		if (bpf_probe_read_user(ev->text, len, (void *)text) != 0) {
			ev->flags |= DBP_QF_NO_TEXT;
			return;
		}
		ev->text_len = len;
		return;
	}
	copied = bpf_probe_read_user_str(ev->text, DBP_TEXT_MAX, (void *)text);
	if (copied <= 0) {
		ev->flags |= DBP_QF_NO_TEXT;
		return;
	}
	if (copied == DBP_TEXT_MAX)
		ev->flags |= DBP_QF_TRUNCATED;
	ev->text_len = copied - 1;   /* without the NUL */
}

/* Everything but the text, for programs that hold the text themselves. */
static __always_inline void dbp_fill_event_head(struct dbp_query_event *ev, u64 start_ns,
						u64 end_ns, u16 hook, u8 protocol, u8 flags)
{
	dbp_fill_header(&ev->hdr, DBP_EV_QUERY, hook);
	ev->start_ns = start_ns;
	ev->end_ns = end_ns;
	ev->protocol = protocol;
	ev->flags = flags;
	ev->text_len = 0;
	ev->database = 0;
}

/* The bytes of the event worth sending: its head and its text, not the unused buffer. */
static __always_inline u32 dbp_event_size(struct dbp_query_event *ev)
{
	u32 size = offsetof(struct dbp_query_event, text) + ev->text_len;
	if (size > sizeof(*ev))
		size = sizeof(*ev);
	return size;
}

static __always_inline void dbp_count_query(u8 protocol, u64 duration)
{
	struct dbp_totals *t = dbp_totals();
	if (t) {
		t->queries += 1;
		t->query_ns += duration;
	}
	dbp_hist_add(protocol, duration);
}

#endif /* DBPROBE_QUERY_H */
