#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics_render.h"
#include "strbuf.h"

/* How often the status reader asks PostgreSQL, and how long one round may
 * take (connecting included) before it gives up on the connection. */
#define STATUS_PERIOD_MS 2000
#define STATUS_ROUND_MS 5000
/* Dead letters listed per pipeline on the page, newest first. */
#define STATUS_NEWEST 10
/* Clients: idle ones are dropped after this, and each connection's
 * request may use this much memory (a longer request line is refused). */
#define HTTP_TIMEOUT_S 10
#define HTTP_MEMORY_LIMIT (16 * 1024)
#define HTTP_MAX_CONNECTIONS 4096

/* What the status reader knows of one partition's consumption rate. */
typedef struct rate_entry {
    size_t pipeline;
    char topic[METRICS_TOPIC_MAX];
    int32_t partition;
    uint64_t total;
    long long at_ms;
    double rate;
} rate_entry;

struct exactly_http {
    /* In the supervisor: the server process and the socket it serves. */
    pid_t parent;
    pid_t pid;                /* 0: not running */
    long long started_ms;
    int stopping;
    int fd;

    /* In the server process. */
    struct MHD_Daemon *daemon;
    const metrics_slot *slots;
    size_t n;

    /* Copied from the configuration: the reader never touches cfg. */
    char *conninfo;
    char *schema;
    char **pipelines;
    size_t n_pipelines;

    pthread_t reader;
    int reader_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;                 /* under mu */
    json_t *db;               /* under mu: the last database answer */
    rate_entry *rates;        /* under mu */
    size_t n_rates;
};

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void iso_time(long long ms, char *buf, size_t size)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char base[32];

    gmtime_r(&t, &tm);
    if (strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        base[0] = '\0';
    snprintf(buf, size, "%s.%03dZ", base, (int)(ms % 1000));
}

