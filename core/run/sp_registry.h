/* sp_registry: the Schema Registry client (sp_registry.c) that the
 * executable plugs into its context (sp_registry_backend of sp_ctx.h). */
#ifndef SP_REGISTRY_H
#define SP_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "sp_buf.h"

typedef struct sp_registry sp_registry;

/* url: schema.registry.url; userinfo: USER:PASSWORD or NULL; ca: a CA
 * file or NULL. NULL when out of memory. */
sp_registry *sp_registry_create(const char *url, const char *userinfo, const char *ca);
void sp_registry_destroy(sp_registry *r);
const char *sp_registry_url(const sp_registry *r);
/* Whether it answers (at start): 0, or -1 and why. */
int sp_registry_check(sp_registry *r, char *err, size_t errsize);
/* The backend's functions (opaque: the sp_registry). */
int sp_registry_fetch(void *opaque, int32_t id, sp_buf *out, char *err, size_t errsize);
int sp_registry_register(void *opaque, const char *subject, const char *schema, size_t len,
                         int32_t *id, char *err, size_t errsize);

#endif
