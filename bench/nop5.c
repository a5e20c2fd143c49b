/*
 * nop5.c: probe sites of four kinds, each a function of its own, for bench/nop5.py (see the
 * README, "Benchmarks"), which places an empty uprobe on one of them and runs this program.
 *
 *   site_nop1     a 1-byte nop, what <sys/sdt.h> emits at a USDT site on x86-64
 *   site_nop5     a 5-byte nop (nopl 0x0(%rax,%rax,1)), which a kernel with optimized
 *                 uprobes can turn into a call into its trampoline
 *   site_endbr64  a function entry built with -fcf-protection
 *   site_push     a function entry without it (push %rbp, as PostgreSQL's functions begin)
 *
 * Usage: nop5 SITE CALLS. It calls the site a few times first (the kernel optimizes a nop5
 * site on its first hit), then CALLS times, and prints one line: the thread's CPU ns per
 * call, the wall-clock ns per call, the first five bytes at the site as the process sees
 * them afterwards (cc: an int3 trap, e8: a call into the trampoline) and 1 if the process
 * has the kernel's uprobe trampoline mapped.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void site_nop1(void);
void site_nop5(void);
void site_endbr64(void);
void site_push(void);

__asm__(".text\n"
        ".p2align 4\n"
        ".globl site_nop1\n.type site_nop1, @function\n"
        "site_nop1:\n\tnop\n\tret\n"
        ".size site_nop1, .-site_nop1\n"
        ".p2align 4\n"
        ".globl site_nop5\n.type site_nop5, @function\n"
        "site_nop5:\n\t.byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n\tret\n"
        ".size site_nop5, .-site_nop5\n"
        ".p2align 4\n"
        ".globl site_endbr64\n.type site_endbr64, @function\n"
        "site_endbr64:\n\tendbr64\n\tret\n"
        ".size site_endbr64, .-site_endbr64\n"
        ".p2align 4\n"
        ".globl site_push\n.type site_push, @function\n"
        "site_push:\n\tpush %rbp\n\tpop %rbp\n\tret\n"
        ".size site_push, .-site_push\n");

static const struct {
    const char *name;
    void (*call)(void);
} SITES[] = {
    {"nop1", site_nop1},
    {"nop5", site_nop5},
    {"endbr64", site_endbr64},
    {"push", site_push},
};

#define WARM_UP_CALLS 1000

static double elapsed_ns(const struct timespec *from, const struct timespec *to)
{
    return (to->tv_sec - from->tv_sec) * 1e9 + (to->tv_nsec - from->tv_nsec);
}

static int trampoline_mapped(void)
{
    char line[512];
    int found = 0;
    FILE *maps = fopen("/proc/self/maps", "r");

    if (!maps)
        return 0;
    while (!found && fgets(line, sizeof line, maps))
        found = strstr(line, "[uprobes-trampoline]") != NULL;
    fclose(maps);
    return found;
}

int main(int argc, char **argv)
{
    void (*volatile site)(void) = NULL;
    struct timespec cpu_from, cpu_to, wall_from, wall_to;
    const unsigned char *code;
    long calls, i;
    size_t k;

    if (argc != 3 || (calls = atol(argv[2])) <= 0) {
        fprintf(stderr, "usage: %s nop1|nop5|endbr64|push CALLS\n", argv[0]);
        return 2;
    }
    for (k = 0; k < sizeof SITES / sizeof SITES[0]; k++)
        if (strcmp(argv[1], SITES[k].name) == 0)
            site = SITES[k].call;
    if (!site) {
        fprintf(stderr, "%s: no site %s\n", argv[0], argv[1]);
        return 2;
    }
    for (i = 0; i < WARM_UP_CALLS; i++)
        site();
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu_from);
    clock_gettime(CLOCK_MONOTONIC, &wall_from);
    for (i = 0; i < calls; i++)
        site();
    clock_gettime(CLOCK_MONOTONIC, &wall_to);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu_to);
    code = (const unsigned char *)site;
    printf("%.2f %.2f %02x%02x%02x%02x%02x %d\n", elapsed_ns(&cpu_from, &cpu_to) / calls,
           elapsed_ns(&wall_from, &wall_to) / calls, code[0], code[1], code[2], code[3], code[4],
           trampoline_mapped());
    return 0;
}