static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ */
/* The status reader: PostgreSQL, never waiting past a deadline        */
/* ------------------------------------------------------------------ */

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
    while (mono_ms() < deadline && !stopping(h)) {
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

/* One pipeline's rows: offsets, dead letters by reason, newest dead
 * letters. Returns the object, or NULL with err set. */
static json_t *read_pipeline(exactly_http *h, PGconn *conn, const char *name,
                             const char *schema_q, long long deadline,
                             char *err, size_t errsz)
{
    const char *params[2] = {name, NULL};
    char limit[16];
    strbuf sql = {0};
    PGresult *r = NULL;
    json_t *out = json_object(), *offsets = json_array(),
           *reasons = json_array(), *newest = json_array();
    int i;

    json_object_set_new(out, "offsets", offsets);
    json_object_set_new(out, "dead_letters_by_reason", reasons);
    json_object_set_new(out, "dead_letters_newest", newest);
    strbuf_printf(&sql, "SELECT topic, partition, next_offset, owner"
                        " FROM %s.offsets WHERE pipeline = $1"
                        " ORDER BY topic, partition", schema_q);
    if (sql.oom || !(r = reader_query(h, conn, strbuf_str(&sql), 1, params,
                                      deadline, err, errsz)))
        goto fail;
    for (i = 0; i < PQntuples(r); i++) {
        json_t *o = json_object();
        json_object_set_new(o, "topic", text_or_null(r, i, 0));
        json_object_set_new(o, "partition", int_or_null(r, i, 1));
        json_object_set_new(o, "stored", int_or_null(r, i, 2));
        json_object_set_new(o, "owner", text_or_null(r, i, 3));
        json_array_append_new(offsets, o);
    }
    PQclear(r);
    strbuf_free(&sql);
    memset(&sql, 0, sizeof(sql));
    strbuf_printf(&sql, "SELECT reason, count(*) FROM %s.dead_letters"
                        " WHERE pipeline = $1 GROUP BY reason"
                        " ORDER BY count(*) DESC, reason", schema_q);
    if (sql.oom || !(r = reader_query(h, conn, strbuf_str(&sql), 1, params,
                                      deadline, err, errsz)))
        goto fail;
    for (i = 0; i < PQntuples(r); i++) {
        json_t *o = json_object();
        json_object_set_new(o, "reason", text_or_null(r, i, 0));
        json_object_set_new(o, "count", int_or_null(r, i, 1));
        json_array_append_new(reasons, o);
    }
    PQclear(r);
    strbuf_free(&sql);
    memset(&sql, 0, sizeof(sql));
    snprintf(limit, sizeof(limit), "%d", STATUS_NEWEST);
    params[1] = limit;
    strbuf_printf(&sql, "SELECT id, topic, partition, \"offset\", reason,"
                        " entity_id, sqlstate, attempts,"
                        " to_char(last_failed_at AT TIME ZONE 'UTC',"
                        " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                        " FROM %s.dead_letters WHERE pipeline = $1"
                        " ORDER BY id DESC LIMIT $2::int", schema_q);
    if (sql.oom || !(r = reader_query(h, conn, strbuf_str(&sql), 2, params,
                                      deadline, err, errsz)))
        goto fail;
    for (i = 0; i < PQntuples(r); i++) {
        json_t *o = json_object();
        json_object_set_new(o, "id", int_or_null(r, i, 0));
        json_object_set_new(o, "topic", text_or_null(r, i, 1));
        json_object_set_new(o, "partition", int_or_null(r, i, 2));
        json_object_set_new(o, "offset", int_or_null(r, i, 3));
        json_object_set_new(o, "reason", text_or_null(r, i, 4));
        json_object_set_new(o, "entity_id", text_or_null(r, i, 5));
        json_object_set_new(o, "sqlstate", text_or_null(r, i, 6));
        json_object_set_new(o, "attempts", int_or_null(r, i, 7));
        json_object_set_new(o, "last_failed_at", text_or_null(r, i, 8));
        json_array_append_new(newest, o);
    }
    PQclear(r);
    strbuf_free(&sql);
    return out;
fail:
    strbuf_free(&sql);
    json_decref(out);
    return NULL;
}

/* Consumption rates per partition, from the counters' growth since the
 * last round (under mu). */
static void update_rates(exactly_http *h)
{
    long long now = mono_ms();
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

static void *reader_main(void *arg)
{
    exactly_http *h = arg;
    PGconn *conn = NULL;

    do {
        long long deadline = mono_ms() + STATUS_ROUND_MS;
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
        if (conn && !(schema_q = PQescapeIdentifier(conn, h->schema,
                                                    strlen(h->schema)))) {
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
            iso_time(wall_ms(), at, sizeof(at));
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

/* ------------------------------------------------------------------ */
/* The status, as JSON                                                 */
/* ------------------------------------------------------------------ */

static json_t *jint(long long v) { return json_integer((json_int_t)v); }

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
 * with key: value. */
static void slot_errors(const metrics_slot *s, json_t *errors,
                        const char *key, json_t *value)
{
    uint64_t ne = __atomic_load_n(&s->n_errors, __ATOMIC_ACQUIRE), e;

    for (e = ne > METRICS_N_ERRORS ? ne - METRICS_N_ERRORS : 0; e < ne; e++) {
        const metrics_error *me = &s->errors[e % METRICS_N_ERRORS];
        char line[METRICS_ERROR_MAX], when[64];
        json_t *eo = json_object(), *ls;
        memcpy(line, me->line, sizeof(line));
        line[sizeof(line) - 1] = '\0';
        iso_time(me->at_ms, when, sizeof(when));
        json_object_set(eo, key, value);
        json_object_set_new(eo, "at", json_string(when));
        ls = json_string(line);
        json_object_set_new(eo, "line", ls ? ls : json_string("(not UTF-8)"));
        json_array_append_new(errors, eo);
    }
    json_decref(value);
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

/* Everything the page shows (the caller decrefs). */
static json_t *status_json(exactly_http *h)
{
    json_t *root = json_object(), *pipes = json_array(), *db;
    char at[64];
    size_t p, i, j;

    iso_time(wall_ms(), at, sizeof(at));
    json_object_set_new(root, "generated_at", json_string(at));
    pthread_mutex_lock(&h->mu);
    db = h->db ? json_deep_copy(h->db) : NULL;
    for (p = 0; p < h->n_pipelines; p++) {
        const char *name = h->pipelines[p];
        json_t *pipe = json_object(), *workers = json_array(),
               *errors = json_array(), *dl = json_object();
        json_t *dbp = db ? json_object_get(json_object_get(db, "pipelines"), name) : NULL;
        json_t *offsets = dbp ? json_object_get(dbp, "offsets") : NULL;
        json_t **parts = NULL;
        size_t n_parts = 0, k;
        json_int_t total = 0;
        json_t *partarr = json_array();

        json_object_set_new(pipe, "name", json_string(name));
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
            json_object_set_new(w, "batches_committed",
                                jint((long long)__atomic_load_n(&s->batches_committed, __ATOMIC_RELAXED)));
            json_array_append_new(workers, w);
            slot_errors(s, errors, "worker", jint(s->worker));
        }
        /* Partitions: every stored row, and any a live worker holds that
         * has no row yet. */
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
        for (i = 0; parts && i < h->n; i++) {
            if (strcmp(h->slots[i].pipeline, name) != 0)
                continue;
            for (j = 0; j < METRICS_MAX_PARTITIONS; j++) {
                const metrics_partition *pp = &h->slots[i].parts[j];
                size_t q;
                int seen = 0;
                if (!pp->topic[0] || !metrics_is_owner(h->slots, h->n, i, pp))
                    continue;
                for (q = 0; q < n_parts && !seen; q++)
                    seen = json_integer_value(json_object_get(parts[q], "partition")) == pp->partition &&
                           strcmp(json_string_value(json_object_get(parts[q], "topic")), pp->topic) == 0;
                if (seen)
                    continue;
                {
                    json_t **v = realloc(parts, (n_parts + 1) * sizeof(*v));
                    if (!v)
                        break;
                    parts = v;
                    parts[n_parts++] = partition_json(h, p, pp->topic, pp->partition, NULL);
                }
            }
        }
        if (parts)
            qsort(parts, n_parts, sizeof(*parts), cmp_part);
        for (k = 0; parts && k < n_parts; k++)
            json_array_append_new(partarr, parts[k]);
        free(parts);
        json_object_set_new(pipe, "workers", workers);
        json_object_set_new(pipe, "partitions", partarr);
        if (dbp) {
            json_t *r;
            json_array_foreach(json_object_get(dbp, "dead_letters_by_reason"), k, r)
                total += json_integer_value(json_object_get(r, "count"));
            json_object_set_new(dl, "total", jint(total));
            json_object_set(dl, "by_reason", json_object_get(dbp, "dead_letters_by_reason"));
            json_object_set(dl, "newest", json_object_get(dbp, "dead_letters_newest"));
        } else {
            json_object_set_new(dl, "total", json_null());
            json_object_set_new(dl, "by_reason", json_array());
            json_object_set_new(dl, "newest", json_array());
        }
        json_object_set_new(pipe, "dead_letters", dl);
        json_object_set_new(pipe, "errors", errors);
        json_array_append_new(pipes, pipe);
    }
    pthread_mutex_unlock(&h->mu);
    if (db) {
        json_t *d = json_object();
        json_object_set(d, "ok", json_object_get(db, "ok"));
        json_object_set(d, "error", json_object_get(db, "error"));
        json_object_set(d, "read_at", json_object_get(db, "read_at"));
        json_object_set(d, "rows_read_at", json_object_get(db, "rows_read_at"));
        json_object_set_new(root, "database", d);
        json_decref(db);
    } else {
        json_t *d = json_object();
        json_object_set_new(d, "ok", json_false());
        json_object_set_new(d, "error", json_string("not read yet"));
        json_object_set_new(root, "database", d);
    }
    json_object_set_new(root, "pipelines", pipes);
    json_object_set_new(root, "relays", relays_json(h));
    return root;
}

/* ------------------------------------------------------------------ */
/* The status, as a page                                               */
/* ------------------------------------------------------------------ */

static void html_text(strbuf *sb, const char *s)
{
    for (; s && *s; s++)
        switch (*s) {
        case '&': strbuf_puts(sb, "&amp;"); break;
        case '<': strbuf_puts(sb, "&lt;"); break;
        case '>': strbuf_puts(sb, "&gt;"); break;
        case '"': strbuf_puts(sb, "&quot;"); break;
        case '\'': strbuf_puts(sb, "&#39;"); break;
        default: strbuf_append(sb, s, 1);
        }
}

/* A cell with a JSON value: text escaped, numbers as they are, null as a
 * dash. cls: the cell's class (also the test's handle on it). */
static void cell(strbuf *sb, const char *cls, const json_t *v)
{
    strbuf_printf(sb, "<td class=\"%s\">", cls);
    if (!v || json_is_null(v))
        strbuf_puts(sb, "&ndash;");
    else if (json_is_string(v))
        html_text(sb, json_string_value(v));
    else if (json_is_integer(v))
        strbuf_printf(sb, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        strbuf_printf(sb, "%.1f", json_real_value(v));
    else if (json_is_boolean(v))
        strbuf_puts(sb, json_is_true(v) ? "yes" : "no");
    strbuf_puts(sb, "</td>");
}

static const char page_head[] =
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta http-equiv=\"refresh\" content=\"5\">\n"
    "<title>exactly status</title>\n<style>\n"
    "body{font:14px/1.4 sans-serif;margin:1em 2em;color:#222;background:#fafafa}\n"
    "h1{font-size:1.4em}h2{font-size:1.2em;margin-top:1.5em;border-bottom:1px solid #ccc}\n"
    "h3{font-size:1em;margin-bottom:.3em}\n"
    "table{border-collapse:collapse;margin-bottom:1em}\n"
    "th,td{border:1px solid #ccc;padding:2px 8px;text-align:left}\n"
    "th{background:#eee}td.num,td.stored,td.lso,td.lag,td.rate,td.pid,td.restarts,td.count{text-align:right}\n"
    ".state-running{color:#070}.state-halted,.state-fenced,.state-breaker.open{color:#b00;font-weight:bold}\n"
    "tr.bad td{background:#fee}.note{color:#666}pre{white-space:pre-wrap;margin:0;font-size:12px}\n"
    "</style></head><body>\n";

static char *status_html(const json_t *st)
{
    strbuf sb = {0};
    const json_t *pipe, *db = json_object_get(st, "database");
    size_t i, k;

    strbuf_puts(&sb, page_head);
    strbuf_puts(&sb, "<h1>exactly</h1>\n<p class=\"note\">Generated at <span id=\"generated\">");
    html_text(&sb, json_string_value(json_object_get(st, "generated_at")));
    strbuf_puts(&sb, "</span>; refreshes every 5 s. Same data: <a href=\"/status.json\">/status.json</a>, "
                     "<a href=\"/metrics\">/metrics</a>.</p>\n");
    if (!json_is_true(json_object_get(db, "ok"))) {
        strbuf_puts(&sb, "<p class=\"note\" id=\"db-error\">Database not read: ");
        html_text(&sb, json_string_value(json_object_get(db, "error")));
        strbuf_puts(&sb, " (offsets and dead letters as last read)</p>\n");
    }
    json_array_foreach(json_object_get(st, "pipelines"), i, pipe) {
        const json_t *v, *dl = json_object_get(pipe, "dead_letters");
        strbuf_puts(&sb, "<section class=\"pipeline\" data-pipeline=\"");
        html_text(&sb, json_string_value(json_object_get(pipe, "name")));
        strbuf_puts(&sb, "\">\n<h2>Pipeline ");
        html_text(&sb, json_string_value(json_object_get(pipe, "name")));
        strbuf_puts(&sb, "</h2>\n<h3>Workers</h3>\n<table class=\"workers\"><tr><th>worker</th>"
                         "<th>pid</th><th>up</th><th>ready</th><th>restarts</th></tr>\n");
        json_array_foreach(json_object_get(pipe, "workers"), k, v) {
            strbuf_printf(&sb, "<tr class=\"%s\">", json_is_true(json_object_get(v, "up")) ? "" : "bad");
            cell(&sb, "worker", json_object_get(v, "worker"));
            cell(&sb, "pid", json_object_get(v, "pid"));
            cell(&sb, "up", json_object_get(v, "up"));
            cell(&sb, "ready", json_object_get(v, "ready"));
            cell(&sb, "restarts", json_object_get(v, "restarts"));
            strbuf_puts(&sb, "</tr>\n");
        }
        strbuf_puts(&sb, "</table>\n<h3>Partitions</h3>\n<table class=\"partitions\"><tr>"
                         "<th>topic</th><th>partition</th><th>stored offset</th><th>LSO</th>"
                         "<th>lag</th><th>rate (msg/s)</th><th>owner</th><th>worker</th>"
                         "<th>state</th></tr>\n");
        json_array_foreach(json_object_get(pipe, "partitions"), k, v) {
            const char *state = json_string_value(json_object_get(v, "state"));
            strbuf_puts(&sb, "<tr class=\"partition-row\">");
            cell(&sb, "topic", json_object_get(v, "topic"));
            cell(&sb, "partition", json_object_get(v, "partition"));
            cell(&sb, "stored", json_object_get(v, "stored"));
            cell(&sb, "lso", json_object_get(v, "lso"));
            cell(&sb, "lag", json_object_get(v, "lag"));
            cell(&sb, "rate", json_object_get(v, "rate"));
            cell(&sb, "owner", json_object_get(v, "owner"));
            cell(&sb, "worker", json_object_get(v, "worker"));
            strbuf_puts(&sb, "<td class=\"state state-");
            html_text(&sb, state);
            strbuf_puts(&sb, "\">");
            html_text(&sb, state);
            strbuf_puts(&sb, "</td></tr>\n");
        }
        strbuf_puts(&sb, "</table>\n<h3>Dead letters: <span class=\"dl-total\">");
        v = json_object_get(dl, "total");
        if (json_is_integer(v))
            strbuf_printf(&sb, "%lld", (long long)json_integer_value(v));
        else
            strbuf_puts(&sb, "&ndash;");
        strbuf_puts(&sb, "</span></h3>\n<table class=\"dead-reasons\"><tr><th>reason</th><th>count</th></tr>\n");
        json_array_foreach(json_object_get(dl, "by_reason"), k, v) {
            strbuf_puts(&sb, "<tr>");
            cell(&sb, "reason", json_object_get(v, "reason"));
            cell(&sb, "count", json_object_get(v, "count"));
            strbuf_puts(&sb, "</tr>\n");
        }
        strbuf_puts(&sb, "</table>\n<table class=\"dead-newest\"><tr><th>id</th><th>topic</th>"
                         "<th>partition</th><th>offset</th><th>reason</th><th>entity</th>"
                         "<th>SQLSTATE</th><th>attempts</th><th>last failed</th></tr>\n");
        json_array_foreach(json_object_get(dl, "newest"), k, v) {
            strbuf_puts(&sb, "<tr>");
            cell(&sb, "id", json_object_get(v, "id"));
            cell(&sb, "topic", json_object_get(v, "topic"));
            cell(&sb, "partition", json_object_get(v, "partition"));
            cell(&sb, "offset", json_object_get(v, "offset"));
            cell(&sb, "reason", json_object_get(v, "reason"));
            cell(&sb, "entity", json_object_get(v, "entity_id"));
            cell(&sb, "sqlstate", json_object_get(v, "sqlstate"));
            cell(&sb, "attempts", json_object_get(v, "attempts"));
            cell(&sb, "at", json_object_get(v, "last_failed_at"));
            strbuf_puts(&sb, "</tr>\n");
        }
        strbuf_puts(&sb, "</table>\n<h3>Last errors</h3>\n<table class=\"errors\"><tr><th>worker</th>"
                         "<th>at</th><th>line</th></tr>\n");
        json_array_foreach(json_object_get(pipe, "errors"), k, v) {
            strbuf_puts(&sb, "<tr>");
            cell(&sb, "worker", json_object_get(v, "worker"));
            cell(&sb, "at", json_object_get(v, "at"));
            strbuf_puts(&sb, "<td class=\"line\"><pre>");
            html_text(&sb, json_string_value(json_object_get(v, "line")));
            strbuf_puts(&sb, "</pre></td></tr>\n");
        }
        strbuf_puts(&sb, "</table>\n</section>\n");
    }
    json_array_foreach(json_object_get(st, "relays"), i, pipe) {
        const json_t *v;
        strbuf_puts(&sb, "<section class=\"relay\" data-relay=\"");
        html_text(&sb, json_string_value(json_object_get(pipe, "name")));
        strbuf_puts(&sb, "\">\n<h2>Relay ");
        html_text(&sb, json_string_value(json_object_get(pipe, "name")));
        strbuf_printf(&sb, "</h2>\n<table class=\"relay\"><tr><th>pid</th><th>up</th>"
                           "<th>publishing</th><th>restarts</th><th>pending</th>"
                           "<th>oldest pending (s)</th><th>published</th>"
                           "<th>dead-lettered</th><th>sent again</th></tr>\n<tr class=\"%s\">",
                      json_is_true(json_object_get(pipe, "up")) ? "" : "bad");
        cell(&sb, "pid", json_object_get(pipe, "pid"));
        cell(&sb, "up", json_object_get(pipe, "up"));
        cell(&sb, "publishing", json_object_get(pipe, "publishing"));
        cell(&sb, "restarts", json_object_get(pipe, "restarts"));
        cell(&sb, "num pending", json_object_get(pipe, "pending"));
        cell(&sb, "num oldest", json_object_get(pipe, "oldest_pending_s"));
        cell(&sb, "num published", json_object_get(pipe, "published"));
        cell(&sb, "num dead", json_object_get(pipe, "dead_lettered"));
        cell(&sb, "num resent", json_object_get(pipe, "resent"));
        strbuf_puts(&sb, "</tr>\n</table>\n<h3>Last errors</h3>\n<table class=\"errors\">"
                         "<tr><th>at</th><th>line</th></tr>\n");
        json_array_foreach(json_object_get(pipe, "errors"), k, v) {
            strbuf_puts(&sb, "<tr>");
            cell(&sb, "at", json_object_get(v, "at"));
            strbuf_puts(&sb, "<td class=\"line\"><pre>");
            html_text(&sb, json_string_value(json_object_get(v, "line")));
            strbuf_puts(&sb, "</pre></td></tr>\n");
        }
        strbuf_puts(&sb, "</table>\n</section>\n");
    }
    strbuf_puts(&sb, "</body></html>\n");
    if (sb.oom) {
        strbuf_free(&sb);
        return NULL;
    }
    return sb.data;
}

/* ------------------------------------------------------------------ */
/* The server                                                          */
/* ------------------------------------------------------------------ */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status,
                             const char *type, char *body)
{
    struct MHD_Response *r;
    enum MHD_Result ret;

    if (!body) {
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        type = "text/plain";
        r = MHD_create_response_from_buffer(strlen("out of memory\n"),
                                            (void *)"out of memory\n",
                                            MHD_RESPMEM_PERSISTENT);
    } else {
        r = MHD_create_response_from_buffer(strlen(body), body,
                                            MHD_RESPMEM_MUST_FREE);
    }
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **state)
{
    exactly_http *h = cls;

    (void)version;
    (void)upload;
    /* A request body is not read: answer at its headers. */
    if (*upload_size)
        *upload_size = 0;
    (void)state;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
                     strdup("GET only\n"));
    if (strcmp(url, "/metrics") == 0)
        return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                     metrics_render(h->slots, h->n));
    if (strcmp(url, "/healthz") == 0)
        return reply(c, MHD_HTTP_OK, "text/plain", strdup("ok\n"));
    if (strcmp(url, "/readyz") == 0) {
        int ok = metrics_ready(h->slots, h->n);
        return reply(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                     "text/plain", strdup(ok ? "ready\n" : "not ready\n"));
    }
    if (strcmp(url, "/status.json") == 0 || strcmp(url, "/") == 0) {
        json_t *st = status_json(h);
        char *body = NULL;
        if (st && url[1])
            body = json_dumps(st, JSON_INDENT(1) | JSON_ENSURE_ASCII);
        else if (st)
            body = status_html(st);
        json_decref(st);
        if (body && url[1]) {
            /* json_dumps's memory is jansson's allocator's: malloc here,
             * and the newline a text reader expects. */
            size_t len = strlen(body);
            char *b = realloc(body, len + 2);
            if (b) {
                b[len] = '\n';
                b[len + 1] = '\0';
            } else {
                free(body);
            }
            body = b;
        }
        return reply(c, MHD_HTTP_OK,
                     url[1] ? "application/json" : "text/html; charset=utf-8",
                     body);
    }
    return reply(c, MHD_HTTP_NOT_FOUND, "text/plain",
                 strdup("try /, /status.json, /metrics, /healthz or /readyz\n"));
}

/* Parses and binds a loopback "IPv4:PORT"; the socket, or -1 with err. */
static int http_listen(const char *addr, char *bound, size_t bound_size,
                       char *errbuf, size_t errbuf_size)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    char host[64], ip[INET_ADDRSTRLEN];
    const char *colon = strrchr(addr, ':');
    int fd, one = 1;
    long port;
    char *end;

    if (!colon || (size_t)(colon - addr) >= sizeof(host)) {
        snprintf(errbuf, errbuf_size, "metrics address '%s' is not HOST:PORT", addr);
        return -1;
    }
    /* "127.0.0.1:" would bind a port chosen by the kernel that nobody is
     * told of; a port must be given (0 asks for any, and is logged). */
    if (colon[1] == '\0') {
        snprintf(errbuf, errbuf_size,
                 "metrics address '%s' has no port (HOST:PORT, e.g. "
                 "127.0.0.1:9464)", addr);
        return -1;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    port = strtol(colon + 1, &end, 10);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    if (*end || colon[1] < '0' || colon[1] > '9' || port < 0 || port > 65535 ||
        inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(errbuf, errbuf_size, "metrics address '%s' is not IPv4:PORT", addr);
        return -1;
    }
    /* Metrics carry topology: they stay on this host unless asked. */
    if ((ntohl(sa.sin_addr.s_addr) >> 24) != 127) {
        snprintf(errbuf, errbuf_size, "metrics address '%s' is not on loopback (127.0.0.0/8)", addr);
        return -1;
    }
    sa.sin_port = htons((uint16_t)port);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 128) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0 ||
        !inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip))) {
        snprintf(errbuf, errbuf_size, "cannot listen on %s: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    snprintf(bound, bound_size, "%s:%d", ip, (int)ntohs(sa.sin_port));
    return fd;
}

static void http_free(exactly_http *h)
{
    size_t i;

    if (!h)
        return;
    for (i = 0; i < h->n_pipelines; i++)
        free(h->pipelines[i]);
    free(h->pipelines);
    free(h->conninfo);
    free(h->schema);
    free(h->rates);
    json_decref(h->db);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}

/* Starts the server's threads in this process; 0, or -1 with errbuf. */
static int serve_threads(exactly_http *h, char *errbuf, size_t errbuf_size)
{
    struct rlimit rl;
    unsigned limit = HTTP_MAX_CONNECTIONS;

    /* Clients hold a descriptor each: room for the limit, when the hard
     * limit allows, and never more clients than descriptors. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max && rl.rlim_cur < HTTP_MAX_CONNECTIONS + 256) {
            rl.rlim_cur = rl.rlim_max < HTTP_MAX_CONNECTIONS + 256
                              ? rl.rlim_max : HTTP_MAX_CONNECTIONS + 256;
            (void)setrlimit(RLIMIT_NOFILE, &rl);
            (void)getrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)limit + 256)
            limit = rl.rlim_cur > 512 ? (unsigned)rl.rlim_cur - 256 : 256;
    }
    h->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO, 0, NULL, NULL,
        on_request, h, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)h->fd,
        MHD_OPTION_CONNECTION_LIMIT, limit,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_MEMORY_LIMIT,
        MHD_OPTION_END);
    if (!h->daemon) {
        snprintf(errbuf, errbuf_size, "cannot start the HTTP server");
        return -1;
    }
    if (pthread_create(&h->reader, NULL, reader_main, h) != 0) {
        snprintf(errbuf, errbuf_size, "cannot start the status reader thread");
        return -1;
    }
    h->reader_started = 1;
    return 0;
}

/* The server process: serves until SIGTERM (the supervisor's, or its
 * death), then stops its threads and exits. SIGINT and SIGHUP are the
 * supervisor's: a Ctrl-C at a terminal reaches the whole process group,
 * and the supervisor stops this process after its workers. Never
 * returns. */
static void serve_process(exactly_http *h)
{
    sigset_t stop;
    char err[256];
    int sig = 0;

    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != h->parent)
        _exit(0);
    /* Only this thread takes the stop, by sigwait; the server's threads
     * inherit the mask and take none. SIGHUP (log rotation) is the
     * supervisor's. */
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    sigaddset(&stop, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    if (serve_threads(h, err, sizeof(err)) != 0) {
        exactly_log(EXACTLY_LOG_ERROR, "http", "cannot serve",
                    LOG_STR("error", err));
        _exit(1);
    }
    while (sig != SIGTERM)
        if (sigwait(&stop, &sig) != 0)
            break;
    MHD_stop_daemon(h->daemon); /* closes the listening socket */
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->reader, NULL);
    _exit(0);
}

/* Forks the server process; 0, or -1 with errbuf. */
static int spawn(exactly_http *h, const int *fds, size_t n_fds,
                 char *errbuf, size_t errbuf_size)
{
    pid_t pid;
    size_t i;

    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        snprintf(errbuf, errbuf_size, "cannot fork the HTTP server: %s",
                 strerror(errno));
        return -1;
    }
    if (pid == 0) {
        for (i = 0; i < n_fds; i++)
            if (fds[i] >= 0 && fds[i] != h->fd)
                close(fds[i]);
        serve_process(h);
    }
    h->pid = pid;
    h->started_ms = mono_ms();
    return 0;
}

