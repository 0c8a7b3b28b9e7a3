/*
 * http_status.c - the status as JSON (/status.json, and what the page
 * shows): workers, partitions and relays from the shared metrics slots,
 * offsets and dead letters from the status reader's last answer. A slot
 * is read with relaxed atomic loads; the reader's answer under h->mu.
 */
#include "http.h"

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_internal.h"
#include "metrics_render.h"

static json_t *jint(long long v) { return json_integer((json_int_t)v); }

void http_iso_time(long long ms, char *buf, size_t size)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char base[32];

    gmtime_r(&t, &tm);
    if (strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        base[0] = '\0';
    snprintf(buf, size, "%s.%03dZ", base, (int)(ms % 1000));
}

long long http_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long http_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The live owner of topic/partition in pipeline p: slot index, entry;
 * -1 when no live worker has it. */
static long find_owner(const exactly_http *h, const char *pipeline,
                       const char *topic, int32_t partition,
                       const metrics_partition **out)
{
    size_t i, j;

    for (i = 0; i < h->n; i++) {
        if (strcmp(h->slots[i].pipeline, pipeline) != 0)
            continue;
        for (j = 0; j < METRICS_MAX_PARTITIONS; j++) {
            const metrics_partition *pp = &h->slots[i].parts[j];
            if (pp->topic[0] && pp->partition == partition &&
                strcmp(pp->topic, topic) == 0 &&
                metrics_is_owner(h->slots, h->n, i, pp)) {
                *out = pp;
                return (long)i;
            }
        }
    }
    return -1;
}

/* One partition's row: the database's stored offset and owner when read,
 * the live owner's watermark, state and counters. */
static json_t *partition_json(const exactly_http *h, size_t p,
                              const char *topic, int32_t partition,
                              const json_t *dbrow)
{
    const metrics_partition *pp = NULL;
    long slot = find_owner(h, h->pipelines[p], topic, partition, &pp);
    json_t *o = json_object();
    json_t *stored = dbrow ? json_object_get(dbrow, "stored") : NULL;
    long long st = -1, lso = -1;
    double rate = 0;
    size_t k;

    if (stored && json_is_integer(stored))
        st = (long long)json_integer_value(stored);
    else if (pp && __atomic_load_n(&pp->stored_offset, __ATOMIC_RELAXED) >= 0)
        st = (long long)__atomic_load_n(&pp->stored_offset, __ATOMIC_RELAXED);
    if (pp)
        lso = (long long)__atomic_load_n(&pp->high_watermark, __ATOMIC_RELAXED);
    for (k = 0; k < h->n_rates; k++)
        if (h->rates[k].pipeline == p && h->rates[k].partition == partition &&
            strcmp(h->rates[k].topic, topic) == 0)
            rate = h->rates[k].rate;
    json_object_set_new(o, "topic", json_string(topic));
    json_object_set_new(o, "partition", jint(partition));
    json_object_set_new(o, "stored", st >= 0 ? jint(st) : json_null());
    json_object_set_new(o, "lso", lso >= 0 ? jint(lso) : json_null());
    json_object_set_new(o, "lag", st >= 0 && lso >= 0 ? jint(lso - st) : json_null());
    json_object_set_new(o, "rate", json_real((double)(long long)(rate * 10) / 10));
    {
        json_t *owner = dbrow ? json_object_get(dbrow, "owner") : NULL;
        json_object_set_new(o, "owner", owner ? json_deep_copy(owner) : json_null());
    }
    json_object_set_new(o, "worker", slot >= 0 ? jint(h->slots[slot].worker) : json_null());
    if (pp) {
        int s = __atomic_load_n(&pp->state, __ATOMIC_RELAXED);
        if (__atomic_load_n(&pp->halted, __ATOMIC_RELAXED))
            s = PART_HALTED;
        json_object_set_new(o, "state",
                            json_string(s >= 0 && s < PART_N_STATES
                                            ? metrics_part_state_names[s]
                                            : "running"));
    } else {
        json_object_set_new(o, "state", json_string("unassigned"));
    }
    return o;
}

