/* The sproc command line. */
#include <getopt.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_ctx.h"
#include "sp_log.h"
#include "sp_lua.h"
#include "sp_run.h"
#include "sp_settings.h"

static void usage(FILE *f) {
    fputs(
        "usage: sproc SCRIPT.lua [options]     run a pipeline\n"
        "       sproc describe SCRIPT.lua [--dot]   print its topology\n"
        "       sproc test [DIR] [busted options]   run busted specs\n"
        "       sproc reset SCRIPT.lua [--to earliest|latest|TIME] [--dry-run]\n"
        "                   [--app ID] --brokers LIST   start the application over\n"
        "       sproc capture TOPIC --brokers LIST [--partition N]... [--from OFFSET|TIME]\n"
        "                   [--to OFFSET|TIME] [--key KEY] [--max N] [--out FILE]\n"
        "                   a slice of a topic as a fixture for sproc.testing\n"
        "       sproc query SCRIPT.lua|--app ID STORE [KEY] [--brokers LIST|--at HOST:PORT]\n"
        "                   [--from X] [--to Y] [--prefix P] [--limit N]\n"
        "                   a store of the running application (processes with --metrics)\n"
        "       sproc tap SCRIPT.lua|--app ID [OPERATOR] [--out] [--rate N] [--max N]\n"
        "                   [--brokers LIST|--at HOST:PORT]\n"
        "                   a live sample of an operator's records (names: sproc describe)\n"
        "\n"
        "options:\n"
        "  --brokers LIST          Kafka bootstrap servers (env SPROC_BROKERS);\n"
        "                          with neither, an embedded dev cluster runs\n"
        "                          (--bootstrap-server LIST: the same, Kafka's name)\n"
        "  --app ID                application id: consumer group and prefix of\n"
        "                          internal topics (default: sproc.app{id} or the\n"
        "                          script's file name)\n"
        "  --start WHERE           earliest (default), latest or an ISO-8601 time:\n"
        "                          where to start without a committed offset\n"
        "  --until-end             bounded run: read every source to its current\n"
        "                          end, flush, commit and exit 0\n"
        "  --create-topics         create missing output and dead-letter topics\n"
        "                          (partitions of the source, the cluster's\n"
        "                          default replication); sproc.app{ topics }\n"
        "                          declares topics made when missing\n"
        "  --watch                 reload the script when it changes\n"
        "  --metrics HOST:PORT     serve /metrics (Prometheus), /health/live,\n"
        "                          /health/ready, /state (queries) and /tap; HOST\n"
        "                          defaults to 127.0.0.1\n"
        "  --set KEY=VALUE         a librdkafka setting (consumer./producer.\n"
        "                          prefixes pick one client) or a sproc setting\n"
        "                          (below); repeatable\n"
        "  --connect-timeout SECS  exit 1 when no broker answers for that long\n"
        "                          (default: keep retrying)\n"
        "  --log-level LEVEL       error, warn, info (default) or debug\n"
        "  --log-format FORMAT     text (default) or json\n"
        "  --quiet                 only warnings and errors\n"
        "  --version               print the version\n"
        "  --help                  this text\n"
        "\n"
        "sproc settings (--set KEY=VALUE), with their defaults:\n"
        "  sproc.batch.size=1000             records per batch\n"
        "  sproc.commit.interval.ms=1000     how often offsets (and transactions) commit\n"
        "  sproc.processing.guarantee=at_least_once   or exactly_once\n"
        "  sproc.state.dir=~/.cache/sproc/state/APP   store checkpoints (empty: none)\n"
        "  sproc.state.max.bytes=1073741824  memory budget of all stores together\n"
        "  sproc.idle.timeout.ms=0           an idle partition's stream time follows\n"
        "                                    the wall clock after that long (0: never)\n"
        "  sproc.max.task.idle.ms=0          how long joined partitions wait for an\n"
        "                                    empty one (-1: never; 0: while it has\n"
        "                                    records on the broker)\n"
        "  sproc.script.timeout.ms=10000     one record may keep the script busy this\n"
        "                                    long; then it is interrupted with an\n"
        "                                    error on the record (0: never)\n"
        "  sproc.script.heap.max.bytes=0     cap of the script's Lua heap (0: none)\n"
        "  sproc.repartition.purge.interval.ms=30000   how often records of\n"
        "                                    repartition topics the group committed\n"
        "                                    are deleted\n"
        "  sproc.dev.partitions=4            partitions of the dev cluster's topics\n"
        "  sproc.tap.max.rate=1000           records a second a tap may ask for\n"
        "  sproc.query.address=HOST:PORT     where other processes send queries for\n"
        "                                    this one's partitions (default: the\n"
        "                                    --metrics address)\n"
        "\n"
        "exit codes: 0 success, 1 runtime failure, 2 usage or script error\n",
        f);
}

