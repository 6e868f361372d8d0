/* sp_buf: a growable byte buffer, reused across records so the hot path
 * allocates only when a record is larger than any before it. */
#ifndef SP_BUF_H
#define SP_BUF_H

#include <stddef.h>

typedef struct sp_buf {
    char *data;
    size_t len;
    size_t cap;
} sp_buf;

void sp_buf_init(sp_buf *b);
void sp_buf_destroy(sp_buf *b);
/* Makes room for n more bytes; returns 0, or -1 when out of memory. */
int sp_buf_reserve(sp_buf *b, size_t n);
int sp_buf_append(sp_buf *b, const void *p, size_t n);
int sp_buf_putc(sp_buf *b, char c);
static inline void sp_buf_reset(sp_buf *b) { b->len = 0; }

#endif
