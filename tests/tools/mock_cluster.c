/*
 * exactly-mock-cluster: a librdkafka mock Kafka cluster as a process, for
 * the demo script, benchmarks and manual runs with kcat. See usage().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testkit.h"

#define MAX_TOPICS 64

typedef struct topic_spec {
    char *name;
    int partitions;
} topic_spec;

typedef struct options {
    int brokers;
    topic_spec topics[MAX_TOPICS];
    int n_topics;
    const char *bootstrap_file;
    long long produce_ids;
    long long entities;
    const char *topic_for_ids;
    unsigned long long seed;
} options;

static void usage(FILE *out)
{
    fprintf(out,
"usage: exactly-mock-cluster [options]\n"
"\n"
"Start librdkafka's built-in mock Kafka cluster on 127.0.0.1 (ephemeral\n"
"ports) and serve it over TCP until SIGTERM or SIGINT, then exit 0.\n"
"The mock keeps everything in memory and holds only about the newest\n"
"5 MiB (or 100,000 message sets) per partition; older data is dropped.\n"
"It does not hide aborted transactions from read_committed consumers.\n"
"\n"
"  --brokers N             number of brokers (default 1)\n"
"  --topic NAME[:P]        create topic NAME with P partitions (default 1),\n"
"                          replication factor 1; repeatable\n"
"  --bootstrap-file F      also write the bootstrap servers line to F\n"
"                          (written atomically, once the cluster is ready)\n"
"  --produce-ids N         produce N zero-payload messages (key = decimal\n"
"                          entity id, empty value), message i to partition\n"
"                          i %% P, waiting for every delivery\n"
"  --entities E            entity ids drawn pseudo-randomly from 1..E\n"
"                          (default 1000)\n"
"  --topic-for-ids NAME    topic for --produce-ids (default: the first\n"
"                          --topic); must be one of the --topic topics\n"
"  --seed S                seed for the entity ids (default 1)\n"
"  -h, --help              this text\n"
"\n"
"When ready it prints the bootstrap servers (\"127.0.0.1:port,...\") as the\n"
"only line on stdout, then a one-line summary on stderr.\n"
"Exit status: 0 after SIGTERM/SIGINT, 2 on bad usage, 1 on failure.\n");
}

/* Say what is wrong with the command line and exit with status 2. */
static TK_NORETURN void die_usage(const char *fmt, ...) TK_PRINTF(1, 2);
static void die_usage(const char *fmt, ...)
{
    va_list ap;

    fputs("exactly-mock-cluster: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(see --help)\n", stderr);
    exit(2);
}

/* Parse an integer in [min, max] or exit with status 2. */
static long long parse_count(const char *flag, const char *text,
                             long long min, long long max)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "exactly-mock-cluster: %s wants an integer from %lld "
                "to %lld, got '%s'\n", flag, min, max, text);
        exit(2);
    }
    return v;
}

static void parse_topic(options *o, const char *arg)
{
    topic_spec *t;
    const char *colon = strrchr(arg, ':');
    size_t len = colon ? (size_t)(colon - arg) : strlen(arg);

    if (o->n_topics == MAX_TOPICS)
        die_usage("too many --topic options (at most 64): %s", arg);
    if (len == 0)
        die_usage("--topic wants NAME[:PARTITIONS], got '%s'", arg);
    t = &o->topics[o->n_topics++];
    t->name = strndup(arg, len);
    if (t->name == NULL) {
        perror("exactly-mock-cluster");
        exit(1);
    }
    t->partitions = colon ? (int)parse_count("--topic partitions", colon + 1, 1,
                                        100000)
                          : 1;
}

static void parse_args(options *o, int argc, char **argv)
{
    int i;

    memset(o, 0, sizeof *o);
    o->brokers = 1;
    o->entities = 1000;
    o->seed = 1;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strncmp(a, "--", 2) != 0)
            die_usage("unexpected argument '%s'", a);
        if (v == NULL)
            die_usage("%s needs a value", a);
        i++;
        if (strcmp(a, "--brokers") == 0)
            o->brokers = (int)parse_count(a, v, 1, 64);
        else if (strcmp(a, "--topic") == 0)
            parse_topic(o, v);
        else if (strcmp(a, "--bootstrap-file") == 0)
            o->bootstrap_file = v;
        else if (strcmp(a, "--produce-ids") == 0)
            o->produce_ids = parse_count(a, v, 0, LLONG_MAX);
        else if (strcmp(a, "--entities") == 0)
            o->entities = parse_count(a, v, 1, LLONG_MAX);
        else if (strcmp(a, "--topic-for-ids") == 0)
            o->topic_for_ids = v;
        else if (strcmp(a, "--seed") == 0)
            o->seed = (unsigned long long)parse_count(a, v, 0, LLONG_MAX);
        else
            die_usage("unknown option '%s'", a);
    }
}

