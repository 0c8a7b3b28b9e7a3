/*
 * admin.c - see admin.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "admin.h"

#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "escape.h"
#include "options.h"
#include "pg_conn.h"
#include "plugin.h"
#include "source.h"
#include "store.h"
#include "strbuf.h"
#include "upsert_sql.h"

/* ---- output ------------------------------------------------------------ */

admin_table *admin_table_new(size_t n_cols, const char *const *headers,
                             const char *align)
{
    admin_table *t = calloc(1, sizeof(*t));
    size_t i;

    if (!t)
        return NULL;
    t->n_cols = n_cols;
    t->headers = calloc(n_cols, sizeof(char *));
    t->align = calloc(n_cols + 1, 1);
    if (!t->headers || !t->align) {
        admin_table_free(t);
        return NULL;
    }
    for (i = 0; i < n_cols; i++) {
        t->headers[i] = strdup(headers[i]);
        if (!t->headers[i]) {
            admin_table_free(t);
            return NULL;
        }
        t->align[i] = align[i] == 'r' ? 'r' : 'l';
    }
    return t;
}

void admin_table_add(admin_table *t, const char *const *cells)
{
    size_t i;

    if (t->oom)
        return;
    if (t->n_rows == t->cap_rows) {
        size_t cap = t->cap_rows ? t->cap_rows * 2 : 16;
        char **c = realloc(t->cells, cap * t->n_cols * sizeof(char *));
        if (!c) {
            t->oom = 1;
            return;
        }
        t->cells = c;
        t->cap_rows = cap;
    }
    for (i = 0; i < t->n_cols; i++) {
        char *s = exactly_printable(cells[i] ? cells[i] : "-");
        if (!s)
            t->oom = 1;
        t->cells[t->n_rows * t->n_cols + i] = s;
    }
    t->n_rows++;
}

int admin_table_print(const admin_table *t, FILE *out)
{
    size_t *w;
    size_t r, c;

    if (t->oom)
        return -1;
    w = calloc(t->n_cols, sizeof(size_t));
    if (!w)
        return -1;
    for (c = 0; c < t->n_cols; c++) {
        w[c] = strlen(t->headers[c]);
        for (r = 0; r < t->n_rows; r++) {
            size_t n = strlen(t->cells[r * t->n_cols + c]);
            if (n > w[c])
                w[c] = n;
        }
    }
    for (r = 0; r <= t->n_rows; r++) {
        strbuf line = {0};
        for (c = 0; c < t->n_cols; c++) {
            const char *s = r == 0 ? t->headers[c]
                                   : t->cells[(r - 1) * t->n_cols + c];
            strbuf_printf(&line, t->align[c] == 'r' ? "%s%*s" : "%s%-*s",
                          c ? "  " : "", (int)w[c], s);
        }
        if (line.oom) {
            strbuf_free(&line);
            free(w);
            return -1;
        }
        /* No trailing blanks (an empty last column, a left-aligned one). */
        while (line.len > 0 && line.data[line.len - 1] == ' ')
            line.data[--line.len] = '\0';
        fprintf(out, "%s\n", strbuf_str(&line));
        strbuf_free(&line);
    }
    free(w);
    return 0;
}

void admin_table_free(admin_table *t)
{
    size_t i;

    if (!t)
        return;
    for (i = 0; t->headers && i < t->n_cols; i++)
        free(t->headers[i]);
    for (i = 0; t->cells && i < t->n_rows * t->n_cols; i++)
        free(t->cells[i]);
    free(t->headers);
    free(t->align);
    free(t->cells);
    free(t);
}

/* ---- the configuration itself ----------------------------------------- */

