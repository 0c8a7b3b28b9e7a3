/*
 * A slot's ring of the last errors has more than one writer thread: the
 * worker's own lines and librdkafka's, which its log callback writes from
 * librdkafka's threads. Writers racing for one entry must not mix their
 * lines, and the status page, reading while they write, must show only
 * whole lines: each entry it shows is one line exactly as written.
 *
 * Three threads write numbered lines of differing lengths, each filled
 * with its own letter, while the page (http_status_json) is built again
 * and again; every line it shows is checked whole. At the end the ring
 * counts every line written (none lost to a race) and the page shows
 * METRICS_N_ERRORS whole lines.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "http_internal.h"
#include "metrics.h"
#include "testkit.h"

#define WRITERS 3
#define LINES_EACH 1000000
#define PAGES_MAX 2000
#define READ_MS 3000

static metrics_slot *g_slot;
static int g_stop;
static long g_written[WRITERS];

/* Line k of writer w: "w<w> k<k> " then w's letter up to its length. */
static size_t make_line(int w, int k, char *buf, size_t size)
{
    size_t len = 120 + (size_t)((w * 37 + k) % 180), at;

    at = (size_t)snprintf(buf, size, "w%d k%d ", w, k);
    for (; at < len && at < size - 1; at++)
        buf[at] = (char)('a' + w);
    buf[at] = '\0';
    return at;
}

/* 1 when line is a line one writer wrote, whole. */
static int whole(const char *line)
{
    char want[METRICS_ERROR_MAX];
    int w, k;

    if (sscanf(line, "w%d k%d ", &w, &k) != 2 || w < 0 || w >= WRITERS ||
        k < 0 || k >= LINES_EACH)
        return 0;
    make_line(w, k, want, sizeof(want));
    return strcmp(line, want) == 0;
}

static void *writer(void *arg)
{
    int w = (int)(long)arg, k;
    char line[METRICS_ERROR_MAX];

    for (k = 0; k < LINES_EACH && !__atomic_load_n(&g_stop, __ATOMIC_RELAXED);
         k++) {
        size_t len = make_line(w, k, line, sizeof(line));
        metrics_note_error(g_slot, line, len);
    }
    g_written[w] = k;
    return NULL;
}

int main(void)
{
    static char *pipelines[] = {"p"};
    exactly_http h;
    pthread_t th[WRITERS];
    long long deadline = tk_now_ms() + READ_MS;
    long pages = 0, shown = 0, torn = 0, written = 0;
    char first_torn[METRICS_ERROR_MAX + 1] = "";
    json_t *st, *errors, *e;
    size_t i;
    int w;

    g_slot = metrics_map(1);
    TK_CHECK(g_slot != NULL, "metrics_map failed");
    snprintf(g_slot->pipeline, sizeof(g_slot->pipeline), "p");
    memset(&h, 0, sizeof(h));
    h.slots = g_slot;
    h.n = 1;
    h.pipelines = pipelines;
    h.n_pipelines = 1;
    pthread_mutex_init(&h.mu, NULL);

    for (w = 0; w < WRITERS; w++)
        TK_CHECK(pthread_create(&th[w], NULL, writer, (void *)(long)w) == 0,
                 "pthread_create failed");
    while (pages < PAGES_MAX && tk_now_ms() < deadline) {
        st = http_status_json(&h);
        errors = json_object_get(
            json_array_get(json_object_get(st, "pipelines"), 0), "errors");
        json_array_foreach(errors, i, e) {
            const char *line = json_string_value(json_object_get(e, "line"));
            shown++;
            if (!line || !whole(line)) {
                if (!torn++)
                    snprintf(first_torn, sizeof(first_torn), "%s",
                             line ? line : "(none)");
            }
        }
        json_decref(st);
        pages++;
    }
    __atomic_store_n(&g_stop, 1, __ATOMIC_RELAXED);
    for (w = 0; w < WRITERS; w++) {
        pthread_join(th[w], NULL);
        written += g_written[w];
    }
    tk_note("%ld lines written, %ld pages built meanwhile, %ld lines shown",
            written, pages, shown);
    TK_CHECK(torn == 0, "%ld of %ld lines the page showed were not one "
                        "line as written, the first: \"%s\"",
             torn, shown, first_torn);
    TK_CHECK_EQ_INT64(g_slot->n_errors, written, "lines the ring counts");

    /* At rest the page shows the last METRICS_N_ERRORS lines, whole. */
    st = http_status_json(&h);
    errors = json_object_get(
        json_array_get(json_object_get(st, "pipelines"), 0), "errors");
    TK_CHECK_EQ_INT64(json_array_size(errors), METRICS_N_ERRORS,
                      "errors on the page at rest");
    json_array_foreach(errors, i, e) {
        const char *line = json_string_value(json_object_get(e, "line"));
        TK_CHECK(line && whole(line), "at rest, a line is not whole: \"%s\"",
                 line ? line : "(none)");
    }
    json_decref(st);
    pthread_mutex_destroy(&h.mu);
    metrics_unmap(g_slot, 1);
    return 0;
}
