/* libFuzzer target: the --set KEY=VALUE checks (sp_settings_check), the
 * settings a pipeline gets from its command line and its script's
 * options, and the edit distance behind their "did you mean" hints.
 * The input is up to 8 settings, one a line. A check fails exactly when
 * it says why; the distance is a metric. */
#include <string.h>

#include "fuzz_input.h"
#include "sp_settings.h"

#define MAX_SETS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    char *text = malloc(size + 1);
    FZ_CHECK(text);
    memcpy(text, data, size);
    text[size] = '\0';
    const char *sets[MAX_SETS];
    int n = 0;
    for (char *p = text; n < MAX_SETS && p;) {
        char *e = strchr(p, '\n');
        if (e) *e++ = '\0';
        /* librdkafka loads plugins named by plugin.library.paths when it
         * is set: that would be the fuzzer running shared objects. */
        if (!strstr(p, "plugin")) sets[n++] = p;
        p = e;
    }
    char *msg = (char *)1;
    int rc = sp_settings_check(sets, n, &msg);
    FZ_CHECK(rc == 0 || rc == -1);
    FZ_CHECK((rc == 0) == (msg == NULL));
    if (msg) FZ_CHECK(strlen(msg) > 0);
    free(msg);

    if (n >= 2) {
        int ab = sp_settings_distance(sets[0], sets[1]);
        FZ_CHECK(ab == sp_settings_distance(sets[1], sets[0]));
        size_t la = strlen(sets[0]), lb = strlen(sets[1]);
        if (la <= 128 && lb <= 128) { /* longer ones are "far" (1000) */
            FZ_CHECK(sp_settings_distance(sets[0], sets[0]) == 0);
            FZ_CHECK(ab <= (int)(la > lb ? la : lb));
            FZ_CHECK(ab >= (int)(la > lb ? la - lb : lb - la));
            FZ_CHECK((ab == 0) == (strcmp(sets[0], sets[1]) == 0));
        }
    }
    free(text);
    return 0;
}