int admin_validate_pipeline(const exactly_config *cfg, const cfg_pipeline *p,
                            admin_report_fn *report, void *arg,
                            exactly_plugin **plugin)
{
    char err[2048], item[160], detail[512], reset[16];
    exactly_plugin *pl = NULL;
    rd_kafka_conf_t *conf;
    int refused = 0;

    if (plugin)
        *plugin = NULL;
    snprintf(item, sizeof(item), "handler [%s]", p->name);
    if (exactly_plugin_load(cfg, p, &pl, err, sizeof(err)) != EXACTLY_OK) {
        report(arg, item, err, NULL);
        refused++;
    } else {
        snprintf(detail, sizeof(detail), "%s '%s' ABI %u.%u%s", pl->label,
                 pl->h->name, pl->h->abi_major, pl->h->abi_minor,
                 pl->fused ? ", lookup fused into the write" : "");
        report(arg, item, NULL, detail);
    }
    snprintf(item, sizeof(item), "kafka config [%s]", p->name);
    conf = exactly_kafka_conf(cfg, p, reset, "exactly-validate", err,
                              sizeof(err));
    if (!conf) {
        report(arg, item, err, NULL);
        refused++;
    } else {
        rd_kafka_conf_destroy(conf);
        report(arg, item, NULL, "read_committed, auto commit off");
    }
    if (plugin)
        *plugin = pl;
    else
        exactly_plugin_free(pl);
    return refused;
}

/* ---- privileges --------------------------------------------------------- */

/* Appends one grant; takes object and why (malloc'd, NULL object for a
 * note). Returns -1 when out of memory (both are freed). */
static int add_grant(admin_grants *g, admin_object kind,
                     const char *privileges, char *object, char *why)
{
    if (!why || (kind != ADMIN_OBJ_NOTE && !object))
        goto oom;
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 16;
        admin_grant *v = realloc(g->v, cap * sizeof(*v));
        if (!v)
            goto oom;
        g->v = v;
        g->cap = cap;
    }
    g->v[g->n].kind = kind;
    g->v[g->n].privileges = privileges;
    g->v[g->n].object = object;
    g->v[g->n].why = why;
    g->n++;
    return 0;
oom:
    free(object);
    free(why);
    return -1;
}

/* printf into a new string, or NULL. */
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s = NULL;
    int n;

    va_start(ap, f);
    n = vasprintf(&s, f, ap);
    va_end(ap);
    return n < 0 ? NULL : s;
}

/* Grants on a relation named in the configuration ("name" or
 * "schema.name"): USAGE on its schema when qualified, then privileges. */
static exactly_err relation_grants(admin_grants *g, const char *name,
                                   const char *privileges, char *why,
                                   char *errbuf, size_t errbuf_size)
{
    char *rel = upsert_sql_quote_relation(name, errbuf, errbuf_size);
    const char *dot = strchr(name, '.');

    if (!rel) {
        free(why);
        return strcmp(errbuf, "out of memory") == 0 ? EXACTLY_ENOMEM
                                                    : EXACTLY_ECONFIG;
    }
    if (dot) {
        char *schema = strndup(name, (size_t)(dot - name));
        char *q = schema ? upsert_sql_quote_ident(schema, errbuf, errbuf_size)
                         : NULL;
        free(schema);
        if (!q || add_grant(g, ADMIN_OBJ_SCHEMA, "USAGE", q,
                            fmt("schema of %s", rel)) != 0) {
            free(rel);
            free(why);
            return EXACTLY_ENOMEM;
        }
    }
    return add_grant(g, ADMIN_OBJ_TABLE, privileges, rel, why) == 0
               ? EXACTLY_OK
               : EXACTLY_ENOMEM;
}