static int describe(int argc, char **argv) {
    const char *script = NULL;
    int dot = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dot") == 0)
            dot = 1;
        else if (!script)
            script = argv[i];
        else {
            usage(stderr);
            return 2;
        }
    }
    if (!script) {
        usage(stderr);
        return 2;
    }
    sp_ctx *ctx = sp_ctx_create();
    sp_lua *l = ctx ? sp_lua_create(ctx) : NULL;
    const char *msg = NULL;
    int rc = 2;
    if (!l) goto done;
    /* The context keeps Kafka outputs in memory: describing touches no
     * broker. */
    const char *base = strrchr(script, '/');
    char id[256];
    snprintf(id, sizeof id, "%s", base ? base + 1 : script);
    char *dotlua = strstr(id, ".lua");
    if (dotlua) *dotlua = '\0';
    if (sp_lua_load(l, script, NULL, id, &msg) != 0) {
        fprintf(stderr, "sproc: cannot load %s:\n%s\n", script, msg);
        goto done;
    }
    rc = sp_lua_describe(l, dot, &msg) == 0 ? 0 : 1;
    if (rc) fprintf(stderr, "sproc: %s\n", msg);
done:
    sp_lua_destroy(l);
    sp_ctx_destroy(ctx);
    return rc;
}

static int run_tests(int argc, char **argv) {
    sp_ctx *ctx = sp_ctx_create();
    sp_lua *l = ctx ? sp_lua_create(ctx) : NULL;
    int rc = 1;
    if (l) {
        /* default: the specs of the current directory */
        char *args[64];
        int n = 0;
        for (int i = 1; i < argc && n < 62; i++) args[n++] = argv[i];
        if (n == 0) args[n++] = ".";
        rc = sp_lua_test(l, n, args);
    }
    sp_lua_destroy(l);
    sp_ctx_destroy(ctx);
    return rc;
}

/* glibc gives each thread that mallocs an arena of its own, up to 8 a
 * core: librdkafka's broker threads each leave a few partly used ones
 * behind. Two arenas took 10% off a pass-through run's RSS (26 to 23.6
 * MiB) at the same throughput. MALLOC_ARENA_MAX still overrides it. */
static void limit_arenas(void) {
#ifdef __GLIBC__
    if (!getenv("MALLOC_ARENA_MAX")) mallopt(M_ARENA_MAX, 2);
#endif
}

