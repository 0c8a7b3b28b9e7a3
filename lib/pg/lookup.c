/* lookup.c - the lookup statement of a pipeline, one builder for the
 * worker, reprocess and dlq replay, so that all read the same rows. */
#include "lookup.h"

#include <stdlib.h>
#include <string.h>

#include "pg_conn.h"
#include "strbuf.h"

/* Appends a possibly schema-qualified table name, each part quoted. */
static int put_relation(PGconn *conn, strbuf *sb, const char *name)
{
    const char *dot = strchr(name, '.');
    char *q;

    if (dot) {
        char *schema = strndup(name, (size_t)(dot - name));
        char *qs = schema ? exactly_pg_ident(conn, schema) : NULL;
        free(schema);
        if (!qs)
            return -1;
        strbuf_printf(sb, "%s.", qs);
        PQfreemem(qs);
        name = dot + 1;
    }
    q = exactly_pg_ident(conn, name);
    if (!q)
        return -1;
    strbuf_puts(sb, q);
    PQfreemem(q);
    return 0;
}

exactly_err exactly_lookup_sql(PGconn *conn, const cfg_pipeline *p, char **sql,
                             char **key_column)
{
    strbuf sb = {0};
    char *idcol = NULL;
    size_t i;

    *sql = NULL;
    *key_column = NULL;
    if (p->lookup.sql) {
        *sql = strdup(p->lookup.sql);
        *key_column = strdup(p->lookup.key_column ? p->lookup.key_column : "id");
        goto done;
    }
    strbuf_puts(&sb, "SELECT ");
    if (p->lookup.n_columns == 0)
        strbuf_puts(&sb, "*");
    for (i = 0; i < p->lookup.n_columns; i++) {
        char *c = exactly_pg_ident(conn, p->lookup.columns[i]);
        if (!c)
            goto oom;
        strbuf_printf(&sb, "%s%s", i ? ", " : "", c);
        PQfreemem(c);
    }
    strbuf_puts(&sb, " FROM ");
    if (put_relation(conn, &sb, p->lookup.table) != 0)
        goto oom;
    idcol = exactly_pg_ident(conn, p->lookup.id_column);
    if (!idcol)
        goto oom;
    strbuf_printf(&sb, " WHERE %s = ANY($1::%s[])", idcol,
                  exactly_id_type_name(p->id.type));
    PQfreemem(idcol);
    if (sb.oom)
        goto oom;
    *sql = sb.data;
    *key_column = strdup(p->lookup.id_column);
done:
    if (!*sql || !*key_column) {
        free(*sql);
        free(*key_column);
        *sql = *key_column = NULL;
        return EXACTLY_ENOMEM;
    }
    return EXACTLY_OK;
oom:
    strbuf_free(&sb);
    return EXACTLY_ENOMEM;
}

/* Runs sql with no IDs on conn. Returns NULL when it ran, else why not
 * (the server's message, malloc'd; "" when even that could not be
 * copied), with its SQLSTATE in state ("" when none came: the
 * connection). */
static char *try_run(PGconn *conn, const char *sql, char state[6])
{
    const char *params[1] = {"{}"};
    PGresult *res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    const char *code = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    char *why = NULL;

    snprintf(state, 6, "%s", code ? code : "");
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        const char *m = res ? PQresultErrorMessage(res) : PQerrorMessage(conn);
        size_t n = strlen(m);
        while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' '))
            n--;
        why = strndup(m, n);
        if (!why)
            why = strdup("");
    }
    PQclear(res);
    return why;
}

/* Whether the server's refusal state says the query cannot be locked as
 * it is: a query shape PostgreSQL does not lock (0A000) or no UPDATE
 * privilege to lock with (42501). Anything else (a lock or statement
 * timeout, a lost connection, a shutdown) says nothing about the lookup:
 * it may run locked on the next try. */
static int cannot_lock(const char *state)
{
    return strcmp(state, "0A000") == 0 || strcmp(state, "42501") == 0;
}

/* The length of a lookup's sql without what may end it (blanks, a
 * semicolon), to be wrapped in a query of ours. */
static int body_len(const char *sql)
{
    size_t n = strlen(sql);

    while (n > 0 && strchr(" \t\r\n;", sql[n - 1]) != NULL)
        n--;
    return (int)n;
}

exactly_err exactly_lookup_sql_shared(PGconn *conn, const cfg_pipeline *p,
                                      char **sql, char **key_column,
                                      char **unlocked)
{
    strbuf sb = {0};
    exactly_err rc;
    char *why, *plain_why, *key;
    char state[6], plain_state[6];

    *unlocked = NULL;
    rc = exactly_lookup_sql(conn, p, sql, key_column);
    if (rc != EXACTLY_OK)
        return rc;
    /* Rows locked in the order of the key column (the lock is taken
     * above the sort), so that two extra writers, or one and a user
     * transaction that changes several rows in that order, never wait on
     * each other in a cycle. The user's text on lines of its own, so that
     * a trailing comment ends on its line; without the semicolon that may
     * end it. */
    key = exactly_pg_ident(conn, *key_column);
    if (!key)
        goto oom;
    if (p->lookup.sql)
        strbuf_printf(&sb,
                      "SELECT * FROM (\n%.*s\n) AS q ORDER BY q.%s FOR SHARE",
                      body_len(*sql), *sql, key);
    else
        strbuf_printf(&sb, "%s ORDER BY %s FOR SHARE", *sql, key);
    PQfreemem(key);
    if (sb.oom)
        goto oom;
    /* Refused locked (cannot_lock) but running plain: the plain form, and
     * why. Both failing (the connection, a broken lookup): the locked
     * form, which then fails as the plain one would have. The locked form
     * failing otherwise (a timeout: the locking read waits where the
     * plain one does not) is no refusal either: the locked form, whose
     * batches meet that failure and are retried or fail, never read
     * unlocked. */
    why = try_run(conn, sb.data, state);
    if (why && p->lookup.sql && strcmp(state, "42702") == 0) {
        /* The select list names the key column twice (s.*, s.id): no
         * ORDER BY can name it. Locked in the order the rows come. */
        strbuf_reset(&sb);
        strbuf_printf(&sb, "SELECT * FROM (\n%.*s\n) AS q FOR SHARE",
                      body_len(*sql), *sql);
        if (sb.oom)
            goto oom;
        free(why);
        why = try_run(conn, sb.data, state);
    }
    if (why) {
        plain_why = NULL;
        if (cannot_lock(state) &&
            !(plain_why = try_run(conn, *sql, plain_state))) {
            *unlocked = why;
            strbuf_free(&sb);
            return EXACTLY_OK;
        }
        free(plain_why);
        free(why);
    }
    free(*sql);
    *sql = sb.data;
    return EXACTLY_OK;
oom:
    strbuf_free(&sb);
    free(*sql);
    free(*key_column);
    *sql = *key_column = NULL;
    return EXACTLY_ENOMEM;
}

int exactly_lookup_column(const PGresult *res, const char *name)
{
    int c;

    for (c = 0; c < PQnfields(res); c++)
        if (strcmp(PQfname(res, c), name) == 0)
            return c;
    return -1;
}