exactly_http *exactly_http_start(const exactly_config *cfg,
                                 const char *const *pipelines,
                                 size_t n_pipelines, const char *addr,
                                 const metrics_slot *slots, size_t n,
                                 char *bound, size_t bound_size, char *errbuf,
                                 size_t errbuf_size)
{
    exactly_http *h = calloc(1, sizeof(*h));
    size_t i;

    if (!h) {
        snprintf(errbuf, errbuf_size, "out of memory");
        return NULL;
    }
    h->fd = -1;
    h->parent = getpid();
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    h->slots = slots;
    h->n = n;
    h->conninfo = strdup(cfg->postgres.conninfo ? cfg->postgres.conninfo : "");
    h->schema = strdup(cfg->postgres.schema ? cfg->postgres.schema : "exactly");
    h->pipelines = calloc(n_pipelines + 1, sizeof(*h->pipelines));
    if (!h->conninfo || !h->schema || !h->pipelines)
        goto oom;
    for (i = 0; i < n_pipelines; i++) {
        if (!(h->pipelines[h->n_pipelines] = strdup(pipelines[i])))
            goto oom;
        h->n_pipelines++;
    }
    h->fd = http_listen(addr, bound, bound_size, errbuf, errbuf_size);
    if (h->fd < 0 || spawn(h, NULL, 0, errbuf, errbuf_size) != 0)
        goto fail;
    return h;
oom:
    snprintf(errbuf, errbuf_size, "out of memory");
fail:
    if (h->fd >= 0)
        close(h->fd);
    http_free(h);
    return NULL;
}

