/*
 * grants.c - see grants.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "ops/grants.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "err.h"
#include "options.h"
#include "pg_conn.h"
#include "plugin.h"
#include "upsert_sql.h"

/* ---- privileges --------------------------------------------------------- */

/* Appends one grant; takes object and why (malloc'd, NULL object for a
 * note): EXACTLY_ENOMEM when either is missing or the list cannot grow
 * (both are freed then). */
static exactly_err add_grant(ops_grants *g, ops_object kind,
                             const char *privileges, char *object, char *why)
{
    if (!why || (kind != OPS_OBJ_NOTE && !object))
        goto oom;
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 16;
        ops_grant *v = realloc(g->v, cap * sizeof(*v));
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
    return EXACTLY_OK;
oom:
    free(object);
    free(why);
    return EXACTLY_ENOMEM;
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

/* Whether len bytes make an identifier upsert_sql_quote_ident() takes. */
static int ident_fits(size_t len)
{
    return len > 0 && len <= UPSERT_SQL_MAX_IDENT;
}

/* Whether name is one upsert_sql_quote_relation() (relation) or
 * upsert_sql_quote_ident() takes, by the rules upsert_sql.h gives them:
 * parts not empty and at most UPSERT_SQL_MAX_IDENT bytes, a relation split
 * on at most one dot. */
static int name_fits(const char *name, int relation)
{
    const char *dot = name && relation ? strchr(name, '.') : NULL;

    if (!name)
        return 0;
    if (!dot)
        return ident_fits(strlen(name));
    return !strchr(dot + 1, '.') && ident_fits((size_t)(dot - name)) &&
           ident_fits(strlen(dot + 1));
}

/* name quoted into *out (malloc'd), as a relation ("s"."t") or a single
 * identifier. EXACTLY_ECONFIG with the reason in errbuf for a name the
 * quoting refuses; EXACTLY_ENOMEM when a name it takes could not be
 * quoted: the quoting fails then only for memory. */
static exactly_err quote(const char *name, int relation, char **out,
                         char *errbuf, size_t errbuf_size)
{
    *out = relation ? upsert_sql_quote_relation(name, errbuf, errbuf_size)
                    : upsert_sql_quote_ident(name, errbuf, errbuf_size);
    if (*out)
        return EXACTLY_OK;
    return name_fits(name, relation) ? EXACTLY_ENOMEM : EXACTLY_ECONFIG;
}

exactly_err ops_grants_quote_role(const char *role, char **quoted,
                                  char *errbuf, size_t errbuf_size)
{
    return quote(role, 0, quoted, errbuf, errbuf_size);
}

/* Grants on a relation named in the configuration ("name" or
 * "schema.name"): USAGE on its schema when qualified, then privileges.
 * Takes why. */
static exactly_err relation_grants(ops_grants *g, const char *name,
                                   const char *privileges, char *why,
                                   char *errbuf, size_t errbuf_size)
{
    const char *dot = strchr(name, '.');
    char *rel = NULL, *schema = NULL, *q = NULL;
    exactly_err rc;

    rc = quote(name, 1, &rel, errbuf, errbuf_size);
    if (rc == EXACTLY_OK && dot) {
        schema = strndup(name, (size_t)(dot - name));
        rc = schema ? quote(schema, 0, &q, errbuf, errbuf_size)
                    : EXACTLY_ENOMEM;
        free(schema);
        if (rc == EXACTLY_OK)
            rc = add_grant(g, OPS_OBJ_SCHEMA, "USAGE", q,
                           fmt("schema of %s", rel));
    }
    if (rc == EXACTLY_OK)
        return add_grant(g, OPS_OBJ_TABLE, privileges, rel, why);
    free(rel);
    free(why);
    return rc;
}

exactly_err ops_grants_framework(const exactly_config *cfg, ops_grants *g,
                                   char *errbuf, size_t errbuf_size)
{
    /* What the worker's statements on the framework tables need
     * (lib/pg/store.c): claim and fence (INSERT ... ON CONFLICT DO UPDATE
     * ... RETURNING, UPDATE ... WHERE, SELECT ... FOR UPDATE in the crash
     * guard), dead letters (INSERT ... ON CONFLICT DO UPDATE, a serial
     * id), dedup keys (INSERT ... ON CONFLICT DO NOTHING RETURNING; the
     * expiry past dedup.retention, lib/worker/db.c, is a DELETE of rows
     * picked with FOR UPDATE SKIP LOCKED, and PostgreSQL asks UPDATE for a
     * locking read). exactly check verifies this same table. */
    static const struct {
        ops_object kind;
        const char *privileges;
        const char *name; /* in the schema; NULL: the schema itself */
        const char *args; /* functions: the argument types */
        const char *why;
    } fw[] = {
        {OPS_OBJ_SCHEMA, "USAGE", NULL, NULL, "the framework schema"},
        {OPS_OBJ_TABLE, "SELECT", "schema_version", NULL,
         "the schema version check at start"},
        {OPS_OBJ_TABLE, "SELECT, INSERT, UPDATE", "offsets", NULL,
         "claiming, fencing and advancing each partition's stored offset"},
        {OPS_OBJ_TABLE, "SELECT, INSERT, UPDATE", "dead_letters", NULL,
         "dead letters, written in the batch's transaction"},
        {OPS_OBJ_SEQUENCE, "USAGE", "dead_letters_id_seq", NULL,
         "the ids of dead letters"},
        {OPS_OBJ_TABLE, "SELECT, INSERT, UPDATE, DELETE", "dedup_keys", NULL,
         "dedup keys (only a pipeline with dedup), and their expiry"},
        {OPS_OBJ_FUNCTION, "EXECUTE", "advance",
         "(text, text, integer, bigint, bigint, bigint)",
         "the fence that starts every batch"},
        {OPS_OBJ_FUNCTION, "EXECUTE", "advance_group",
         "(text, text[], integer[], bigint[], bigint[], bigint[])",
         "the one fence of several partitions' batches in one transaction"},
        {OPS_OBJ_FUNCTION, "EXECUTE", "attempt",
         "(text, text, integer, bigint, bigint, bigint, integer, integer)",
         "the crash guard"},
    };
    char *schema = NULL;
    exactly_err rc;
    int dedup = 0;
    size_t i;

    rc = quote(cfg->postgres.schema, 0, &schema, errbuf, errbuf_size);
    for (i = 0; rc == EXACTLY_OK && i < cfg->n_pipelines; i++)
        dedup |= cfg->pipelines[i].dedup.enabled;
    for (i = 0; rc == EXACTLY_OK && i < sizeof(fw) / sizeof(fw[0]); i++) {
        char *object;
        if (fw[i].name && strcmp(fw[i].name, "dedup_keys") == 0 && !dedup)
            continue;
        if (!fw[i].name)
            object = strdup(schema);
        else /* the names are ours: nothing to escape inside the quotes */
            object = fmt("%s.\"%s\"%s", schema, fw[i].name,
                         fw[i].args ? fw[i].args : "");
        rc = add_grant(g, fw[i].kind, fw[i].privileges, object,
                       strdup(fw[i].why));
    }
    if (rc == EXACTLY_ENOMEM)
        snprintf(errbuf, errbuf_size, "%s", exactly_strerror(rc));
    free(schema);
    return rc;
}

/* USAGE on the sequence that numbers the ids of outbox ("name" or
 * "schema.name", as configured; outbox_q: quoted), as the catalog names it
 * (pg_id_sequence: serial, identity, or a default's nextval of any name),
 * each part quoted here; nothing when the id has none; a note when the
 * table does not exist yet. Connects *conn with cfg's conninfo when it is
 * NULL. */
static exactly_err sequence_grant(ops_grants *g, const exactly_config *cfg,
                                  PGconn **conn, const cfg_pipeline *p,
                                  const char *outbox, const char *outbox_q,
                                  char *errbuf, size_t errbuf_size)
{
    const char *dot = strchr(outbox, '.');
    char *schema = NULL, *name = NULL, *qs = NULL, *qn = NULL;
    char *in = dot ? strndup(outbox, (size_t)(dot - outbox)) : NULL;
    int exists = 0;
    exactly_err rc;

    if (dot && !in)
        return EXACTLY_ENOMEM;

    if (!*conn) {
        *conn = exactly_pg_connect(cfg, "exactly-print-grants", errbuf,
                                   errbuf_size);
        if (!*conn) {
            free(in);
            return EXACTLY_EDATABASE;
        }
    }
    rc = pg_id_sequence(*conn, in, dot ? dot + 1 : outbox, &exists, &schema,
                        &name, errbuf, errbuf_size);
    /* The catalog could not be read: as when it cannot be reached. */
    if (rc != EXACTLY_OK && rc != EXACTLY_ENOMEM)
        rc = EXACTLY_EDATABASE;
    if (rc == EXACTLY_OK && !exists)
        rc = add_grant(g, OPS_OBJ_NOTE, "USAGE", NULL,
                       fmt("pipeline %s: USAGE on the sequence of %s's id "
                           "(the table does not exist yet: print the grants "
                           "again once it does)",
                           p->name, outbox_q));
    else if (rc == EXACTLY_OK && name) {
        rc = quote(schema, 0, &qs, errbuf, errbuf_size);
        if (rc == EXACTLY_OK)
            rc = quote(name, 0, &qn, errbuf, errbuf_size);
        if (rc == EXACTLY_OK)
            rc = add_grant(g, OPS_OBJ_SEQUENCE, "USAGE",
                           fmt("%s.%s", qs, qn),
                           fmt("the ids of pipeline %s's outbox events",
                               p->name));
    }
    free(in);
    free(schema);
    free(name);
    free(qs);
    free(qn);
    return rc;
}

/* The built-in upsert's emit_topic (lib/builtin/upsert_sql.c,
 * upsert_sql_emit): an INSERT into emit_outbox in the batch's
 * transaction, whose id the table numbers itself (docs/CONFIGURATION.md),
 * so USAGE on the sequence the catalog names for it. */
static exactly_err emit_grants(ops_grants *g, const exactly_config *cfg,
                               PGconn **conn, const cfg_pipeline *p,
                               const char *outbox, char *errbuf,
                               size_t errbuf_size)
{
    char *q = NULL;
    exactly_err rc;

    rc = relation_grants(g, outbox, "INSERT",
                         fmt("pipeline %s's emit_topic: its outbox events",
                             p->name),
                         errbuf, errbuf_size);
    if (rc == EXACTLY_OK)
        rc = quote(outbox, 1, &q, errbuf, errbuf_size);
    if (rc == EXACTLY_OK)
        rc = sequence_grant(g, cfg, conn, p, outbox, q, errbuf,
                            errbuf_size);
    free(q);
    return rc;
}

exactly_err ops_grants_pipeline(const exactly_config *cfg,
                                  const cfg_pipeline *p, PGconn **conn,
                                  ops_grants *g, char *errbuf,
                                  size_t errbuf_size)
{
    exactly_plugin *pl = NULL;
    const char *emit;
    exactly_err rc;

    if (p->lookup.table)
        rc = relation_grants(g, p->lookup.table, "SELECT",
                             fmt("lookup.table of pipeline %s", p->name),
                             errbuf, errbuf_size);
    else
        rc = add_grant(g, OPS_OBJ_NOTE, "SELECT", NULL,
                       fmt("pipeline %s: SELECT on every table its lookup.sql "
                           "reads",
                           p->name));
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
        emit = exactly_options_string(pl->opts, "emit_topic");
        if (rc == EXACTLY_OK && emit && *emit)
            rc = emit_grants(g, cfg, conn, p,
                             exactly_options_string(pl->opts, "emit_outbox"),
                             errbuf, errbuf_size);
    } else {
        rc = add_grant(g, OPS_OBJ_NOTE, "", NULL,
                       fmt("pipeline %s: handler %s writes tables exactly "
                           "cannot name: grant what its documentation lists",
                           p->name, pl->label));
    }

done:
    if (rc == EXACTLY_ENOMEM)
        snprintf(errbuf, errbuf_size, "%s", exactly_strerror(rc));
    exactly_plugin_free(pl);
    return rc;
}

