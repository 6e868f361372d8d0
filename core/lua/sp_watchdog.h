/* sp_watchdog: interrupts a script that one record keeps busy for longer
 * than a limit (sproc.script.timeout.ms), so that a loop that never ends
 * becomes an error on that record, under the error policy, instead of a
 * process that stops committing and is thrown out of its group.
 *
 * A thread notices that the record being processed (the batch's cur)
 * has not changed for the limit and signals the main thread, whose
 * handler sets a count hook. LuaJIT runs no hook inside compiled code,
 * so its profiler is on too, in line mode with its timer off: compiled
 * code then checks a flag at each new line, and the handler raises the
 * profiler's signal, which sets the flag: the trace is left for the
 * interpreter, where the hook raises the error at the script's
 * file:line. While a watchdog is on, LuaJIT's profiler is its own (jit.p
 * cannot run alongside). */
#ifndef SP_WATCHDOG_H
#define SP_WATCHDOG_H

#include <stdint.h>

typedef struct sp_watchdog sp_watchdog;

/* L: the lua_State that runs the script; cur: what changes with each
 * record (the batch's cur), which must outlive the watchdog; limit_ms > 0.
 * NULL when out of resources. */
sp_watchdog *sp_watchdog_create(void *L, const int32_t *cur, int64_t limit_ms);
void sp_watchdog_destroy(sp_watchdog *w);
/* Around every call into the script (main thread only). */
void sp_watchdog_enter(sp_watchdog *w);
void sp_watchdog_leave(sp_watchdog *w);
/* Around a wait of sproc's own inside a call (on 1, then 0): room in the
 * producer's queue while a broker fails over is not the script's time,
 * and the record's time starts again after it. No-op outside a call. */
void sp_watchdog_wait(sp_watchdog *w, int on);
/* How many times the script was interrupted. */
int64_t sp_watchdog_interrupts(const sp_watchdog *w);

#endif
