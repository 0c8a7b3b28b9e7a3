/*
 * http_reader.c - the status reader: a thread of the server process that
 * asks PostgreSQL every STATUS_PERIOD_MS (offsets, dead letters) with
 * short timeouts, on a connection it drops when a round takes longer than
 * STATUS_ROUND_MS, and keeps its last answer and each partition's
 * consumption rate under h->mu. A request never waits for the database.
 */
#include "http.h"

#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "http_internal.h"
#include "pg/pg_conn.h"
#include "strbuf.h"

/* Whether the reader was asked to stop (waits up to ms for it). */
static int reader_wait(exactly_http *h, int ms)
{
    struct timespec ts;
    int stop;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&h->mu);
    while (!h->stop && pthread_cond_timedwait(&h->cv, &h->mu, &ts) == 0)
        ;
    stop = h->stop;
    pthread_mutex_unlock(&h->mu);
    return stop;
}

static int stopping(exactly_http *h)
{
    int stop;
    pthread_mutex_lock(&h->mu);
    stop = h->stop;
    pthread_mutex_unlock(&h->mu);
    return stop;
}

/* Waits for conn's socket in short ticks until deadline or a stop.
 * Returns 0 when it is ready. */
static int wait_socket(exactly_http *h, PGconn *conn, short events,
                       long long deadline)
{
    struct pollfd pfd;

    pfd.fd = PQsocket(conn);
    pfd.events = events;
    while (http_mono_ms() < deadline && !stopping(h)) {
        int r = poll(&pfd, 1, 100);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -1;
    }
    return -1;
}

/* A connection for the status reader, made without blocking past
 * deadline; NULL with err set. */
static PGconn *reader_connect(exactly_http *h, long long deadline, char *err,
                              size_t errsz)
{
    const char *keys[] = {"dbname", "application_name", NULL};
    const char *vals[] = {h->conninfo, "exactly status", NULL};
    PGconn *conn = PQconnectStartParams(keys, vals, 1);
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;

    if (!conn || PQstatus(conn) == CONNECTION_BAD) {
        snprintf(err, errsz, "cannot connect to PostgreSQL");
        goto fail;
    }
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED) {
            snprintf(err, errsz, "cannot connect to PostgreSQL");
            goto fail;
        }
        if (wait_socket(h, conn, st == PGRES_POLLING_READING ? POLLIN : POLLOUT,
                        deadline) != 0) {
            snprintf(err, errsz, "connecting to PostgreSQL timed out");
            goto fail;
        }
        st = PQconnectPoll(conn);
    }
    if (PQsetnonblocking(conn, 1) != 0) {
        snprintf(err, errsz, "cannot connect to PostgreSQL");
        goto fail;
    }
    return conn;
fail:
    if (conn)
        PQfinish(conn);
    return NULL;
}

/* Runs one query with parameters; the result, or NULL with err set (the
 * connection is then not to be used again). */
static PGresult *reader_query(exactly_http *h, PGconn *conn, const char *sql,
                              int n_params, const char *const *params,
                              long long deadline, char *err, size_t errsz)
{
    PGresult *res, *last = NULL;

    if (!PQsendQueryParams(conn, sql, n_params, NULL, params, NULL, NULL, 0)) {
        snprintf(err, errsz, "%s", PQerrorMessage(conn));
        return NULL;
    }
    while (PQflush(conn) == 1)
        if (wait_socket(h, conn, POLLOUT, deadline) != 0)
            goto timeout;
    for (;;) {
        while (PQisBusy(conn)) {
            if (wait_socket(h, conn, POLLIN, deadline) != 0)
                goto timeout;
            if (!PQconsumeInput(conn)) {
                snprintf(err, errsz, "%s", PQerrorMessage(conn));
                PQclear(last);
                return NULL;
            }
        }
        res = PQgetResult(conn);
        if (!res)
            break;
        PQclear(last);
        last = res;
    }
    if (!last || PQresultStatus(last) != PGRES_TUPLES_OK) {
        snprintf(err, errsz, "%s",
                 last ? PQresultErrorMessage(last) : "no answer");
        PQclear(last);
        return NULL;
    }
    return last;
timeout:
    PQclear(last);
    snprintf(err, errsz, "PostgreSQL did not answer within %d ms",
             STATUS_ROUND_MS);
    return NULL;
}

static json_t *text_or_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? json_null()
                                    : json_string(PQgetvalue(r, row, col));
}

