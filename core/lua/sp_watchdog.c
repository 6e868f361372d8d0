#include "sp_watchdog.h"

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "sp_clock.h"

struct sp_watchdog {
    lua_State *L;
    const int32_t *cur;
    int64_t limit_ms;
    pthread_t main, thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop, running; /* under mu */
    /* odd while inside a call; the call and record the thread found stuck */
    atomic_uint_fast64_t calls, fire_calls;
    atomic_int_fast32_t fire_cur;
    volatile sig_atomic_t armed; /* the hook is set (main thread) */
    int waiting;                 /* in sp_watchdog_wait (main thread) */
    int64_t in_sproc;            /* hook calls spent in sproc's own code */
    int64_t interrupts;
};

/* The watchdog inside a call, for the signal handler and the hook; the
 * one whose state LuaJIT's profiler runs on. */
static _Atomic(sp_watchdog *) current;
static sp_watchdog *profiling;

/* The count hook: raises the error where the script's own code runs. */
static void hook(lua_State *L, lua_Debug *ar) {
    sp_watchdog *w = atomic_load(&current);
    if (!w) {
        lua_sethook(L, NULL, 0, 0);
        return;
    }
    if (!lua_getinfo(L, "Sl", ar)) return;
    /* sproc's modules: the script's code is next (or, a loop of sproc's
     * own, after ten million instructions here) */
    if (strncmp(ar->source, "@[sproc]", 8) == 0 && w->in_sproc++ < 10000000) return;
    lua_sethook(L, NULL, 0, 0);
    w->armed = 0;
    w->in_sproc = 0;
    w->interrupts++;
    lua_pushfstring(L, "%s:%d: interrupted: one record kept the script busy for more than %d ms "
                       "(sproc.script.timeout.ms)",
                    ar->short_src, ar->currentline, (int)w->limit_ms);
    lua_error(L);
}

/* On the main thread, sent by the watchdog's thread. */
static void on_signal(int sig) {
    (void)sig;
    sp_watchdog *w = atomic_load(&current);
    if (!w || atomic_load(&w->calls) != atomic_load(&w->fire_calls)) return;
    w->armed = 1;
    lua_sethook(w->L, hook, LUA_MASKCOUNT, 1);
    /* LuaJIT's own profiler signal: compiled code leaves its trace at the
     * next line, and the interpreter then runs the hook */
    raise(SIGPROF);
}

static void *watch(void *arg) {
    sp_watchdog *w = arg;
    uint_fast64_t seen_calls = 0;
    int32_t seen_cur = -1;
    double since = sp_clock_s(), limit = (double)w->limit_ms / 1000.0;
    long tick_ms = (long)(w->limit_ms / 10);
    if (tick_ms < 5) tick_ms = 5;
    if (tick_ms > 500) tick_ms = 500;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += tick_ms * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&w->cv, &w->mu, &until);
        if (w->stop) break;
        uint_fast64_t calls = atomic_load(&w->calls);
        double now = sp_clock_s();
        /* the batch is read only while a call is on (its owner may be gone
         * between calls) */
        int32_t cur = calls & 1 ? __atomic_load_n(w->cur, __ATOMIC_RELAXED) : -1;
        if (!(calls & 1) || calls != seen_calls || cur != seen_cur) {
            seen_calls = calls;
            seen_cur = cur;
            since = now;
            continue;
        }
        if (now - since < limit ||
            (atomic_load(&w->fire_calls) == calls && atomic_load(&w->fire_cur) == cur))
            continue;
        atomic_store(&w->fire_cur, cur);
        atomic_store(&w->fire_calls, calls);
        pthread_kill(w->main, SIGRTMIN + 5);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* The profiler only has to make compiled code leave for the interpreter. */
static void on_profile(void *data, lua_State *L, int samples, int vmstate) {
    (void)data, (void)L, (void)samples, (void)vmstate;
}

sp_watchdog *sp_watchdog_create(void *L, const int32_t *cur, int64_t limit_ms) {
    static int installed;
    sp_watchdog *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->L = L;
    w->cur = cur;
    w->limit_ms = limit_ms;
    w->main = pthread_self();
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (!installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        installed = sigaction(SIGRTMIN + 5, &sa, NULL) == 0;
    }
    /* the thread takes no signal: the profiler's and ours go to the
     * main thread */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    w->running = installed && pthread_create(&w->thread, NULL, watch, w) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!w->running) {
        sp_watchdog_destroy(w);
        return NULL;
    }
    return w;
}

void sp_watchdog_destroy(sp_watchdog *w) {
    if (!w) return;
    if (w->running) {
        pthread_mutex_lock(&w->mu);
        w->stop = 1;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
    }
    if (profiling == w) {
        luaJIT_profile_stop(w->L);
        profiling = NULL;
    }
    sp_watchdog *self = w;
    atomic_compare_exchange_strong(&current, &self, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

void sp_watchdog_enter(sp_watchdog *w) {
    if (profiling != w) {
        /* one profiler per process: it follows the state that runs (a
         * reload's new one); starting it recompiles that state's code */
        if (profiling) luaJIT_profile_stop(profiling->L);
        luaJIT_profile_start(w->L, "l", on_profile, NULL);
        /* its timer stays off: while a process CPU timer is armed, Linux
         * makes every read of the process's CPU clock (os.clock) some
         * 100 times slower (a loop on os.clock ran 0.5 s bare, 30-60 s
         * with it); the watchdog raises the profiler's signal itself */
        setitimer(ITIMER_PROF, &(struct itimerval){{0, 0}, {0, 0}}, NULL);
        profiling = w;
    }
    atomic_store(&current, w);
    atomic_fetch_add(&w->calls, 1);
}

void sp_watchdog_leave(sp_watchdog *w) {
    atomic_fetch_add(&w->calls, 1);
    atomic_store(&current, NULL);
    if (w->armed) {
        lua_sethook(w->L, NULL, 0, 0);
        w->armed = 0;
    }
    w->in_sproc = 0;
}

/* An even count is "outside a call" to the thread and the signal handler;
 * the odd one after the wait is a new call, so the record's time starts
 * again. A hook the handler set before the count moved is taken back. */
void sp_watchdog_wait(sp_watchdog *w, int on) {
    if (on ? w->waiting || !(atomic_load(&w->calls) & 1) : !w->waiting) return;
    w->waiting = on;
    atomic_fetch_add(&w->calls, 1);
    if (on && w->armed) {
        lua_sethook(w->L, NULL, 0, 0);
        w->armed = 0;
    }
}

int64_t sp_watchdog_interrupts(const sp_watchdog *w) { return w ? w->interrupts : 0; }