static int cmp_part(const void *a, const void *b)
{
    json_t *const *x = a, *const *y = b;
    int c = strcmp(json_string_value(json_object_get(*x, "topic")),
                   json_string_value(json_object_get(*y, "topic")));
    if (c)
        return c;
    return (int)(json_integer_value(json_object_get(*x, "partition")) -
                 json_integer_value(json_object_get(*y, "partition")));
}

/* Appends the last warnings and errors of slot s to errors, each tagged
 * with key: value. An entry being rewritten as it is read is left out:
 * every line shown is one line whole (metrics_error_read). */
static void slot_errors(const metrics_slot *s, json_t *errors,
                        const char *key, json_t *value)
{
    uint64_t ne = __atomic_load_n(&s->n_errors, __ATOMIC_ACQUIRE), e;

    for (e = ne > METRICS_N_ERRORS ? ne - METRICS_N_ERRORS : 0; e < ne; e++) {
        metrics_error me;
        char when[64];
        json_t *eo, *ls;
        if (!metrics_error_read(s, e, &me))
            continue;
        eo = json_object();
        http_iso_time(me.at_ms, when, sizeof(when));
        json_object_set(eo, key, value);
        json_object_set_new(eo, "at", json_string(when));
        ls = json_string(me.line);
        json_object_set_new(eo, "line", ls ? ls : json_string("(not UTF-8)"));
        json_array_append_new(errors, eo);
    }
    json_decref(value);
}

/* Seconds until the supervisor starts slot s's process again, while it
 * waits for its restart (a backoff after a crash or after quick exits
 * 0); null while it runs or once it is finished. */
static json_t *restart_in_json(const metrics_slot *s)
{
    long long at = __atomic_load_n(&s->restart_at_ms, __ATOMIC_RELAXED);
    long long left;

    if (at <= 0 || __atomic_load_n(&s->up, __ATOMIC_RELAXED) ||
        !__atomic_load_n(&s->meant, __ATOMIC_RELAXED))
        return json_null();
    left = at - http_mono_ms();
    return json_real(left > 0 ? (double)left / 1000.0 : 0.0);
}

/* The relays of the slots, as the status shows them: all from the shared
 * memory (the relay process reads its outbox; this process does not). */
static json_t *relays_json(const exactly_http *h)
{
    json_t *arr = json_array();
    size_t i;

    for (i = 0; i < h->n; i++) {
        const metrics_slot *s = &h->slots[i];
        const metrics_relay *r = &s->relay;
        int up = __atomic_load_n(&s->up, __ATOMIC_RELAXED);
        int32_t pid = __atomic_load_n(&s->pid, __ATOMIC_RELAXED);
        int known = up && __atomic_load_n(&r->backlog_known, __ATOMIC_RELAXED);
        json_t *o, *errors;

        if (!r->name[0])
            continue;
        o = json_object();
        errors = json_array();
        json_object_set_new(o, "name", json_string(r->name));
        json_object_set_new(o, "pid", pid > 0 ? jint(pid) : json_null());
        json_object_set_new(o, "up", json_boolean(up));
        json_object_set_new(o, "ready", json_boolean(__atomic_load_n(&s->ready, __ATOMIC_RELAXED)));
        json_object_set_new(o, "publishing", json_boolean(up && __atomic_load_n(&r->publishing, __ATOMIC_RELAXED)));
        json_object_set_new(o, "restarts", jint((long long)__atomic_load_n(&s->restarts, __ATOMIC_RELAXED)));
        json_object_set_new(o, "restart_in_s", restart_in_json(s));
        json_object_set_new(o, "published", jint((long long)__atomic_load_n(&r->published, __ATOMIC_RELAXED)));
        json_object_set_new(o, "dead_lettered", jint((long long)__atomic_load_n(&r->dead_lettered, __ATOMIC_RELAXED)));
        json_object_set_new(o, "resent", jint((long long)__atomic_load_n(&r->resent, __ATOMIC_RELAXED)));
        json_object_set_new(o, "pending", known ? jint(__atomic_load_n(&r->pending, __ATOMIC_RELAXED)) : json_null());
        json_object_set_new(o, "oldest_pending_s",
                            known ? json_real((double)__atomic_load_n(&r->oldest_pending_ms, __ATOMIC_RELAXED) / 1000.0)
                                  : json_null());
        slot_errors(s, errors, "relay", json_string(r->name));
        json_object_set_new(o, "errors", errors);
        json_array_append_new(arr, o);
    }
    return arr;
}