static json_t *int_or_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col)
               ? json_null()
               : json_integer((json_int_t)strtoll(PQgetvalue(r, row, col), NULL, 10));
}

/* One section of a pipeline's status: its JSON key, its query (%s: the
 * quoted schema; $1 the pipeline, $2 limit when limit is not 0), and per
 * column in order its JSON name (names, NULL-terminated) and kind in
 * types ('i' an integer, 't' text). Every query reads a bounded number of
 * rows (the offsets: one per partition), whatever the number of dead
 * letters. */
typedef struct status_section {
    const char *key;
    const char *sql;
    int limit;
    const char *const *names;
    const char *types;
} status_section;

static const char *const offsets_names[] = {"topic", "partition", "stored",
                                            "owner", NULL};
static const char *const reasons_names[] = {"reason", "count", NULL};
static const char *const newest_names[] = {
    "id", "topic", "partition", "offset", "reason", "entity_id", "sqlstate",
    "attempts", "last_failed_at", NULL};

static const status_section sections[] = {
    {"offsets",
     "SELECT topic, partition, next_offset, owner"
     " FROM %s.offsets WHERE pipeline = $1"
     " ORDER BY topic, partition",
     0, offsets_names, "tiit"},
    /* The newest $2 only, through dead_letters_newest: counting every
     * dead letter would read them all, every round. */
    {"dead_letters_by_reason",
     "SELECT reason, count(*) FROM"
     " (SELECT reason FROM %s.dead_letters WHERE pipeline = $1"
     "  ORDER BY id DESC LIMIT $2::int) newest"
     " GROUP BY reason ORDER BY count(*) DESC, reason",
     STATUS_DEAD_LETTERS_COUNTED, reasons_names, "ti"},
    {"dead_letters_newest",
     "SELECT id, topic, partition, \"offset\", reason,"
     " entity_id, sqlstate, attempts,"
     " to_char(last_failed_at AT TIME ZONE 'UTC',"
     " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
     " FROM %s.dead_letters WHERE pipeline = $1"
     " ORDER BY id DESC LIMIT $2::int",
     STATUS_NEWEST, newest_names, "itiitttit"},
};

/* The rows of section sec of pipeline name as a JSON array of objects,
 * one member per column (SQL NULL: null). Returns NULL when the query
 * failed (err set) or the SQL could not be built. */
static json_t *read_section(exactly_http *h, PGconn *conn,
                            const status_section *sec, const char *schema_q,
                            const char *name, long long deadline, char *err,
                            size_t errsz)
{
    strbuf sql = {0};
    PGresult *r = NULL;
    json_t *rows;
    char limit[16];
    const char *params[2];
    int i, c;

    snprintf(limit, sizeof(limit), "%d", sec->limit);
    params[0] = name;
    params[1] = limit;
    strbuf_printf(&sql, sec->sql, schema_q);
    if (!sql.oom)
        r = reader_query(h, conn, strbuf_str(&sql), sec->limit ? 2 : 1, params,
                         deadline, err, errsz);
    strbuf_free(&sql);
    if (!r)
        return NULL;
    rows = json_array();
    for (i = 0; i < PQntuples(r); i++) {
        json_t *o = json_object();
        for (c = 0; sec->names[c]; c++)
            json_object_set_new(o, sec->names[c],
                                sec->types[c] == 'i' ? int_or_null(r, i, c)
                                                     : text_or_null(r, i, c));
        json_array_append_new(rows, o);
    }
    PQclear(r);
    return rows;
}

/* One pipeline's rows: offsets, dead letters by reason, newest dead
 * letters. Returns the object, or NULL with err set. */
static json_t *read_pipeline(exactly_http *h, PGconn *conn, const char *name,
                             const char *schema_q, long long deadline,
                             char *err, size_t errsz)
{
    json_t *out = json_object();
    size_t k;

    for (k = 0; k < sizeof(sections) / sizeof(sections[0]); k++) {
        json_t *rows = read_section(h, conn, &sections[k], schema_q, name,
                                    deadline, err, errsz);
        if (!rows) {
            json_decref(out);
            return NULL;
        }
        json_object_set_new(out, sections[k].key, rows);
    }
    return out;
}

/* Consumption rates per partition, from the counters' growth since the
 * last round (under mu). */