exactly_err admin_grants_framework(const exactly_config *cfg, admin_grants *g,
                                   char *errbuf, size_t errbuf_size)
{
    /* What the worker's statements on the framework tables need
     * (lib/pg/store.c): claim and fence (INSERT ... ON CONFLICT DO UPDATE
     * ... RETURNING, UPDATE ... WHERE, SELECT ... FOR UPDATE in the crash
     * guard), dead letters (INSERT ... ON CONFLICT DO UPDATE, a serial
     * id), dedup keys (INSERT ... ON CONFLICT DO NOTHING RETURNING). */
    static const struct {
        admin_object kind;
        const char *privileges;
        const char *name; /* in the schema; NULL: the schema itself */
        const char *args; /* functions: the argument types */
        const char *why;
    } fw[] = {
        {ADMIN_OBJ_SCHEMA, "USAGE", NULL, NULL, "the framework schema"},
        {ADMIN_OBJ_TABLE, "SELECT", "schema_version", NULL,
         "the schema version check at start"},
        {ADMIN_OBJ_TABLE, "SELECT, INSERT, UPDATE", "offsets", NULL,
         "claiming, fencing and advancing each partition's stored offset"},
        {ADMIN_OBJ_TABLE, "SELECT, INSERT, UPDATE", "dead_letters", NULL,
         "dead letters, written in the batch's transaction"},
        {ADMIN_OBJ_SEQUENCE, "USAGE", "dead_letters_id_seq", NULL,
         "the ids of dead letters"},
        {ADMIN_OBJ_TABLE, "SELECT, INSERT", "dedup_keys", NULL,
         "dedup keys (only a pipeline with dedup)"},
        {ADMIN_OBJ_FUNCTION, "EXECUTE", "advance",
         "(text, text, integer, bigint, bigint, bigint)",
         "the fence that starts every batch"},
        {ADMIN_OBJ_FUNCTION, "EXECUTE", "attempt",
         "(text, text, integer, bigint, bigint, bigint, integer, integer)",
         "the crash guard"},
    };
    char *schema = upsert_sql_quote_ident(cfg->postgres.schema, errbuf,
                                          errbuf_size);
    int dedup = 0;
    size_t i;

    if (!schema)
        return strcmp(errbuf, "out of memory") == 0 ? EXACTLY_ENOMEM
                                                    : EXACTLY_ECONFIG;
    for (i = 0; i < cfg->n_pipelines; i++)
        dedup |= cfg->pipelines[i].dedup.enabled;
    for (i = 0; i < sizeof(fw) / sizeof(fw[0]); i++) {
        char *object;
        if (fw[i].name && strcmp(fw[i].name, "dedup_keys") == 0 && !dedup)
            continue;
        if (!fw[i].name)
            object = strdup(schema);
        else /* the names are ours: nothing to escape inside the quotes */
            object = fmt("%s.\"%s\"%s", schema, fw[i].name,
                         fw[i].args ? fw[i].args : "");
        if (add_grant(g, fw[i].kind, fw[i].privileges, object,
                      strdup(fw[i].why)) != 0) {
            free(schema);
            snprintf(errbuf, errbuf_size, "out of memory");
            return EXACTLY_ENOMEM;
        }
    }
    free(schema);
    return EXACTLY_OK;
}

exactly_err admin_grants_pipeline(const exactly_config *cfg,
                                  const cfg_pipeline *p, admin_grants *g,
                                  char *errbuf, size_t errbuf_size)
{
    exactly_plugin *pl = NULL;
    exactly_err rc;

    if (p->lookup.table)
        rc = relation_grants(g, p->lookup.table, "SELECT",
                             fmt("lookup.table of pipeline %s", p->name),
                             errbuf, errbuf_size);
    else
        rc = add_grant(g, ADMIN_OBJ_NOTE, "SELECT", NULL,
                       fmt("pipeline %s: SELECT on every table its lookup.sql "
                           "reads",
                           p->name)) == 0
                 ? EXACTLY_OK
                 : EXACTLY_ENOMEM;
    if (rc != EXACTLY_OK)
        goto done;
    rc = exactly_plugin_load(cfg, p, &pl, errbuf, errbuf_size);
    if (rc != EXACTLY_OK)
        goto done;
    if (p->handler.builtin) {
        /* INSERT ... ON CONFLICT DO UPDATE: UPDATE, and SELECT because the
         * update's WHERE compares the current row; DELETE for
         * delete_missing. */
        int del = exactly_options_bool(pl->opts, "delete_missing");
        rc = relation_grants(g, exactly_options_string(pl->opts, "table"),
                             del ? "SELECT, INSERT, UPDATE, DELETE"
                                 : "SELECT, INSERT, UPDATE",
                             fmt("the target of pipeline %s's built-in "
                                 "upsert",
                                 p->name),
                             errbuf, errbuf_size);
    } else {
        rc = add_grant(g, ADMIN_OBJ_NOTE, "", NULL,
                       fmt("pipeline %s: handler %s writes tables exactly "
                           "cannot name: grant what its documentation lists",
                           p->name, pl->label)) == 0
                 ? EXACTLY_OK
                 : EXACTLY_ENOMEM;
    }

done:
    if (rc == EXACTLY_ENOMEM)
        snprintf(errbuf, errbuf_size, "out of memory");
    exactly_plugin_free(pl);
    return rc;
}

