/* Hot reload: the new version built in a fresh Lua state and checked, swapped in at a batch boundary; the script and its modules watched. */
#include <sys/inotify.h>

#include "sp_run.h"

/* --- hot reload ---------------------------------------------------------- */

/* Prints what a reload changed: operators and stores, from the two
 * versions' descriptions. */
void sp_run_log_changes(const char *before, const char *after) {
    if (!before || !after) return;
    for (int pass = 0; pass < 2; pass++) {
        const char *a = pass ? before : after, *b = pass ? after : before;
        for (const char *line = a; *line;) {
            const char *end = strchr(line, '\n');
            size_t n = end ? (size_t)(end - line) : strlen(line);
            const char *t = line;
            while (t < line + n && *t == ' ') t++;
            size_t tn = n - (size_t)(t - line);
            int found = 0;
            for (const char *o = b; *o && !found;) {
                const char *oe = strchr(o, '\n');
                size_t on = oe ? (size_t)(oe - o) : strlen(o);
                const char *ot = o;
                while (ot < o + on && *ot == ' ') ot++;
                size_t otn = on - (size_t)(ot - o);
                found = otn == tn && memcmp(ot, t, tn) == 0;
                o = oe ? oe + 1 : o + on;
            }
            if (!found && tn > 0 && strncmp(t, "application ", 12) != 0)
                sp_info("  %s %.*s", pass ? "removed:" : "added:  ", (int)tn, t);
            line = end ? end + 1 : line + n;
        }
    }
}

/* Builds the new version in a fresh Lua state and checks it; at this batch
 * boundary swaps it in. A version that does not load or fit leaves the
 * running one as it is. */
/* The new version's stores get their changelogs (and state set up when
 * it is the first version with stores). */
static void open_new_stores(runner *r) {
    const char *err;
    if (!r->cons || r->ctx->nstores == 0) return;
    if (!r->rs) {
        if (sp_run_setup_state(r) != 0) sp_run_fatal(r, "reload: cannot set up the state stores");
    } else if (sp_restore_refresh(r->rs, sp_lua_app_id(r->lua)) != 0 ||
               (!r->mock && sp_restore_ensure_topics(r->rs, r->src_partitions) != 0) ||
               sp_ctx_open_changelogs(r->ctx, sp_lua_app_id(r->lua), &err) != SP_OK) {
        sp_run_fatal(r, "reload: cannot open the new stores' changelogs");
    }
}

/* The new version's sproc.on_reload hook, over the partitions held; a
 * failure hands over to the version before. Returns 0 when it ran. */
static int run_on_reload(runner *r) {
    int32_t parts[1024];
    int n = 0;
    const char *msg = NULL;
    for (int32_t k = 0; k < r->ctx->nptimes && n < 1024; k++)
        parts[n++] = sp_ctx_ptime_partition(r->ctx, k);
    if (sp_lua_on_reload(r->lua, parts, n, &msg) == 0) return 0;
    sp_error("on_reload of version %d failed: %s", r->version, msg);
    msg = "on_reload failed";
    r->ctx->batch.cur = 0;
    /* an empty batch: nothing to hand over but the pipeline */
    sp_batch_reset(r->ctx);
    sp_run_rollback(r, &msg);
    return -1;
}

/* Builds nl from the script and swaps it in; on failure the running
 * version stays (compiled again when the context was reset for nl).
 * Returns 0 when nl runs. */
static int swap_in(runner *r, sp_lua *nl) {
    const char *msg = NULL;
    if (sp_lua_prepare(nl, r->o->script, &msg) == 0) {
        sp_ctx_reset_topology(r->ctx);
        if (sp_lua_compile(nl, r->o->app, r->def_id, r->o->watch, &msg) == 0) return 0;
        const char *m2 = NULL;
        sp_ctx_reset_topology(r->ctx);
        if (sp_lua_compile(r->lua, r->o->app, r->def_id, 0, &m2) != 0)
            sp_run_fatal(r, m2 ? m2 : "reload: the running version could not be restored");
    }
    sp_error("reload of %s failed; version %d keeps running:\n%s", r->o->script, r->version, msg);
    r->reload_failures++;
    return -1;
}