/* One option of the command line into o; -1 to go on, or the exit code. */
static int take_option(int c, sp_opts *o, const char **sets, char **argv) {
    switch (c) {
    case 'b': o->brokers = optarg; return -1;
    case 'a': o->app = optarg; return -1;
    case 's': o->start = optarg; return -1;
    case 'u': o->until_end = 1; return -1;
    case 'C': o->create_topics = 1; return -1;
    case 'w': o->watch = 1; return -1;
    case 'm': o->metrics = optarg; return -1;
    case 'S':
        if (!strchr(optarg, '=') || optarg[0] == '=') {
            fprintf(stderr, "sproc: --set takes KEY=VALUE, not '%s'\n", optarg);
            return 2;
        }
        sets[o->nsets++] = optarg;
        return -1;
    case 'c': {
        char *end;
        o->connect_timeout = strtod(optarg, &end);
        if (*end || o->connect_timeout <= 0) {
            fprintf(stderr, "sproc: --connect-timeout takes a positive number of seconds\n");
            return 2;
        }
        return -1;
    }
    case 'l': {
        static const char *const levels[] = {"error", "warn", "info", "debug"};
        for (int l = 0; l < 4; l++)
            if (strcmp(optarg, levels[l]) == 0) {
                sp_log_set_level(SP_LOG_ERROR + l);
                return -1;
            }
        fprintf(stderr, "sproc: unknown log level '%s'\n", optarg);
        return 2;
    }
    case 'f':
        if (strcmp(optarg, "json") != 0 && strcmp(optarg, "text") != 0) {
            fprintf(stderr, "sproc: --log-format takes text or json\n");
            return 2;
        }
        sp_log_set_json(strcmp(optarg, "json") == 0);
        return -1;
    case 'q': sp_log_set_level(SP_LOG_WARN); o->quiet = 1; return -1;
    case 'V': printf("sproc %s\n", sp_version()); return 0;
    case 'h': usage(stdout); return 0;
    default:
        if (optopt)
            fprintf(stderr, "sproc: option -%c is unknown or lacks its value\n", optopt);
        else
            fprintf(stderr, "sproc: unknown option '%s'\n", argv[optind - 1]);
        usage(stderr);
        return 2;
    }
}

/* The command line of a run into o; -1 to run, or the exit code. */
static int parse_options(int argc, char **argv, sp_opts *o, const char **sets) {
    static const struct option longopts[] = {
        {"brokers", required_argument, NULL, 'b'},
        {"bootstrap-server", required_argument, NULL, 'b'},
        {"app", required_argument, NULL, 'a'},
        {"start", required_argument, NULL, 's'},
        {"until-end", no_argument, NULL, 'u'},
        {"create-topics", no_argument, NULL, 'C'},
        {"watch", no_argument, NULL, 'w'},
        {"metrics", required_argument, NULL, 'm'},
        {"set", required_argument, NULL, 'S'},
        {"connect-timeout", required_argument, NULL, 'c'},
        {"log-level", required_argument, NULL, 'l'},
        {"log-format", required_argument, NULL, 'f'},
        {"quiet", no_argument, NULL, 'q'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c, rc;
    opterr = 0;
    o->sets = sets;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1)
        if ((rc = take_option(c, o, sets, argv)) >= 0) return rc;
    /* the script may come before or after the options */
    if (optind < argc) o->script = argv[optind++];
    if (!o->script || optind < argc) {
        if (optind < argc)
            fprintf(stderr, "sproc: unexpected argument '%s'\n", argv[optind]);
        else
            fprintf(stderr, "sproc: no script given\n");
        usage(stderr);
        return 2;
    }
    if (!o->brokers) {
        const char *env = getenv("SPROC_BROKERS");
        if (env && *env) o->brokers = env;
    }
    char *msg = NULL;
    if (sp_settings_check(o->sets, o->nsets, &msg) != 0) {
        fprintf(stderr, "sproc: %s\n", msg);
        free(msg);
        return 2;
    }
    return -1;
}

int main(int argc, char **argv) {
    limit_arenas();
    if (argc > 1 && strcmp(argv[1], "describe") == 0)
        return describe(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "test") == 0)
        return run_tests(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "capture") == 0) return sp_capture(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "query") == 0) return sp_query(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "tap") == 0) return sp_tap(argc - 1, argv + 1);
    int reset = argc > 1 && strcmp(argv[1], "reset") == 0, dry_run = 0;
    const char *to = "earliest";
    if (reset) {
        /* reset's own options out, the run's options for the rest */
        int n = 1;
        for (int i = 2; i < argc; i++) {
            if (strcmp(argv[i], "--dry-run") == 0)
                dry_run = 1;
            else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
                to = argv[++i];
            else
                argv[n++] = argv[i];
        }
        argc = n;
    }
    sp_opts o;
    memset(&o, 0, sizeof o);
    const char **sets = calloc((size_t)argc, sizeof *sets);
    if (!sets) return 1;
    int rc = parse_options(argc, argv, &o, sets);
    if (rc < 0) rc = reset ? sp_reset(&o, to, dry_run) : sp_run(&o);
    free(sets);
    return rc;
}