void admin_grants_free(admin_grants *g)
{
    size_t i;

    for (i = 0; i < g->n; i++) {
        free(g->v[i].object);
        free(g->v[i].why);
    }
    free(g->v);
    memset(g, 0, sizeof(*g));
}

const char *admin_object_keyword(admin_object kind)
{
    switch (kind) {
    case ADMIN_OBJ_SCHEMA: return "SCHEMA";
    case ADMIN_OBJ_TABLE: return "TABLE";
    case ADMIN_OBJ_SEQUENCE: return "SEQUENCE";
    case ADMIN_OBJ_FUNCTION: return "FUNCTION";
    case ADMIN_OBJ_NOTE: break;
    }
    return "";
}

exactly_err admin_grant_missing(PGconn *conn, const admin_grant *g,
                                char **missing, int *exists, char *errbuf,
                                size_t errbuf_size)
{
    /* $1 the object as SQL text, $2 the privileges; each privilege is
     * asked alone: with a list, has_*_privilege is true if any is held. */
    static const char *const sql[] = {
        [ADMIN_OBJ_SCHEMA] =
            "SELECT to_regnamespace($1) IS NOT NULL, array_to_string(ARRAY("
            "SELECT p FROM unnest(string_to_array($2, ', ')) AS p WHERE NOT"
            " has_schema_privilege(to_regnamespace($1)::oid, p)), ', ')",
        [ADMIN_OBJ_TABLE] =
            "SELECT to_regclass($1) IS NOT NULL, array_to_string(ARRAY("
            "SELECT p FROM unnest(string_to_array($2, ', ')) AS p WHERE NOT"
            " has_table_privilege(to_regclass($1)::oid, p)), ', ')",
        [ADMIN_OBJ_SEQUENCE] =
            "SELECT to_regclass($1) IS NOT NULL, array_to_string(ARRAY("
            "SELECT p FROM unnest(string_to_array($2, ', ')) AS p WHERE NOT"
            " has_sequence_privilege(to_regclass($1)::oid, p)), ', ')",
        [ADMIN_OBJ_FUNCTION] =
            "SELECT to_regprocedure($1) IS NOT NULL, array_to_string(ARRAY("
            "SELECT p FROM unnest(string_to_array($2, ', ')) AS p WHERE NOT"
            " has_function_privilege(to_regprocedure($1)::oid, p)), ', ')",
    };
    const char *params[2] = {g->object, g->privileges};
    PGresult *res = NULL;
    exactly_err rc;

    *missing = NULL;
    *exists = 0;
    if (g->kind == ADMIN_OBJ_NOTE) {
        *missing = strdup("");
        return *missing ? EXACTLY_OK : EXACTLY_ENOMEM;
    }
    rc = exactly_pg_exec(conn, sql[g->kind], 2, params, &res, errbuf,
                         errbuf_size);
    if (rc != EXACTLY_OK)
        return rc;
    *exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    *missing = strdup(*exists ? PQgetvalue(res, 0, 1) : "");
    PQclear(res);
    if (!*missing) {
        snprintf(errbuf, errbuf_size, "out of memory");
        return EXACTLY_ENOMEM;
    }
    return EXACTLY_OK;
}

/* ---- parsing ------------------------------------------------------------ */

