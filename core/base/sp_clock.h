/* sp_clock: seconds on the monotonic clock, for deadlines and durations
 * that a change of the wall clock must not stretch or cut short. */
#ifndef SP_CLOCK_H
#define SP_CLOCK_H

#include <time.h>

static inline double sp_clock_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

#endif
