/*
 * check_item.h - what every item of `exactly check` uses, in check.c
 * (services, pipelines) and check_relay.c (relays): the reporter, the
 * read-only transaction of the SQL items, the grants item.
 */
#ifndef EXACTLY_OPS_CHECK_ITEM_H
#define EXACTLY_OPS_CHECK_ITEM_H

#include <libpq-fe.h>
#include <stddef.h>

#include "config.h"
#include "ops/check.h"
#include "ops/grants.h"

#define KAFKA_TIMEOUT_MS 10000

typedef struct checker {
    ops_check_fn *report;
    void *arg;
} checker;

static inline void ok(checker *ck, const char *what, const char *detail)
{
    ck->report(ck->arg, OPS_CHECK_OK, what, detail);
}

static inline void bad(checker *ck, int refusal, const char *what,
                       const char *why)
{
    ck->report(ck->arg, refusal ? OPS_CHECK_REFUSED : OPS_CHECK_FAILED, what,
               why);
}

/* Opens the transaction every SQL item of check runs in: read only, and
 * always rolled back with check_ro_end(). Returns 0, or -1 after
 * reporting why under what. */
int check_ro_begin(checker *ck, PGconn *conn, const char *what);
void check_ro_end(PGconn *conn);

/* Verifies that the connected role holds every grant of g (the list that
 * 'exactly migrate --print-grants' prints): one FAIL line per object it
 * lacks something on, naming the privileges, the object and the GRANT
 * that gives them, or one OK line. Read only, rolled back. Returns how
 * many objects lack something (1 when the check itself failed). */
size_t check_grants(checker *ck, PGconn *conn, const char *what,
                    const ops_grants *g);

#endif