exactly_err admin_parse_time(PGconn *conn, const char *text, int64_t *ms,
                             char *canon, size_t canon_size, char *errbuf,
                             size_t errbuf_size)
{
    const char *params[1] = {text};
    PGresult *res = NULL;
    exactly_err rc;

    /* The server's parser accepts every ISO 8601 form operators type, and
     * the same text then filters timestamptz columns consistently. */
    rc = exactly_pg_exec(conn,
                         "SELECT floor(extract(epoch FROM $1::timestamptz)"
                         " * 1000)::bigint,"
                         " to_char($1::timestamptz AT TIME ZONE 'UTC',"
                         " 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
                         1, params, &res, errbuf, errbuf_size);
    if (rc != EXACTLY_OK) {
        if (PQstatus(conn) == CONNECTION_OK) {
            char why[512];
            snprintf(why, sizeof(why), "%s", errbuf);
            snprintf(errbuf, errbuf_size, "cannot read '%s' as a time: %s",
                     text, why);
            return EXACTLY_EINVAL;
        }
        return rc;
    }
    *ms = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    snprintf(canon, canon_size, "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    return EXACTLY_OK;
}

/* ---- PostgreSQL --------------------------------------------------------- */

exactly_err admin_check_schema(PGconn *conn, const exactly_config *cfg,
                               char *errbuf, size_t errbuf_size)
{
    int version = 0;
    exactly_err rc;

    rc = exactly_store_version(conn, cfg->postgres.schema, &version, errbuf,
                               errbuf_size);
    if (rc != EXACTLY_OK)
        return rc;
    if (version != EXACTLY_SCHEMA_VERSION) {
        snprintf(errbuf, errbuf_size,
                 "framework schema %s is at version %d, this exactly needs "
                 "%d: run 'exactly migrate -c %s'",
                 cfg->postgres.schema, version, EXACTLY_SCHEMA_VERSION,
                 cfg->path);
        return EXACTLY_EDATABASE;
    }
    return EXACTLY_OK;
}

char *admin_schema_q(PGconn *conn, const exactly_config *cfg)
{
    return exactly_pg_ident(conn, cfg->postgres.schema);
}

void admin_requested_by(char *out, size_t out_size)
{
    char host[256];
    const char *user = getenv("USER");
    char pwbuf[1024];
    struct passwd pw, *pwp = NULL;
    char login[256];

    /* getlogin() names the person at the terminal even under sudo; a cron
     * job or a container has none, then USER, then the effective user. */
    if (getlogin_r(login, sizeof(login)) == 0 && login[0])
        user = login;
    else if (!user || !*user) {
        if (getpwuid_r(geteuid(), &pw, pwbuf, sizeof(pwbuf), &pwp) == 0 && pwp)
            user = pwp->pw_name;
        else
            user = "unknown";
    }
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "unknown");
    host[sizeof(host) - 1] = '\0';
    snprintf(out, out_size, "%s@%s", user, host);
}