/* The workers of pipeline name, from their slots; their last errors are
 * appended to errors. */
static json_t *workers_json(const exactly_http *h, const char *name,
                            json_t *errors)
{
    json_t *workers = json_array();
    size_t i;

    for (i = 0; i < h->n; i++) {
        const metrics_slot *s = &h->slots[i];
        json_t *w;
        if (strcmp(s->pipeline, name) != 0)
            continue;
        w = json_object();
        json_object_set_new(w, "worker", jint(s->worker));
        json_object_set_new(w, "pid", __atomic_load_n(&s->pid, __ATOMIC_RELAXED) > 0
                                          ? jint(__atomic_load_n(&s->pid, __ATOMIC_RELAXED))
                                          : json_null());
        json_object_set_new(w, "up", json_boolean(__atomic_load_n(&s->up, __ATOMIC_RELAXED)));
        json_object_set_new(w, "ready", json_boolean(__atomic_load_n(&s->ready, __ATOMIC_RELAXED)));
        json_object_set_new(w, "restarts", jint((long long)__atomic_load_n(&s->restarts, __ATOMIC_RELAXED)));
        json_object_set_new(w, "restart_in_s", restart_in_json(s));
        json_object_set_new(w, "batches_committed",
                            jint((long long)__atomic_load_n(&s->batches_committed, __ATOMIC_RELAXED)));
        json_array_append_new(workers, w);
        slot_errors(s, errors, "worker", jint(s->worker));
    }
    return workers;
}

/* Adds to parts[0..*n_parts) the partitions a live worker of pipeline p
 * holds that have no entry yet (no stored row). Returns parts, which
 * may have moved. */
static json_t **add_held_partitions(const exactly_http *h, size_t p,
                                    json_t **parts, size_t *n_parts)
{
    const char *name = h->pipelines[p];
    size_t i, j;

    for (i = 0; parts && i < h->n; i++) {
        if (strcmp(h->slots[i].pipeline, name) != 0)
            continue;
        for (j = 0; j < METRICS_MAX_PARTITIONS; j++) {
            const metrics_partition *pp = &h->slots[i].parts[j];
            size_t q;
            int seen = 0;
            if (!pp->topic[0] || !metrics_is_owner(h->slots, h->n, i, pp))
                continue;
            for (q = 0; q < *n_parts && !seen; q++)
                seen = json_integer_value(json_object_get(parts[q], "partition")) == pp->partition &&
                       strcmp(json_string_value(json_object_get(parts[q], "topic")), pp->topic) == 0;
            if (seen)
                continue;
            {
                json_t **v = realloc(parts, (*n_parts + 1) * sizeof(*v));
                if (!v)
                    return parts;
                parts = v;
                parts[(*n_parts)++] = partition_json(h, p, pp->topic, pp->partition, NULL);
            }
        }
    }
    return parts;
}

/* Partitions of pipeline p: every stored row (offsets, from the database),
 * and any a live worker holds that has no row yet; sorted. */
static json_t *partitions_json(const exactly_http *h, size_t p,
                               json_t *offsets)
{
    json_t **parts, *partarr = json_array();
    size_t n_parts, k;

    n_parts = (offsets ? json_array_size(offsets) : 0) + h->n * 8 + 1;
    parts = calloc(n_parts, sizeof(*parts));
    n_parts = 0;
    if (parts && offsets) {
        json_t *row;
        json_array_foreach(offsets, k, row)
            parts[n_parts++] = partition_json(
                h, p, json_string_value(json_object_get(row, "topic")),
                (int32_t)json_integer_value(json_object_get(row, "partition")),
                row);
    }
    parts = add_held_partitions(h, p, parts, &n_parts);
    if (parts)
        qsort(parts, n_parts, sizeof(*parts), cmp_part);
    for (k = 0; parts && k < n_parts; k++)
        json_array_append_new(partarr, parts[k]);
    free(parts);
    return partarr;
}