static const topic_spec *find_topic(const options *o, const char *name)
{
    int i;

    for (i = 0; i < o->n_topics; i++)
        if (strcmp(o->topics[i].name, name) == 0)
            return &o->topics[i];
    return NULL;
}

/* Write line to path through a temporary file and rename, so a reader
 * polling for the file never sees it half written. */
static int write_atomically(const char *path, const char *line)
{
    char tmp[PATH_MAX];
    FILE *f;

    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path,
                         (long)getpid()) >= sizeof tmp)
        return -1;
    f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    if (fprintf(f, "%s\n", line) < 0) {
        fclose(f);
        goto fail;
    }
    if (fclose(f) != 0)
        goto fail;
    if (rename(tmp, path) != 0)
        goto fail;
    return 0;
fail:
    unlink(tmp);
    return -1;
}

int main(int argc, char **argv)
{
    options o;
    const topic_spec *ids_topic = NULL;
    sigset_t stop_signals;
    tk_mock *m;
    size_t distinct = 0;
    int64_t t0, produce_ms = 0;
    int i, sig, rc = 0;

    parse_args(&o, argc, argv);
    if (o.produce_ids > 0) {
        const char *name = o.topic_for_ids;
        if (name == NULL && o.n_topics > 0)
            name = o.topics[0].name;
        if (name == NULL)
            die_usage("--produce-ids needs a --topic");
        ids_topic = find_topic(&o, name);
        if (ids_topic == NULL)
            die_usage("--topic-for-ids %s is not one of the --topic topics",
                      name);
    }

    /* Block the stop signals before librdkafka starts threads, so they all
     * inherit the mask and sigwait() below is the only receiver. */
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &stop_signals, NULL) != 0) {
        perror("exactly-mock-cluster: pthread_sigmask");
        return 1;
    }

    m = tk_mock_start(o.brokers);
    for (i = 0; i < o.n_topics; i++)
        tk_mock_create_topic(m, o.topics[i].name, o.topics[i].partitions);

    if (ids_topic != NULL) {
        t0 = tk_now_ms();
        distinct = tk_produce_ids(m->bootstraps, ids_topic->name,
                                  (size_t)o.produce_ids, (size_t)o.entities,
                                  ids_topic->partitions, o.seed, NULL);
        produce_ms = tk_now_ms() - t0;
    }

    if (o.bootstrap_file != NULL &&
        write_atomically(o.bootstrap_file, m->bootstraps) != 0) {
        fprintf(stderr, "exactly-mock-cluster: cannot write %s: %s\n",
                o.bootstrap_file, strerror(errno));
        rc = 1;
        goto out;
    }
    printf("%s\n", m->bootstraps);
    fflush(stdout);
    fprintf(stderr, "exactly-mock-cluster: %d broker(s) at %s, %d topic(s)",
            o.brokers, m->bootstraps, o.n_topics);
    if (ids_topic != NULL)
        fprintf(stderr, ", produced %lld id message(s) (%zu distinct of %lld "
                "entities) to %s in %" PRId64 " ms", o.produce_ids, distinct,
                o.entities, ids_topic->name, produce_ms);
    fprintf(stderr, "; running until SIGTERM/SIGINT\n");

    for (;;) {
        int err = sigwait(&stop_signals, &sig);
        if (err == 0)
            break;
        if (err != EINTR) {
            fprintf(stderr, "exactly-mock-cluster: sigwait: %s\n",
                    strerror(err));
            rc = 1;
            goto out;
        }
    }
    fprintf(stderr, "exactly-mock-cluster: %s, shutting down\n",
            strsignal(sig));
out:
    tk_mock_stop(m);
    for (i = 0; i < o.n_topics; i++)
        free(o.topics[i].name);
    return rc;
}
