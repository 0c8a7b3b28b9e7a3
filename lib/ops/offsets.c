/*
 * offsets.c - `exactly offsets`: see offsets.h.
 */
#include "ops/offsets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "kafka/admin.h"
#include "pg_conn.h"
#include "store_offsets.h"
#include "store_version.h"

static ops_offset_view *find(ops_offsets *l, const char *pipeline,
                             const char *topic, int32_t partition)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        if (l->v[i].partition == partition && l->v[i].pipeline == pipeline &&
            strcmp(l->v[i].topic, topic) == 0)
            return &l->v[i];
    return NULL;
}

static ops_offset_view *add(ops_offsets *l, const char *pipeline,
                            const char *topic, int32_t partition)
{
    ops_offset_view *r;

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        ops_offset_view *v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return NULL;
        l->v = v;
        l->cap = cap;
    }
    r = &l->v[l->n];
    memset(r, 0, sizeof(*r));
    r->pipeline = pipeline;
    r->topic = strdup(topic);
    if (!r->topic)
        return NULL;
    r->partition = partition;
    r->committed = RD_KAFKA_OFFSET_INVALID;
    l->n++;
    return r;
}

void ops_offsets_free(ops_offsets *l)
{
    size_t i;

    for (i = 0; i < l->n; i++) {
        free(l->v[i].topic);
        free(l->v[i].owner);
        free(l->v[i].updated);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

exactly_err ops_offsets_read_pg(PGconn *conn, const exactly_config *cfg,
                                const cfg_pipeline *p, ops_offsets *l,
                                char *err, size_t errsz)
{
    store_offset_row *rows = NULL;
    size_t n = 0, i;
    exactly_err rc;

    rc = store_offsets_list(conn, cfg->postgres.schema, p->name, &rows, &n,
                            err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    for (i = 0; i < n; i++) {
        ops_offset_view *r = add(l, p->name, rows[i].topic, rows[i].partition);
        if (!r) {
            store_offset_rows_free(rows, n);
            snprintf(err, errsz, "%s", exactly_strerror(EXACTLY_ENOMEM));
            return EXACTLY_ENOMEM;
        }
        r->row = 1;
        r->stored_set = rows[i].has_next;
        r->stored = rows[i].next_offset;
        r->epoch = rows[i].owner_epoch;
        r->owner = rows[i].owner; /* taken */
        r->updated = rows[i].updated_at;
        rows[i].owner = rows[i].updated_at = NULL;
        r->owner_live = rows[i].owner_live;
        r->isolating = rows[i].isolating;
    }
    store_offset_rows_free(rows, n);
    return EXACTLY_OK;
}

/* Adds every partition of topic to l (and to parts); -1 when out of
 * memory or the topic cannot be read (warned). */
static int add_topic(rd_kafka_t *rk, const cfg_pipeline *p, const char *topic,
                     const char *reset, ops_offsets *l, ops_warn_fn *warn,
                     void *arg)
{
    char err[1024];
    int n = kafka_admin_partition_count(rk, topic, OPS_KAFKA_TIMEOUT_MS, err,
                                        sizeof(err));
    int32_t j;

    if (n < 0) {
        warn(arg, p, err);
        return -1;
    }
    for (j = 0; j < n; j++) {
        ops_offset_view *r = find(l, p->name, topic, j);
        if (!r)
            r = add(l, p->name, topic, j);
        if (!r) {
            warn(arg, p, "out of memory");
            return -1;
        }
        r->in_kafka = 1;
        snprintf(r->auto_reset, sizeof(r->auto_reset), "%s", reset);
    }
    return 0;
}

/* The committed offsets and watermarks of topic's partitions in l. */
static int read_positions(rd_kafka_t *rk, const cfg_pipeline *p,
                          const char *topic, ops_offsets *l, ops_warn_fn *warn,
                          void *arg)
{
    char err[1024], msg[1200];
    int32_t *parts = calloc(l->n + 1, sizeof(int32_t));
    int64_t *committed = calloc(l->n + 1, sizeof(int64_t));
    size_t n = 0, i;
    int failed = 0;

    if (!parts || !committed) {
        warn(arg, p, "out of memory");
        free(parts);
        free(committed);
        return -1;
    }
    for (i = 0; i < l->n; i++)
        if (l->v[i].in_kafka && l->v[i].pipeline == p->name &&
            strcmp(l->v[i].topic, topic) == 0)
            parts[n++] = l->v[i].partition;
    if (kafka_admin_committed(rk, topic, parts, n, committed,
                              OPS_KAFKA_TIMEOUT_MS, err, sizeof(err)) != 0) {
        snprintf(msg, sizeof(msg),
                 "cannot read the committed offsets of group '%s': %s",
                 p->group, err);
        warn(arg, p, msg);
        failed = 1;
    }
    for (i = 0; i < n; i++) {
        ops_offset_view *r = find(l, p->name, topic, parts[i]);
        r->committed = committed[i];
        if (kafka_admin_watermarks(rk, topic, parts[i], &r->low, &r->lso,
                                   OPS_KAFKA_TIMEOUT_MS, err,
                                   sizeof(err)) != 0) {
            warn(arg, p, err);
            failed = 1;
            continue;
        }
        r->wm_ok = 1;
    }
    free(parts);
    free(committed);
    return failed ? -1 : 0;
}

int ops_offsets_read_kafka(const exactly_config *cfg, const cfg_pipeline *p,
                           ops_offsets *l, ops_warn_fn *warn, void *arg)
{
    char err[1024], reset[16];
    rd_kafka_t *rk = kafka_admin_new(cfg, p, "offsets", reset, err,
                                     sizeof(err));
    int failed = 0;
    size_t i;

    if (!rk) {
        warn(arg, p, err);
        return -1;
    }
    for (i = 0; i < p->n_topics; i++) {
        if (add_topic(rk, p, p->topics[i], reset, l, warn, arg) != 0) {
            failed = 1;
            continue;
        }
        if (read_positions(rk, p, p->topics[i], l, warn, arg) != 0)
            failed = 1;
    }
    kafka_admin_free(rk);
    return failed ? -1 : 0;
}

int ops_offsets_read(const exactly_config *cfg, const char *only,
                     ops_offsets *l, ops_warn_fn *warn, void *arg)
{
    char err[2048];
    int failed = 0;
    PGconn *conn = exactly_pg_connect(cfg, "exactly-offsets", err, sizeof(err));
    size_t i;

    if (!conn || store_check_version(conn, cfg, NULL, err, sizeof(err)) !=
                     EXACTLY_OK) {
        warn(arg, NULL, err);
        failed = 1;
        if (conn)
            PQfinish(conn);
        conn = NULL;
    }
    for (i = 0; i < cfg->n_pipelines; i++) {
        const cfg_pipeline *p = &cfg->pipelines[i];
        if (only && strcmp(only, p->name) != 0)
            continue;
        if (conn && ops_offsets_read_pg(conn, cfg, p, l, err, sizeof(err)) !=
                        EXACTLY_OK) {
            warn(arg, p, err);
            failed = 1;
        }
        if (ops_offsets_read_kafka(cfg, p, l, warn, arg) != 0)
            failed = 1;
    }
    if (conn)
        PQfinish(conn);
    return failed ? -1 : 0;
}

static int view_cmp(const void *a, const void *b)
{
    const ops_offset_view *x = a, *y = b;
    int c = strcmp(x->pipeline, y->pipeline);

    if (c == 0)
        c = strcmp(x->topic, y->topic);
    if (c == 0)
        c = (x->partition > y->partition) - (x->partition < y->partition);
    return c;
}

void ops_offsets_sort(ops_offsets *l)
{
    if (l->n > 1)
        qsort(l->v, l->n, sizeof(*l->v), view_cmp);
}

int ops_offset_lag(const ops_offset_view *r, int64_t *lag)
{
    if (!r->wm_ok)
        return 0;
    if (r->stored_set) {
        *lag = r->lso - r->stored;
        return 1;
    }
    if (strcmp(r->auto_reset, "earliest") == 0) {
        *lag = r->lso - r->low;
        return 1;
    }
    if (strcmp(r->auto_reset, "latest") == 0) {
        *lag = 0;
        return 1;
    }
    return 0;
}

ops_part_state ops_offset_state(const ops_offset_view *r)
{
    /* A stored offset outside the log halts whichever worker gets the
     * partition (source.c: auto.offset.reset is error for them). */
    if (r->stored_set && r->wm_ok && (r->stored < r->low || r->stored > r->lso))
        return OPS_PART_HALTED;
    if (!r->row)
        return OPS_PART_NONE;
    if (!r->owner_live)
        return OPS_PART_IDLE;
    /* An owner without a stored offset: auto.offset.reset error, or the
     * row lost its position under it; either way it waits for a reset. */
    if (!r->stored_set)
        return OPS_PART_HALTED;
    return r->isolating ? OPS_PART_ISOLATING : OPS_PART_RUNNING;
}

const char *ops_part_state_name(ops_part_state s)
{
    switch (s) {
    case OPS_PART_NONE: break;
    case OPS_PART_IDLE: return "idle";
    case OPS_PART_RUNNING: return "running";
    case OPS_PART_ISOLATING: return "isolating";
    case OPS_PART_HALTED: return "halted";
    }
    return "-";
}