static void update_rates(exactly_http *h)
{
    long long now = http_mono_ms();
    size_t i, j, k, p;

    for (p = 0; p < h->n_pipelines; p++)
        for (i = 0; i < h->n; i++) {
            if (strcmp(h->slots[i].pipeline, h->pipelines[p]) != 0)
                continue;
            for (j = 0; j < METRICS_MAX_PARTITIONS; j++) {
                const metrics_partition *pp = &h->slots[i].parts[j];
                rate_entry *e = NULL;
                uint64_t total = 0;
                size_t s, q;
                if (!pp->topic[0])
                    continue;
                for (k = 0; k < h->n_rates; k++)
                    if (h->rates[k].pipeline == p &&
                        h->rates[k].partition == pp->partition &&
                        strcmp(h->rates[k].topic, pp->topic) == 0)
                        e = &h->rates[k];
                if (e && e->at_ms == now)
                    continue; /* summed already this round */
                /* Summed over every slot: each keeps its own count. */
                for (s = 0; s < h->n; s++)
                    if (strcmp(h->slots[s].pipeline, h->pipelines[p]) == 0)
                        for (q = 0; q < METRICS_MAX_PARTITIONS; q++)
                            if (h->slots[s].parts[q].partition == pp->partition &&
                                strcmp(h->slots[s].parts[q].topic, pp->topic) == 0)
                                total += __atomic_load_n(
                                    &h->slots[s].parts[q].consumed,
                                    __ATOMIC_RELAXED);
                if (!e) {
                    rate_entry *v = realloc(h->rates,
                                            (h->n_rates + 1) * sizeof(*v));
                    if (!v)
                        return;
                    h->rates = v;
                    e = &h->rates[h->n_rates++];
                    memset(e, 0, sizeof(*e));
                    e->pipeline = p;
                    e->partition = pp->partition;
                    snprintf(e->topic, sizeof(e->topic), "%s", pp->topic);
                } else if (now > e->at_ms && total >= e->total) {
                    e->rate = (double)(total - e->total) * 1000.0 /
                              (double)(now - e->at_ms);
                }
                e->total = total;
                e->at_ms = now;
            }
        }
}

void *http_reader_main(void *arg)
{
    exactly_http *h = arg;
    PGconn *conn = NULL;

    do {
        long long deadline = http_mono_ms() + STATUS_ROUND_MS;
        char err[512] = "";
        json_t *db = json_object(), *per = json_object();
        char *schema_q = NULL;
        size_t p;
        int ok = 1;

        pthread_mutex_lock(&h->mu);
        update_rates(h);
        pthread_mutex_unlock(&h->mu);
        if (!conn)
            conn = reader_connect(h, deadline, err, sizeof(err));
        if (conn && !(schema_q = exactly_pg_ident(conn, h->schema))) {
            snprintf(err, sizeof(err), "%s", PQerrorMessage(conn));
        }
        ok = conn && schema_q;
        for (p = 0; ok && p < h->n_pipelines; p++) {
            json_t *o = read_pipeline(h, conn, h->pipelines[p], schema_q,
                                      deadline, err, sizeof(err));
            if (!o)
                ok = 0;
            else
                json_object_set_new(per, h->pipelines[p], o);
        }
        if (schema_q)
            PQfreemem(schema_q);
        if (!ok && conn) {
            PQfinish(conn); /* whatever it still owes is never read */
            conn = NULL;
        }
        {
            char at[64];
            http_iso_time(http_wall_ms(), at, sizeof(at));
            json_object_set_new(db, "ok", json_boolean(ok));
            json_object_set_new(db, "error", ok ? json_null() : json_string(err));
            json_object_set_new(db, "read_at", json_string(at));
        }
        pthread_mutex_lock(&h->mu);
        if (ok || !h->db) {
            json_object_set_new(db, "pipelines", per);
        } else {
            /* Keep the last rows seen, and say they are old. */
            json_t *old = json_object_get(h->db, "pipelines");
            json_object_set(db, "pipelines", old ? old : per);
            if (!ok) {
                json_t *at = json_object_get(h->db, "rows_read_at");
                json_object_set(db, "rows_read_at", at ? at : json_null());
            }
            json_decref(per);
        }
        if (ok)
            json_object_set(db, "rows_read_at", json_object_get(db, "read_at"));
        json_decref(h->db);
        h->db = db;
        pthread_mutex_unlock(&h->mu);
    } while (!reader_wait(h, STATUS_PERIOD_MS));
    if (conn)
        PQfinish(conn);
    return NULL;
}