exactly_err ops_grants_relay(const exactly_config *cfg, const cfg_relay *r,
                             ops_grants *g, char *errbuf, size_t errbuf_size)
{
    char *s = NULL, *t = NULL, *fs = NULL, *table = NULL;
    exactly_err rc;

    rc = quote(r->schema, 0, &s, errbuf, errbuf_size);
    if (rc == EXACTLY_OK)
        rc = quote(r->table, 0, &t, errbuf, errbuf_size);
    if (rc == EXACTLY_OK)
        rc = quote(cfg->postgres.schema, 0, &fs, errbuf, errbuf_size);
    if (rc != EXACTLY_OK)
        goto done;
    table = fmt("%s.%s", s, t);
    if (!table) {
        rc = EXACTLY_ENOMEM;
        goto done;
    }
    /* lib/relay/relay_outbox.c: the pending rows are read (SELECT), marked
     * published or dead-lettered (UPDATE ... WHERE) and deleted once
     * acknowledged (cleanup: delete) or past retention (cleanup: mark);
     * the relay's counters go to relay_state with INSERT ... ON CONFLICT
     * DO UPDATE, whose update reads the current row. */
    rc = add_grant(g, OPS_OBJ_SCHEMA, "USAGE", strdup(s),
                   fmt("schema of the outbox of relay %s", r->name));
    if (rc == EXACTLY_OK)
        rc = add_grant(g, OPS_OBJ_TABLE, "SELECT, UPDATE, DELETE",
                       strdup(table),
                       fmt("relay %s: reading, marking, dead-lettering and "
                           "deleting its outbox rows",
                           r->name));
    if (rc == EXACTLY_OK)
        rc = add_grant(g, OPS_OBJ_SCHEMA, "USAGE", strdup(fs),
                       strdup("the framework schema"));
    if (rc == EXACTLY_OK) /* the name is ours: nothing to escape */
        rc = add_grant(g, OPS_OBJ_TABLE, "SELECT, INSERT, UPDATE",
                       fmt("%s.\"relay_state\"", fs),
                       fmt("relay %s: its counters, written with each batch's "
                           "outcome",
                           r->name));

done:
    if (rc == EXACTLY_ENOMEM)
        snprintf(errbuf, errbuf_size, "%s", exactly_strerror(rc));
    free(s);
    free(t);
    free(fs);
    free(table);
    return rc;
}

