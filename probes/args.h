/*
 * args.h: how a handler receives the arguments of its probe site.
 *
 * The generated entry function of a site (dbprobe/kernel/entrypoints.py) fills one
 * struct dbp_args per handler it calls: a register or a constant is the argument itself;
 * an argument in memory (a struct field, a global) is left as its address and size, and
 * read only when the handler asks for it: a read of user memory is the dearest thing an
 * entry does, and most reports need few of their arguments.
 */
#ifndef DBPROBE_ARGS_H
#define DBPROBE_ARGS_H

#define DBP_MAX_ARGS 8         /* arguments a hook handler receives */

struct dbp_args {
	u64 value[DBP_MAX_ARGS];   /* the argument; for one in memory, its address */
	u8 size[DBP_MAX_ARGS];     /* bytes to read at that address; 0: value is the argument */
	u8 sign;                   /* bit n: argument n, read from memory, is signed */
};

/* Argument n as a u64: sign-extended when signed, truncated to its width otherwise. */
static __always_inline u64 dbp_arg(const struct dbp_args *args, const int n)
{
	const void *at = (const void *)args->value[n];
	bool sign = args->sign >> n & 1;

	switch (args->size[n]) {
	case 1: {
		u8 v = 0;
		bpf_probe_read_user(&v, sizeof(v), at);
		return sign ? (u64)(s64)(s8)v : v;
	}
	case 2: {
		u16 v = 0;
		bpf_probe_read_user(&v, sizeof(v), at);
		return sign ? (u64)(s64)(s16)v : v;
	}
	case 4: {
		u32 v = 0;
		bpf_probe_read_user(&v, sizeof(v), at);
		return sign ? (u64)(s64)(s32)v : v;
	}
	case 8: {
		u64 v = 0;
		bpf_probe_read_user(&v, sizeof(v), at);
		return v;
	}
	default:
		return args->value[n];
	}
}

#endif /* DBPROBE_ARGS_H */
