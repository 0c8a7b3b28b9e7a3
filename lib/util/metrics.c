/*
 * metrics.c - the slots of the metrics region as their writers use them:
 * mapping the region, finding a partition's entry, adding to a counter,
 * setting a gauge, the batch latency histogram and the ring of the last
 * errors. A slot has one writer (its worker or relay process), which
 * stores with relaxed atomics; the ring of errors, which that process's
 * threads share, is a seqlock per entry (metrics.h). The reading is
 * process/metrics_render.c's and process/http_status.c's.
 */
#include "metrics.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

const char *const metrics_part_state_names[PART_N_STATES] = {
    "running", "backing off", "breaker open", "halted", "fenced", "isolating"};

const double metrics_buckets[METRICS_N_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};

metrics_slot *metrics_map(size_t n)
{
    void *p = mmap(NULL, n * sizeof(metrics_slot), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void metrics_unmap(metrics_slot *slots, size_t n)
{
    if (slots)
        munmap(slots, n * sizeof(metrics_slot));
}

void metrics_add(uint64_t *counter, uint64_t n)
{
    __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

void metrics_set(int64_t *gauge, int64_t v)
{
    __atomic_store_n(gauge, v, __ATOMIC_RELAXED);
}

metrics_partition *metrics_part(metrics_slot *s, const char *topic,
                                int32_t partition)
{
    metrics_partition *free_entry = NULL, *given_up = NULL;
    size_t i;

    /* Entries are taken in order and never emptied for good (one that
     * changes hands is refilled at once, by this slot's one writer): the
     * first free entry ends those in use. */
    for (i = 0; i < METRICS_MAX_PARTITIONS; i++) {
        metrics_partition *p = &s->parts[i];
        if (!p->topic[0]) {
            free_entry = p;
            break;
        }
        if (p->partition == partition && strcmp(p->topic, topic) == 0)
            return p;
        if (!given_up && !__atomic_load_n(&p->assigned, __ATOMIC_RELAXED))
            given_up = p;
    }
    if (!free_entry && given_up) {
        /* A partition this slot no longer owns gives its entry up: its
         * series end, the new partition's start from zero. The topic is
         * cleared first and set last, so a reader skips the entry while
         * it changes hands. */
        __atomic_store_n(&given_up->topic[0], '\0', __ATOMIC_RELEASE);
        memset(&given_up->partition, 0,
               sizeof(*given_up) - offsetof(metrics_partition, partition));
        free_entry = given_up;
    }
    if (free_entry) {
        char name[METRICS_TOPIC_MAX];
        free_entry->partition = partition;
        free_entry->high_watermark = -1;
        free_entry->stored_offset = -1;
        snprintf(name, sizeof(name), "%s", topic);
        memcpy(free_entry->topic + 1, name + 1, sizeof(name) - 1);
        __atomic_store_n(&free_entry->topic[0], name[0], __ATOMIC_RELEASE);
    }
    return free_entry;
}

void metrics_observe_batch(metrics_slot *s, long long micros)
{
    double secs = (double)micros / 1e6;
    int i;

    /* Count and sum first, the bucket last with release: a reader that
     * loads the buckets (acquire) and then the count sees a count that
     * includes every batch of the buckets it saw (metrics_render). */
    metrics_add(&s->latency_count, 1);
    metrics_add(&s->latency_sum_us, (uint64_t)(micros > 0 ? micros : 0));
    for (i = 0; i < METRICS_N_BUCKETS; i++)
        if (secs <= metrics_buckets[i]) {
            __atomic_fetch_add(&s->latency_buckets[i], 1, __ATOMIC_RELEASE);
            break;
        }
}


void metrics_slot_disown(metrics_slot *s)
{
    size_t j;

    for (j = 0; j < METRICS_MAX_PARTITIONS; j++)
        __atomic_store_n(&s->parts[j].assigned, 0, __ATOMIC_RELAXED);
}


/* Takes the writers of a ring one at a time. A ring's writers are the
 * threads of the one process running its slot (the supervisor starts a
 * slot's next process after the last one ended), so a lock of the
 * process is enough; one that died mid-write leaves seq odd, and its
 * successor rewrites that entry. */
static pthread_mutex_t g_errors_mu = PTHREAD_MUTEX_INITIALIZER;

void metrics_note_error(metrics_slot *s, const char *line, size_t len)
{
    uint64_t n;
    metrics_error *e;
    struct timespec ts;
    size_t i;

    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    if (len >= METRICS_ERROR_MAX)
        len = METRICS_ERROR_MAX - 1;
    clock_gettime(CLOCK_REALTIME, &ts);
    pthread_mutex_lock(&g_errors_mu);
    n = __atomic_load_n(&s->n_errors, __ATOMIC_RELAXED);
    e = &s->errors[n % METRICS_N_ERRORS];
    /* Odd first, and ordered before the text: a reader that copies any
     * of the new text sees seq changed. Every byte is an atomic store, so
     * a reader racing it reads old or new bytes, never undefined ones. */
    __atomic_store_n(&e->seq, 2 * n + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&e->at_ms,
                     (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
                     __ATOMIC_RELAXED);
    for (i = 0; i < len; i++)
        __atomic_store_n(&e->line[i], line[i], __ATOMIC_RELAXED);
    __atomic_store_n(&e->line[len], '\0', __ATOMIC_RELAXED);
    __atomic_store_n(&e->seq, 2 * n + 2, __ATOMIC_RELEASE);
    __atomic_store_n(&s->n_errors, n + 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&g_errors_mu);
}

int metrics_error_read(const metrics_slot *s, uint64_t e, metrics_error *out)
{
    const metrics_error *me = &s->errors[e % METRICS_N_ERRORS];
    uint64_t want = 2 * e + 2;
    size_t i;

    if (__atomic_load_n(&me->seq, __ATOMIC_ACQUIRE) != want)
        return 0;
    out->seq = want;
    out->at_ms = __atomic_load_n(&me->at_ms, __ATOMIC_RELAXED);
    for (i = 0; i < METRICS_ERROR_MAX; i++)
        out->line[i] = __atomic_load_n(&me->line[i], __ATOMIC_RELAXED);
    out->line[METRICS_ERROR_MAX - 1] = '\0';
    /* The copy above is ordered before this second look at seq. */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return __atomic_load_n(&me->seq, __ATOMIC_RELAXED) == want;
}