void ops_grants_free(ops_grants *g)
{
    size_t i;

    for (i = 0; i < g->n; i++) {
        free(g->v[i].object);
        free(g->v[i].why);
    }
    free(g->v);
    memset(g, 0, sizeof(*g));
}

const char *ops_object_keyword(ops_object kind)
{
    switch (kind) {
    case OPS_OBJ_SCHEMA: return "SCHEMA";
    case OPS_OBJ_TABLE: return "TABLE";
    case OPS_OBJ_SEQUENCE: return "SEQUENCE";
    case OPS_OBJ_FUNCTION: return "FUNCTION";
    case OPS_OBJ_NOTE: break;
    }
    return "";
}

exactly_err ops_grant_missing(PGconn *conn, const ops_grant *g,
                              char **missing, int *exists, char *errbuf,
                              size_t errbuf_size)
{
    static const pg_object_kind kinds[] = {
        [OPS_OBJ_SCHEMA] = PG_OBJ_SCHEMA,
        [OPS_OBJ_TABLE] = PG_OBJ_TABLE,
        [OPS_OBJ_SEQUENCE] = PG_OBJ_SEQUENCE,
        [OPS_OBJ_FUNCTION] = PG_OBJ_FUNCTION,
    };

    *missing = NULL;
    *exists = 0;
    if (g->kind == OPS_OBJ_NOTE) {
        *missing = strdup("");
        if (*missing)
            return EXACTLY_OK;
        snprintf(errbuf, errbuf_size, "%s", exactly_strerror(EXACTLY_ENOMEM));
        return EXACTLY_ENOMEM;
    }
    return pg_privileges_missing(conn, kinds[g->kind], g->object,
                                 g->privileges, missing, exists, errbuf,
                                 errbuf_size);
}
