/* Files compiled into the binary (see scripts/embed.cmake). */
#ifndef SP_EMBED_H
#define SP_EMBED_H

#include <stddef.h>

typedef struct sp_embedded {
    const char *name; /* Lua module name, e.g. "sproc.stream" */
    const char *data;
    size_t len;
} sp_embedded;

extern const sp_embedded sp_embedded_files[];

#endif
