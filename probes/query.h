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
BPF_PERCPU_ARRAY(query_hist, u64, DBP_HIST_SLOTS * DBP_PROTOCOLS);

/* Copy the statement text at `text` into the event; `len` as dbp_capture_text takes it. */
static __always_inline void dbp_read_text(struct dbp_query_event *ev, u64 text, u64 len, bool sized)
{
	ev->text_len = dbp_capture_text(ev->text, DBP_TEXT_MAX, text, len, sized, &ev->flags);
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

/*
 * Count a completed statement in the totals and the histogram; whether it is slow, that
 * is at or over the threshold (counted here whether or not its event reaches user space).
 */
static __always_inline bool dbp_count_query(u8 protocol, u64 duration)
{
	bool slow = duration >= DBP_QUERY_THRESHOLD_NS;
	struct dbp_totals *t = dbp_totals();
	if (t) {
		t->queries += 1;
		t->query_ns += duration;
		if (slow)
			t->slow += 1;
	}
	u32 index = protocol * DBP_HIST_SLOTS + dbp_hist_slot(duration);
	u64 *value = query_hist.lookup(&index);
	if (value)
		*value += 1;
	return slow;
}

#endif /* DBPROBE_QUERY_H */
