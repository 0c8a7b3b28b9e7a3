/*
 * check_item.c - the read-only transaction every SQL item of `exactly
 * check` runs in, and the grants item that check.c (pipelines, the
 * framework) and check_relay.c (relays) both run.
 */
#include "ops/check_item.h"

#include <stdlib.h>

#include "catalog.h"
#include "ops/grants.h"
#include "pg_conn.h"
#include "strbuf.h"

/* check_item.h says what it does. */
int check_ro_begin(checker *ck, PGconn *conn, const char *what)
{
    char err[1024];

    if (exactly_pg_exec(conn, "BEGIN READ ONLY", 0, NULL, NULL, err,
                        sizeof(err)) != EXACTLY_OK) {
        bad(ck, 0, what, err);
        return -1;
    }
    return 0;
}

void check_ro_end(PGconn *conn)
{
    char ignore[256];

    (void)exactly_pg_exec(conn, "ROLLBACK", 0, NULL, NULL, ignore,
                          sizeof(ignore));
}

/* One FAIL line for grant x, which role lacks missing of. */
static void report_lacking(checker *ck, const char *what, const char *role,
                           const ops_grant *x, const char *missing)
{
    strbuf detail = {0};

    strbuf_printf(&detail,
                  "role %s lacks %s on %s %s (%s): GRANT %s ON %s %s TO %s",
                  role, missing, ops_object_keyword(x->kind), x->object,
                  x->why, missing, ops_object_keyword(x->kind), x->object,
                  role);
    bad(ck, 0, what, detail.oom ? "out of memory" : strbuf_str(&detail));
    strbuf_free(&detail);
}

/* check_item.h says what it does. */
size_t check_grants(checker *ck, PGconn *conn, const char *what,
                    const ops_grants *g)
{
    char err[1024], role[256];
    strbuf detail = {0};
    size_t i, n_checked = 0, n_bad = 0;

    if (check_ro_begin(ck, conn, what) != 0)
        return 1;
    if (pg_current_role(conn, role, sizeof(role), err, sizeof(err)) !=
        EXACTLY_OK) {
        bad(ck, 0, what, err);
        check_ro_end(conn);
        return 1;
    }
    for (i = 0; i < g->n; i++) {
        const ops_grant *x = &g->v[i];
        char *missing = NULL;
        int exists = 0;

        if (x->kind == OPS_OBJ_NOTE)
            continue;
        if (ops_grant_missing(conn, x, &missing, &exists, err, sizeof(err)) !=
            EXACTLY_OK) {
            bad(ck, 0, what, err);
            free(missing);
            check_ro_end(conn);
            return n_bad + 1;
        }
        n_checked += exists;
        if (exists && missing[0]) {
            report_lacking(ck, what, role, x, missing);
            n_bad++;
        }
        free(missing);
    }
    check_ro_end(conn);
    if (n_bad > 0)
        return n_bad;
    strbuf_printf(&detail, "role %s holds the %zu grants checked", role,
                  n_checked);
    for (i = 0; i < g->n; i++)
        if (g->v[i].kind == OPS_OBJ_NOTE)
            strbuf_printf(&detail, "; not checked: %s", g->v[i].why);
    ok(ck, what, detail.oom ? "out of memory" : strbuf_str(&detail));
    strbuf_free(&detail);
    return 0;
}
