/*
 * metrics.c - the slots of the metrics region as their writers use them:
 * mapping the region, finding a partition's entry, adding to a counter,
 * setting a gauge, the batch latency histogram and the ring of the last
 * errors. A slot has one writer (its worker or relay process), which
 * stores with relaxed atomics; the reading is process/metrics_render.c's.
 */
#include "metrics.h"

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

    for (i = 0; i < METRICS_N_BUCKETS; i++)
        if (secs <= metrics_buckets[i]) {
            metrics_add(&s->latency_buckets[i], 1);
            break;
        }
    metrics_add(&s->latency_count, 1);
    metrics_add(&s->latency_sum_us, (uint64_t)(micros > 0 ? micros : 0));
}


void metrics_slot_disown(metrics_slot *s)
{
    size_t j;

    for (j = 0; j < METRICS_MAX_PARTITIONS; j++)
        __atomic_store_n(&s->parts[j].assigned, 0, __ATOMIC_RELAXED);
}


void metrics_note_error(metrics_slot *s, const char *line, size_t len)
{
    uint64_t n = __atomic_load_n(&s->n_errors, __ATOMIC_RELAXED);
    metrics_error *e = &s->errors[n % METRICS_N_ERRORS];
    struct timespec ts;

    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    if (len >= sizeof(e->line))
        len = sizeof(e->line) - 1;
    clock_gettime(CLOCK_REALTIME, &ts);
    e->at_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    memcpy(e->line, line, len);
    e->line[len] = '\0';
    __atomic_store_n(&s->n_errors, n + 1, __ATOMIC_RELEASE);
}