/* The dead letters of a pipeline as the database last said (dbp: its
 * part of the reader's answer; NULL: not read). The reader counts the
 * newest STATUS_DEAD_LETTERS_COUNTED only: a total that reaches it is a
 * lower bound (total_at_least), and by_reason is of those newest. */
static json_t *dead_letters_json(json_t *dbp)
{
    json_t *dl = json_object();

    json_object_set_new(dl, "counted_max", jint(STATUS_DEAD_LETTERS_COUNTED));
    if (dbp) {
        json_t *r;
        json_int_t total = 0;
        size_t k;
        json_array_foreach(json_object_get(dbp, "dead_letters_by_reason"), k, r)
            total += json_integer_value(json_object_get(r, "count"));
        json_object_set_new(dl, "total", jint(total));
        json_object_set_new(dl, "total_at_least",
                            json_boolean(total >= STATUS_DEAD_LETTERS_COUNTED));
        json_object_set(dl, "by_reason", json_object_get(dbp, "dead_letters_by_reason"));
        json_object_set(dl, "newest", json_object_get(dbp, "dead_letters_newest"));
    } else {
        json_object_set_new(dl, "total", json_null());
        json_object_set_new(dl, "total_at_least", json_false());
        json_object_set_new(dl, "by_reason", json_array());
        json_object_set_new(dl, "newest", json_array());
    }
    return dl;
}

/* Pipeline p: its workers, partitions, dead letters and last errors (db:
 * a copy of the reader's last answer, or NULL). Called under h->mu. */
static json_t *pipeline_json(exactly_http *h, size_t p, json_t *db)
{
    const char *name = h->pipelines[p];
    json_t *pipe = json_object(), *errors = json_array();
    json_t *dbp = db ? json_object_get(json_object_get(db, "pipelines"), name) : NULL;
    json_t *offsets = dbp ? json_object_get(dbp, "offsets") : NULL;

    json_object_set_new(pipe, "name", json_string(name));
    json_object_set_new(pipe, "workers", workers_json(h, name, errors));
    json_object_set_new(pipe, "partitions", partitions_json(h, p, offsets));
    json_object_set_new(pipe, "dead_letters", dead_letters_json(dbp));
    json_object_set_new(pipe, "errors", errors);
    return pipe;
}

/* What the page says of the database (db: the reader's last answer, or
 * NULL when it has not answered yet). */
static json_t *database_json(json_t *db)
{
    json_t *d = json_object();

    if (db) {
        json_object_set(d, "ok", json_object_get(db, "ok"));
        json_object_set(d, "error", json_object_get(db, "error"));
        json_object_set(d, "read_at", json_object_get(db, "read_at"));
        json_object_set(d, "rows_read_at", json_object_get(db, "rows_read_at"));
    } else {
        json_object_set_new(d, "ok", json_false());
        json_object_set_new(d, "error", json_string("not read yet"));
    }
    return d;
}

json_t *http_status_json(exactly_http *h)
{
    json_t *root = json_object(), *pipes = json_array(), *db;
    char at[64];
    size_t p;

    http_iso_time(http_wall_ms(), at, sizeof(at));
    json_object_set_new(root, "generated_at", json_string(at));
    pthread_mutex_lock(&h->mu);
    db = h->db ? json_deep_copy(h->db) : NULL;
    for (p = 0; p < h->n_pipelines; p++)
        json_array_append_new(pipes, pipeline_json(h, p, db));
    pthread_mutex_unlock(&h->mu);
    json_object_set_new(root, "database", database_json(db));
    json_decref(db);
    json_object_set_new(root, "pipelines", pipes);
    json_object_set_new(root, "relays", relays_json(h));
    return root;
}
