/*
 * pg_xact.c - a transaction's outcome by its own mark (see pg_xact.h).
 */
#include "pg_xact.h"

#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "pg_conn.h"
#include "store_marks.h"

/* The longest one claim waits for a transaction still under way before
 * the deadline is looked at again. */
#define XACT_WAIT_SLICE_MS 1000

exactly_err exactly_pg_xact_mark(PGconn *conn, const char *schema,
                                 exactly_xact_ref *ref, char *err,
                                 size_t errsz)
{
    return store_marks_add(conn, schema, ref->mark, sizeof(ref->mark), err,
                           errsz);
}

void exactly_pg_xact_forget(PGconn *conn, const char *schema,
                            const exactly_xact_ref *ref)
{
    char err[512];

    if (!ref->mark[0])
        return;
    if (store_marks_forget(conn, schema, ref->mark, err, sizeof(err)) !=
        EXACTLY_OK)
        exactly_log(EXACTLY_LOG_WARN, "postgres",
                    "cannot delete the commit mark of a committed "
                    "transaction: it stays, harmless, until a later command "
                    "deletes marks older than a day",
                    LOG_STR("mark", ref->mark), LOG_STR("error", err));
}

/* The wait of one claim: a slice of what is left of the bound, shorter
 * than the client's own wait for any answer (the bound itself). */
static int slice_ms(long long left, int bound)
{
    long long s = left < XACT_WAIT_SLICE_MS ? left : XACT_WAIT_SLICE_MS;

    if (s > bound / 2)
        s = bound / 2;
    return s < 1 ? 1 : (int)s;
}

exactly_xact_outcome exactly_pg_xact_outcome(PGconn *conn,
                                             const exactly_config *cfg,
                                             const exactly_xact_ref *ref,
                                             char *why, size_t whysz)
{
    int bound = exactly_pg_wait_bound_ms(cfg);
    long long until = exactly_now_ms() + bound;
    const char *schema = cfg->postgres.schema;
    char state[6];
    int taken, aged;

    if (!ref->mark[0]) {
        snprintf(why, whysz, "the transaction wrote no mark to ask about");
        return EXACTLY_XACT_UNKNOWN;
    }
    for (;;) {
        long long left = until - exactly_now_ms();
        exactly_err rc = store_marks_claim(conn, schema, ref->mark,
                                           slice_ms(left, bound), &taken,
                                           &aged, state, why, whysz);

        if (rc == EXACTLY_OK && !taken) {
            exactly_pg_xact_forget(conn, schema, ref);
            return EXACTLY_XACT_COMMITTED;
        }
        /* Absent, but the delete of old marks may have taken it. */
        if (rc == EXACTLY_OK && aged) {
            snprintf(why, whysz,
                     "the mark was written more than " STORE_MARKS_AGED
                     " ago, and marks older than a day are deleted: that "
                     "it is not there does not say the transaction rolled "
                     "back");
            return EXACTLY_XACT_UNKNOWN;
        }
        if (rc == EXACTLY_OK)
            return EXACTLY_XACT_ABORTED;
        if (strcmp(state, "25006") == 0) {
            snprintf(why, whysz,
                     "the server now answering takes no writes (a standby "
                     "in recovery, or read-only), and may not have "
                     "received the transaction yet");
            return EXACTLY_XACT_UNKNOWN;
        }
        /* 55P03: a transaction writing the mark is still under way. */
        if (strcmp(state, "55P03") != 0 || PQstatus(conn) != CONNECTION_OK)
            return EXACTLY_XACT_UNKNOWN;
        if (exactly_now_ms() >= until) {
            snprintf(why, whysz, "the transaction is still in progress");
            return EXACTLY_XACT_UNKNOWN;
        }
    }
}
