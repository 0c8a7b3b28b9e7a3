/*
 * dlq.c - selection, list and discard of dead letters: see dlq.h.
 */
#include "ops/dlq.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "pg_conn.h"
#include "pg_open.h"
#include "store_exec.h"
#include "store_runs.h"
#include "store_version.h"

void ops_dlq_sel_init(ops_dlq_sel *s)
{
    memset(s, 0, sizeof(*s));
    s->partition = -1;
    s->limit = -1;
}

void ops_dlq_sel_free(ops_dlq_sel *s)
{
    free(s->ids);
    free(s->entities);
    s->ids = NULL;
    s->entities = NULL;
    s->n_ids = s->cap_ids = s->n_entities = s->cap_entities = 0;
}

/* Makes room for one more element of size sz in *v; -1 when out of
 * memory. */
static int grow(void **v, size_t n, size_t *cap, size_t sz)
{
    void *nv;
    size_t c;

    if (n < *cap)
        return 0;
    c = *cap ? *cap * 2 : 8;
    nv = realloc(*v, c * sz);
    if (!nv)
        return -1;
    *v = nv;
    *cap = c;
    return 0;
}

int ops_dlq_sel_add_id(ops_dlq_sel *s, int64_t id)
{
    if (grow((void **)&s->ids, s->n_ids, &s->cap_ids, sizeof(*s->ids)) != 0)
        return -1;
    s->ids[s->n_ids++] = id;
    return 0;
}

int ops_dlq_sel_add_entity(ops_dlq_sel *s, const char *entity)
{
    if (grow((void **)&s->entities, s->n_entities, &s->cap_entities,
             sizeof(*s->entities)) != 0)
        return -1;
    s->entities[s->n_entities++] = entity;
    return 0;
}

int ops_dlq_sel_narrowed(const ops_dlq_sel *s)
{
    return s->topic || s->partition >= 0 || s->n_ids > 0 ||
           s->n_entities > 0 || s->since;
}

/* The selection as the store's filter. */
static void to_filter(const ops_dlq_sel *s, store_dl_filter *f)
{
    memset(f, 0, sizeof(*f));
    f->pipeline = s->dl_pipeline;
    f->topic = s->topic;
    f->partition = s->partition;
    f->ids = s->ids;
    f->n_ids = s->n_ids;
    f->entities = s->entities;
    f->n_entities = s->n_entities;
    f->since = s->since;
    f->limit = s->limit;
}

static void name_selection(const cfg_pipeline *p, ops_dlq_sel *s)
{
    if (s->run > 0) {
        snprintf(s->dl_pipeline, sizeof(s->dl_pipeline),
                 "%s:reprocess:%" PRId64, p->name, s->run);
        snprintf(s->label, sizeof(s->label),
                 "reprocess run %" PRId64 " of pipeline %s", s->run, p->name);
    } else {
        snprintf(s->dl_pipeline, sizeof(s->dl_pipeline), "%s", p->name);
        snprintf(s->label, sizeof(s->label), "pipeline %s", p->name);
    }
}

/* The run is p's, and --since reads as a time. */
static exactly_err check_selection(PGconn *conn, const exactly_config *cfg,
                                   const cfg_pipeline *p,
                                   const ops_dlq_sel *s, char *err,
                                   size_t errsz)
{
    exactly_err rc;
    int found = 0;

    if (s->run > 0) {
        rc = store_runs_exists(conn, cfg->postgres.schema, p->name, s->run,
                               &found, err, errsz);
        if (rc != EXACTLY_OK)
            return rc == EXACTLY_EINVAL ? EXACTLY_EDATABASE : rc;
        if (!found) {
            snprintf(err, errsz, "no reprocess run %" PRId64 " of pipeline %s",
                     s->run, p->name);
            return EXACTLY_EINVAL;
        }
    }
    if (s->since) {
        char canon[64], why[1536];
        int64_t ms;
        rc = pg_parse_time(conn, s->since, &ms, canon, sizeof(canon), why,
                           sizeof(why));
        if (rc != EXACTLY_OK) {
            snprintf(err, errsz, "--since: %s", why);
            return rc;
        }
    }
    return EXACTLY_OK;
}

exactly_err ops_dlq_open(const exactly_config *cfg, const cfg_pipeline *p,
                         ops_dlq_sel *s, int writes, PGconn **conn,
                         char *err, size_t errsz)
{
    exactly_err rc;

    name_selection(p, s);
    if (writes) {
        rc = exactly_pg_connect_own_session(cfg, "exactly-dlq", conn, err,
                                            errsz);
        if (rc != EXACTLY_OK)
            return rc;
    } else {
        *conn = exactly_pg_connect(cfg, "exactly-dlq", err, errsz);
        if (!*conn)
            return EXACTLY_EDATABASE;
    }
    rc = store_check_version(*conn, cfg, NULL, err, errsz);
    if (rc == EXACTLY_EINVAL)
        rc = EXACTLY_EDATABASE;
    if (rc == EXACTLY_OK)
        rc = check_selection(*conn, cfg, p, s, err, errsz);
    if (rc != EXACTLY_OK) {
        PQfinish(*conn);
        *conn = NULL;
    }
    return rc;
}

exactly_err ops_dlq_select(PGconn *conn, const exactly_config *cfg,
                           const ops_dlq_sel *s, store_dl_row **rows,
                           size_t *n_rows, int64_t *total, char *err,
                           size_t errsz)
{
    store_dl_filter f;
    exactly_err rc;

    to_filter(s, &f);
    rc = store_dl_select(conn, cfg->postgres.schema, &f, 0, rows, n_rows, err,
                         errsz);
    if (rc != EXACTLY_OK)
        return rc;
    rc = store_dl_count(conn, cfg->postgres.schema, &f, total, err, errsz);
    if (rc != EXACTLY_OK) {
        store_dl_rows_free(*rows, *n_rows);
        *rows = NULL;
        *n_rows = 0;
    }
    return rc;
}

exactly_err ops_dlq_runs(PGconn *conn, const exactly_config *cfg,
                         const cfg_pipeline *p, char ***runs,
                         int64_t **counts, size_t *n, char *err, size_t errsz)
{
    return store_dl_runs(conn, cfg->postgres.schema, p->name, runs, counts, n,
                         err, errsz);
}

void ops_dlq_runs_free(char **runs, int64_t *counts, size_t n)
{
    store_strings_free(runs, n);
    free(counts);
}

exactly_err ops_dlq_discard(PGconn *conn, const exactly_config *cfg,
                            const ops_dlq_sel *s, int64_t *n, char *err,
                            size_t errsz)
{
    store_dl_filter f;

    to_filter(s, &f);
    return store_dl_discard(conn, cfg->postgres.schema, &f, n, err, errsz);
}

exactly_err ops_dlq_lock_selected(PGconn *conn, const exactly_config *cfg,
                                  const ops_dlq_sel *s, store_dl_row **rows,
                                  size_t *n_rows, char *err, size_t errsz)
{
    store_dl_filter f;

    to_filter(s, &f);
    return store_dl_select(conn, cfg->postgres.schema, &f, 1, rows, n_rows,
                           err, errsz);
}
