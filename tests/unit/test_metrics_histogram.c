/*
 * The batch latency histogram as /metrics renders it
 * (exactly_batch_duration_seconds): per worker, its buckets in ascending
 * `le` order ending with le="+Inf", cumulative and so never decreasing,
 * +Inf equal to _count, and _sum the sum of the observations; the text
 * passes `promtool check metrics` when promtool is installed.
 *
 * Then the same while the worker records batches: every scrape taken
 * meanwhile must hold the same rules (a scrape whose +Inf is below a
 * bucket, or differs from _count, is rejected or misread by Prometheus).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics.h"
#include "metrics_render.h"
#include "testkit.h"

#define SCRAPES_MAX 4000
#define SCRAPE_MS 3000
#define PREFIX "exactly_batch_duration_seconds"

typedef struct histogram {
    int n;
    double le[METRICS_N_BUCKETS + 1];
    unsigned long long bucket[METRICS_N_BUCKETS + 1];
    double sum;
    unsigned long long count;
    int has_sum, has_count;
} histogram;

/* The histogram of pipeline "p" worker 0 in text; fails on a line it
 * cannot read. */
static void parse(const char *text, histogram *h)
{
    const char *bucket = PREFIX "_bucket{pipeline=\"p\",worker=\"0\",le=\"";
    const char *sum = PREFIX "_sum{pipeline=\"p\",worker=\"0\"} ";
    const char *count = PREFIX "_count{pipeline=\"p\",worker=\"0\"} ";
    const char *l = text;

    memset(h, 0, sizeof(*h));
    while (l && *l) {
        const char *end = strchr(l, '\n');
        if (strncmp(l, bucket, strlen(bucket)) == 0) {
            char *after;
            TK_CHECK(h->n <= METRICS_N_BUCKETS, "more buckets than bounds");
            h->le[h->n] = strtod(l + strlen(bucket), &after);
            TK_CHECK(strncmp(after, "\"} ", 3) == 0, "bucket line: %.*s",
                     (int)(end ? end - l : (long)strlen(l)), l);
            h->bucket[h->n++] = strtoull(after + 3, NULL, 10);
        } else if (strncmp(l, sum, strlen(sum)) == 0) {
            h->sum = strtod(l + strlen(sum), NULL);
            h->has_sum = 1;
        } else if (strncmp(l, count, strlen(count)) == 0) {
            h->count = strtoull(l + strlen(count), NULL, 10);
            h->has_count = 1;
        }
        l = end ? end + 1 : NULL;
    }
}

/* The rules every rendering of the histogram keeps. */
static void check_shape(const histogram *h, long scrape)
{
    int b;

    TK_CHECK(h->n == METRICS_N_BUCKETS + 1 && h->has_sum && h->has_count,
             "scrape %ld: %d buckets, sum %d, count %d", scrape, h->n,
             h->has_sum, h->has_count);
    for (b = 1; b < h->n; b++) {
        TK_CHECK(h->le[b] > h->le[b - 1], "scrape %ld: le=\"%g\" after "
                 "le=\"%g\": buckets out of order", scrape, h->le[b],
                 h->le[b - 1]);
        TK_CHECK(h->bucket[b] >= h->bucket[b - 1], "scrape %ld: bucket "
                 "le=\"%g\" is %llu, below le=\"%g\"'s %llu", scrape, h->le[b],
                 h->bucket[b], h->le[b - 1], h->bucket[b - 1]);
    }
    TK_CHECK(isinf(h->le[h->n - 1]), "scrape %ld: the last bucket is "
             "le=\"%g\", not +Inf", scrape, h->le[h->n - 1]);
    TK_CHECK(h->bucket[h->n - 1] == h->count, "scrape %ld: le=\"+Inf\" is "
             "%llu, _count %llu", scrape, h->bucket[h->n - 1], h->count);
}

static void promtool_check(const char *text)
{
    char path[] = "/tmp/exactly-histogram-XXXXXX", cmd[256];
    FILE *f;
    int fd;

    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        tk_note("promtool not installed: the scrape is not linted here");
        return;
    }
    fd = mkstemp(path);
    TK_CHECK(fd >= 0, "mkstemp failed");
    f = fdopen(fd, "w");
    TK_CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0, "writing %s", path);
    snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s' >&2", path);
    TK_CHECK(system(cmd) == 0, "promtool check metrics rejects the scrape "
             "(%s, its complaint above)", path);
    unlink(path);
}

static metrics_slot *g_slot;
static int g_stop;

static void *recorder(void *arg)
{
    long long k = 0;

    (void)arg;
    while (!__atomic_load_n(&g_stop, __ATOMIC_RELAXED))
        metrics_observe_batch(g_slot, (k++ * 7919) % 12000000);
    return NULL;
}

int main(void)
{
    /* One batch at each bound, one just above it, and one above them all. */
    static const long long micros[] = {
        1000,   1001,   2500,   2501,   5000,    5001,    10000,   10001,
        25000,  25001,  50000,  50001,  100000,  100001,  250000,  250001,
        500000, 500001, 1000000, 1000001, 2500000, 2500001, 10000000,
        10000001, 60000000};
    size_t n_obs = sizeof(micros) / sizeof(micros[0]), i;
    long long total_us = 0;
    long scrapes = 0;
    long long deadline;
    histogram h;
    pthread_t th;
    char *text;
    int b;

    g_slot = metrics_map(1);
    TK_CHECK(g_slot != NULL, "metrics_map failed");
    snprintf(g_slot->pipeline, sizeof(g_slot->pipeline), "p");
    for (i = 0; i < n_obs; i++) {
        metrics_observe_batch(g_slot, micros[i]);
        total_us += micros[i];
    }
    text = metrics_render(g_slot, 1);
    TK_CHECK(text != NULL, "metrics_render failed");
    parse(text, &h);
    check_shape(&h, 0);
    for (b = 0; b < METRICS_N_BUCKETS; b++) {
        unsigned long long want = 0;
        TK_CHECK(h.le[b] == metrics_buckets[b], "bucket %d is le=\"%g\", the "
                 "bound is %g", b, h.le[b], metrics_buckets[b]);
        for (i = 0; i < n_obs; i++)
            want += (double)micros[i] / 1e6 <= metrics_buckets[b];
        TK_CHECK(h.bucket[b] == want, "le=\"%g\": %llu, expected %llu",
                 h.le[b], h.bucket[b], want);
    }
    TK_CHECK_EQ_INT64(h.count, n_obs, "_count");
    TK_CHECK(fabs(h.sum - (double)total_us / 1e6) < 1e-6, "_sum %f, the "
             "batches took %f s", h.sum, (double)total_us / 1e6);
    promtool_check(text);
    free(text);

    /* Scrapes while batches are recorded. */
    TK_CHECK(pthread_create(&th, NULL, recorder, NULL) == 0,
             "pthread_create failed");
    deadline = tk_now_ms() + SCRAPE_MS;
    while (scrapes < SCRAPES_MAX && tk_now_ms() < deadline) {
        text = metrics_render(g_slot, 1);
        TK_CHECK(text != NULL, "metrics_render failed");
        parse(text, &h);
        free(text);
        check_shape(&h, ++scrapes);
    }
    __atomic_store_n(&g_stop, 1, __ATOMIC_RELAXED);
    pthread_join(th, NULL);
    tk_note("%ld scrapes while %llu batches were recorded", scrapes,
            (unsigned long long)g_slot->latency_count);
    metrics_unmap(g_slot, 1);
    return 0;
}