void admin_free_strings(char **v, size_t n)
{
    size_t i;

    for (i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

exactly_err admin_live_owners(PGconn *conn, const exactly_config *cfg,
                              const char *pipeline, const char *topic,
                              char ***owners, size_t *n_owners, char *errbuf,
                              size_t errbuf_size)
{
    char *q = admin_schema_q(conn, cfg);
    strbuf sql = {0};
    const char *params[2] = {pipeline, topic};
    PGresult *res = NULL;
    exactly_err rc = EXACTLY_ENOMEM;
    int r;

    *owners = NULL;
    *n_owners = 0;
    if (!q)
        goto cleanup;
    /* application_name is visible for every session, whoever owns it, and
     * the server cuts it to 63 bytes: compare that much of the owner. */
    strbuf_printf(&sql,
                  "SELECT DISTINCT o.owner FROM %s.offsets o"
                  " JOIN pg_stat_activity a"
                  " ON a.application_name = left(o.owner, 63)"
                  " AND a.pid <> pg_backend_pid()"
                  " WHERE o.pipeline = $1 AND ($2::text IS NULL OR o.topic = $2)"
                  " AND o.owner IS NOT NULL ORDER BY 1",
                  q);
    if (sql.oom)
        goto cleanup;
    rc = exactly_pg_exec(conn, strbuf_str(&sql), 2, params, &res, errbuf,
                         errbuf_size);
    if (rc != EXACTLY_OK)
        goto cleanup;
    *owners = calloc((size_t)PQntuples(res) + 1, sizeof(char *));
    if (!*owners) {
        rc = EXACTLY_ENOMEM;
        goto cleanup;
    }
    for (r = 0; r < PQntuples(res); r++) {
        (*owners)[r] = strdup(PQgetvalue(res, r, 0));
        if (!(*owners)[r]) {
            admin_free_strings(*owners, (size_t)r);
            *owners = NULL;
            rc = EXACTLY_ENOMEM;
            goto cleanup;
        }
    }
    *n_owners = (size_t)PQntuples(res);

cleanup:
    if (rc == EXACTLY_ENOMEM)
        snprintf(errbuf, errbuf_size, "out of memory");
    PQclear(res);
    strbuf_free(&sql);
    PQfreemem(q);
    return rc;
}

/* ---- Kafka -------------------------------------------------------------- */

rd_kafka_t *admin_kafka_new(const exactly_config *cfg, const cfg_pipeline *p,
                            const char *client_tag, char *auto_reset,
                            char *errbuf, size_t errbuf_size)
{
    char client_id[256], kerr[512];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;

    /* A client.id of its own, so broker logs never confuse the CLI with a
     * worker of the group. */
    snprintf(client_id, sizeof(client_id), "exactly-%s-%s-%d", client_tag,
             p->name, (int)getpid());
    conf = exactly_kafka_conf(cfg, p, auto_reset, client_id, errbuf,
                              errbuf_size);
    if (!conf)
        return NULL;
    /* A command reports a failure once, in its own words; librdkafka's
     * retry chatter (broker down, reconnecting) would bury that line. */
    if (rd_kafka_conf_set(conf, "log_level", "2", kerr, sizeof(kerr)) !=
        RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        snprintf(errbuf, errbuf_size, "kafka: %s", kerr);
        return NULL;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof(kerr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errbuf, errbuf_size, "cannot create a Kafka client: %s", kerr);
        return NULL;
    }
    return rk;
}

void admin_kafka_free(rd_kafka_t *rk)
{
    if (!rk)
        return;
    /* Never subscribed: closing leaves no group and commits nothing. */
    (void)rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

int admin_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms,
                          char *errbuf, size_t errbuf_size)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e;
    int n = -1;

    if (!t) {
        snprintf(errbuf, errbuf_size, "topic %s: %s", topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    e = rd_kafka_metadata(rk, 0, t, &md, timeout_ms);
    if (e)
        snprintf(errbuf, errbuf_size, "topic %s: cannot read metadata: %s",
                 topic, rd_kafka_err2str(e));
    else if (md->topic_cnt < 1)
        snprintf(errbuf, errbuf_size, "topic %s: not found", topic);
    else if (md->topics[0].err)
        snprintf(errbuf, errbuf_size, "topic %s: %s", topic,
                 rd_kafka_err2str(md->topics[0].err));
    else
        n = md->topics[0].partition_cnt;
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    return n;
}

int admin_group_members(rd_kafka_t *rk, const char *group, int timeout_ms,
                        int *members, char *state, size_t state_size,
                        char *errbuf, size_t errbuf_size)
{
    const struct rd_kafka_group_list *gl = NULL;
    rd_kafka_resp_err_t e;
    int i, rc = 0;

    *members = 0;
    snprintf(state, state_size, "%s", "unknown");
    e = rd_kafka_list_groups(rk, group, &gl, timeout_ms);
    if (e == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE ||
        e == RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION)
        return 1;
    if (e) {
        snprintf(errbuf, errbuf_size, "cannot describe consumer group '%s': %s",
                 group, rd_kafka_err2str(e));
        return -1;
    }
    for (i = 0; i < gl->group_cnt; i++) {
        const struct rd_kafka_group_info *g = &gl->groups[i];
        if (strcmp(g->group, group) != 0)
            continue;
        if (g->err && g->err != RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) {
            snprintf(errbuf, errbuf_size,
                     "cannot describe consumer group '%s': %s", group,
                     rd_kafka_err2str(g->err));
            rc = -1;
            break;
        }
        *members = g->member_cnt;
        snprintf(state, state_size, "%s", g->state ? g->state : "unknown");
    }
    rd_kafka_group_list_destroy(gl);
    return rc;
}
