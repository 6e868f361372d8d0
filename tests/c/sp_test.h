/* A tiny assertion kit for the C unit tests: each check reports file:line
 * and the values on failure, and every test binary ends with
 * "N passed, M failed" on a line of its own (read by CI). */
#ifndef SP_TEST_H
#define SP_TEST_H

#include <stdio.h>
#include <string.h>

static int sp_test_passed, sp_test_failed;

#define SP_CHECK(cond)                                                      \
    do {                                                                    \
        if (cond) {                                                         \
            sp_test_passed++;                                               \
        } else {                                                            \
            sp_test_failed++;                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                 \
        }                                                                   \
    } while (0)

#define SP_CHECK_INT(a, b)                                                  \
    do {                                                                    \
        long long va_ = (long long)(a), vb_ = (long long)(b);               \
        if (va_ == vb_) {                                                   \
            sp_test_passed++;                                               \
        } else {                                                            \
            sp_test_failed++;                                               \
            fprintf(stderr, "%s:%d: %s == %s: %lld != %lld\n", __FILE__,    \
                    __LINE__, #a, #b, va_, vb_);                            \
        }                                                                   \
    } while (0)

/* p/len against a string literal */
#define SP_CHECK_MEM(p, len, lit)                                           \
    do {                                                                    \
        size_t l_ = (size_t)(len);                                          \
        if (l_ == strlen(lit) && memcmp((p), (lit), l_) == 0) {             \
            sp_test_passed++;                                               \
        } else {                                                            \
            sp_test_failed++;                                               \
            fprintf(stderr, "%s:%d: '%.*s' != '%s'\n", __FILE__, __LINE__,  \
                    (int)l_, (const char *)(p), (lit));                     \
        }                                                                   \
    } while (0)

static inline int sp_test_summary(void) {
    printf("%d passed, %d failed\n", sp_test_passed, sp_test_failed);
    return sp_test_failed ? 1 : 0;
}

#endif