void sp_run_do_reload(runner *r) {
    struct stat st;
    int64_t saved = stat(r->o->script, &st) == 0
                        ? (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000
                        : -1;
    /* What is read now is what the watcher compares with from here on: a
     * save seen half done (truncated, then written) would otherwise be
     * seen changing again and the same text reloaded a second time. */
    for (int i = 0; i < r->nwfiles; i++) {
        struct stat now;
        if (stat(r->wfiles[i], &now) == 0) r->wstats[i] = now;
    }
    sp_lua *nl = sp_lua_create(r->ctx);
    if (nl && sp_run_lua_limits(r, nl) != 0) {
        sp_lua_destroy(nl);
        nl = NULL;
    }
    if (!nl) {
        sp_error("reload: out of memory");
        return;
    }
    char *before = sp_lua_describe_text(r->lua);
    if (swap_in(r, nl) != 0) {
        sp_lua_destroy(nl);
        free(before);
        return;
    }
    r->interrupts_before += r->prev ? sp_lua_interrupts(r->prev) : 0;
    sp_lua_destroy(r->prev);
    r->prev = r->lua;
    r->lua = nl;
    r->version++;
    r->reloads++;
    char v[16];
    snprintf(v, sizeof v, "%d", r->version);
    sp_log_set_field("script_version", v);
    open_new_stores(r);
    if (run_on_reload(r) == 0) {
        char *after = sp_lua_describe_text(r->lua);
        int64_t took = saved >= 0 ? sp_run_now_ms() - saved : -1;
        sp_info("reloaded %s: version %d runs (%lld ms after the file was saved)%s", r->o->script,
                r->version, (long long)took,
                before && after && strcmp(before, after) == 0 ? "; operators and stores unchanged"
                                                              : "; changes:");
        sp_run_log_changes(before, after);
        if (r->o->watch) sp_run_watch_files(r);
        free(after);
    }
    free(before);
}

void sp_run_on_reload_due(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    runner *r = w->data;
    if (!r->stopping) sp_run_do_reload(r);
}

int sp_run_same_file(const struct stat *a, const struct stat *b) {
    return a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* The script is looked at ten times a second, to the nanosecond of its
 * times (libev's stat watcher compares whole seconds, and two saves within
 * a second can leave the same size). Editors save by writing a temporary
 * file and renaming it: a short wait lets a burst of changes settle into
 * one reload. */
void sp_run_on_watch(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)revents;
    runner *r = w->data;
    int changed = 0;
    for (int i = 0; i < r->nwfiles; i++) {
        struct stat st;
        if (stat(r->wfiles[i], &st) != 0) continue; /* gone for a moment: a rename comes */
        if (sp_run_same_file(&st, &r->wstats[i])) continue;
        r->wstats[i] = st;
        changed = 1;
    }
    if (!changed) return;
    ev_timer_stop(loop, &r->reload_w);
    ev_timer_set(&r->reload_w, 0.05, 0.0);
    ev_timer_start(loop, &r->reload_w);
}

/* A watched file's save ended: it was closed after writing (an editor
 * writing in place) or renamed into place (an editor writing a temporary
 * file), so what is read now is the whole new text. inotify tells at
 * once: the reload starts without waiting for a poll or a settling time. */
static void on_inotify(struct ev_loop *loop, ev_io *w, int revents) {
    (void)revents;
    runner *r = w->data;
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    int due = 0;
    ssize_t n;
    while ((n = read(r->inotify_fd, buf, sizeof buf)) > 0) {
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *e = (const struct inotify_event *)p;
            p += sizeof *e + e->len;
            if (!e->len || !(e->mask & (IN_CLOSE_WRITE | IN_MOVED_TO))) continue;
            for (int i = 0; i < r->nwfiles; i++) {
                const char *base = strrchr(r->wfiles[i], '/');
                base = base ? base + 1 : r->wfiles[i];
                struct stat st;
                if (strcmp(base, e->name) == 0 && stat(r->wfiles[i], &st) == 0 &&
                    !sp_run_same_file(&st, &r->wstats[i]))
                    due = 1;
            }
        }
    }
    if (!due || r->stopping) return;
    ev_timer_stop(loop, &r->reload_w);
    ev_timer_set(&r->reload_w, 0.0, 0.0);
    ev_timer_start(loop, &r->reload_w);
}

/* inotify on the directories of the watched files (a rename into place is
 * an event of the directory); -1 when it cannot be had. */
static void watch_dirs(runner *r) {
    if (r->inotify_fd >= 0) {
        ev_io_stop(r->loop, &r->inotify_w);
        close(r->inotify_fd);
    }
    r->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (r->inotify_fd < 0) return;
    for (int i = 0; i < r->nwfiles; i++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", r->wfiles[i]);
        char *slash = strrchr(dir, '/');
        if (slash == dir) slash[1] = '\0';
        else if (slash) *slash = '\0';
        else snprintf(dir, sizeof dir, ".");
        /* a directory twice gives its watch again */
        if (inotify_add_watch(r->inotify_fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
            sp_warn("cannot watch %s with inotify (%s): looking at the files every 100 ms",
                    dir, strerror(errno));
            close(r->inotify_fd);
            r->inotify_fd = -1;
            if (ev_is_active(&r->watch_w)) {
                ev_timer_stop(r->loop, &r->watch_w);
                ev_timer_set(&r->watch_w, 0.1, 0.1);
                ev_timer_start(r->loop, &r->watch_w);
            }
            return;
        }
    }
    ev_io_init(&r->inotify_w, on_inotify, r->inotify_fd, EV_READ);
    r->inotify_w.data = r;
    ev_io_start(r->loop, &r->inotify_w);
}

void sp_run_free_watched(runner *r) {
    if (r->inotify_fd >= 0) {
        ev_io_stop(r->loop, &r->inotify_w);
        close(r->inotify_fd);
        r->inotify_fd = -1;
    }
    for (int i = 0; i < r->nwfiles; i++) free(r->wfiles[i]);
    free(r->wfiles);
    free(r->wstats);
    r->wfiles = NULL;
    r->wstats = NULL;
    r->nwfiles = 0;
}

/* What the running version loaded is what is watched. */
void sp_run_watch_files(runner *r) {
    char **files = NULL;
    int n = sp_lua_watched(r->lua, r->o->script, &files);
    if (n < 0) return;
    struct stat *st = calloc((size_t)n + 1, sizeof *st);
    if (!st) {
        for (int i = 0; i < n; i++) free(files[i]);
        free(files);
        return;
    }
    for (int i = 0; i < n; i++) {
        stat(files[i], &st[i]);
        for (int j = 0; j < r->nwfiles; j++)
            if (strcmp(files[i], r->wfiles[j]) == 0) st[i] = r->wstats[j];
    }
    sp_run_free_watched(r);
    r->wfiles = files;
    r->wstats = st;
    r->nwfiles = n;
    watch_dirs(r);
}

void sp_run_on_hup(struct ev_loop *loop, ev_signal *w, int revents) {
    (void)revents;
    runner *r = w->data;
    ev_timer_stop(loop, &r->reload_w);
    ev_timer_set(&r->reload_w, 0.0, 0.0);
    ev_timer_start(loop, &r->reload_w);
}
