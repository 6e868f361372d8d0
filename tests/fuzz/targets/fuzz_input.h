/* Shared by the libFuzzer targets: reading structured choices out of the
 * fuzzer's bytes (so that mutations of the bytes map to nearby schemas
 * and rows, not to garbage the parsers reject at once), a UTF-8 check
 * written independently of sp_utf8_len, and the failure report. */
#ifndef FUZZ_INPUT_H
#define FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct fz_in {
    const uint8_t *p;
    size_t left;
} fz_in;

/* One byte, 0 once the input is used up: every input decodes to
 * something, and a short input to a small case. */
static inline unsigned fz_byte(fz_in *in) {
    if (!in->left) return 0;
    in->left--;
    return *in->p++;
}

static inline unsigned fz_below(fz_in *in, unsigned n) { return n ? fz_byte(in) % n : 0; }

static inline uint64_t fz_u64(fz_in *in) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | fz_byte(in);
    return v;
}

/* Decodes code points as RFC 3629 defines them, rather than checking
 * byte ranges as sp_utf8_len does, so a mistake in one shows up against
 * the other. */
static inline int fz_utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        int more;
        uint32_t cp, min;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xE0) == 0xC0) more = 1, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) more = 2, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) more = 3, cp = c & 0x07, min = 0x10000;
        else return 0;
        if (i + (size_t)more >= n) return 0; /* cut short */
        for (int k = 1; k <= more; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += (size_t)more + 1;
    }
    return 1;
}

/* A broken invariant: say which and crash, so libFuzzer keeps the input. */
#define FZ_CHECK(cond)                                                        \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__,        \
                    __LINE__, #cond);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)

#endif
