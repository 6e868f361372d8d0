/* What sproc query and sproc tap share: finding the processes of a
 * running application (through its consumer group, sp_members.h, or one
 * named with --at). */
#ifndef SP_QUERY_H
#define SP_QUERY_H

typedef struct sp_query_target {
    const char *script, *app, *brokers, *at;
    const char *sets[64];
    int nsets;
} sp_query_target;

/* An option of the target (--app, --brokers, --at, --set) with its value
 * v: 1 taken, 0 not one of them, -1 without its value. */
int sp_query_target_opt(sp_query_target *t, const char *a, const char *v);
/* 0 when enough is given (SPROC_BROKERS read), else -1 and why. */
int sp_query_target_check(sp_query_target *t, const char **why);
/* The "HOST:PORT" of each process answering queries (NULL-terminated),
 * or NULL after saying why on stderr. */
char **sp_query_addresses(const sp_query_target *t);
void sp_query_free_addresses(char **addrs);

#endif
