/* What a watchpoint-based breakdown would do at each trap on a backend's wait_event_info:
 * the trap comes after the write, so the word holds the new wait event; the time since the
 * last change goes to the old one, in a per-thread entry (a lookup, a clock read, a 4-byte
 * user read, an update). Run by bench/watchpoint.py, not by dbprobe. */
#include <uapi/linux/bpf_perf_event.h>

struct watched {
    u64 word;      /* the address of the backend's wait_event_info */
    u64 since;     /* when the word last changed */
    u64 spent_ns;  /* time in a wait event (word non-zero) so far */
    u64 traps;
    u32 value;     /* the word as of the last trap */
};

BPF_HASH(watched, u32, struct watched, 4096);

int on_wait_event_write(struct bpf_perf_event_data *ctx)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct watched *entry = watched.lookup(&tid);
    if (!entry)
        return 0;
    u64 now = bpf_ktime_get_ns();
    u32 value = 0;
    bpf_probe_read_user(&value, sizeof(value), (void *)entry->word);
    if (entry->value != 0 && entry->since != 0)
        entry->spent_ns += now - entry->since;
    entry->since = now;
    entry->value = value;
    __sync_fetch_and_add(&entry->traps, 1);
    return 0;
}