int exactly_http_fd(const exactly_http *h)
{
    return h ? h->fd : -1;
}

pid_t exactly_http_pid(const exactly_http *h)
{
    return h ? h->pid : 0;
}

int exactly_http_reaped(exactly_http *h, pid_t pid, int status)
{
    if (!h || pid != h->pid)
        return 0;
    h->pid = 0;
    if (!h->stopping)
        exactly_log(EXACTLY_LOG_WARN, "supervisor",
                    "HTTP server process ended; starting it again",
                    LOG_INT("code", WIFEXITED(status) ? WEXITSTATUS(status) : -1),
                    LOG_INT("signal", WIFSIGNALED(status) ? WTERMSIG(status) : 0));
    return 1;
}

void exactly_http_tick(exactly_http *h, const int *fds, size_t n_fds)
{
    char err[256];

    /* At most one start a second: a server that cannot start does not
     * take the supervisor's time. */
    if (!h || h->pid > 0 || h->stopping || mono_ms() - h->started_ms < 1000)
        return;
    if (spawn(h, fds, n_fds, err, sizeof(err)) != 0)
        exactly_log(EXACTLY_LOG_ERROR, "supervisor", "cannot start the HTTP server",
                    LOG_STR("error", err));
}

void exactly_http_stop(exactly_http *h)
{
    long long deadline;
    int status;

    if (!h)
        return;
    h->stopping = 1;
    if (h->pid > 0) {
        kill(h->pid, SIGTERM);
        /* Its threads stop at once (the status reader within a poll
         * tick); a server that does not is killed. */
        deadline = mono_ms() + 2000;
        while (waitpid(h->pid, &status, WNOHANG) == 0) {
            if (mono_ms() > deadline) {
                kill(h->pid, SIGKILL);
                (void)waitpid(h->pid, &status, 0);
                break;
            }
            usleep(10 * 1000);
        }
    }
    close(h->fd);
    http_free(h);
}
