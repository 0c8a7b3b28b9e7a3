/*
 * dlq_confirm.c - what became of a replay whose COMMIT went unanswered
 * (DESIGN §3: outcome unknown, read back to decide).
 *
 * The COMMIT may have landed before the connection went: the replay's
 * writes and its deletions committed, and saying "rolled back" would be
 * the opposite of the truth. The transaction's own mark, written last
 * before COMMIT, is asked about on a new connection (pg_xact.h): not the
 * dead letters as a read sees them, which stay unchanged while the old
 * session still finishes its commit (and, through a pooler, that session
 * cannot be found by the pid the client knows), and not its id, which a
 * server hands out again after a crash or a failover.
 */
#include "dlq_replay_internal.h"

#include <stdio.h>

#include "pg_conn.h"
#include "pg_xact.h"

exactly_err dlq_confirm_commit(replay *r, const exactly_xact_ref *xref,
                               exactly_err fail, char *err, size_t errsz)
{
    ops_dlq_replayed *o = r->out;
    char lost[1024], why[1024];
    exactly_xact_outcome out = EXACTLY_XACT_UNKNOWN;
    PGconn *conn;

    o->commit_lost = 1;
    o->rolled_back = 0;
    snprintf(lost, sizeof(lost), "%.1000s", err);
    conn = exactly_pg_connect(r->cfg, "exactly-dlq", why, sizeof(why));
    if (conn)
        out = exactly_pg_xact_outcome(conn, r->cfg, xref, why, sizeof(why));
    PQfinish(conn);
    if (out == EXACTLY_XACT_COMMITTED) {
        snprintf(o->note, sizeof(o->note),
                 "the answer to COMMIT was lost (%s); asked on a new "
                 "connection, the transaction committed (its mark %s is "
                 "there): the replay committed",
                 lost, xref->mark);
        fail = EXACTLY_OK;
    } else if (out == EXACTLY_XACT_ABORTED) {
        o->rolled_back = 1;
        snprintf(o->note, sizeof(o->note),
                 "the answer to COMMIT was lost (%s); asked on a new "
                 "connection, the transaction was rolled back (its mark %s "
                 "is not there, and nothing is writing it): nothing was "
                 "applied and the dead letters are unchanged",
                 lost, xref->mark);
    } else {
        snprintf(o->note, sizeof(o->note),
                 "the answer to COMMIT was lost (%s); outcome unknown: "
                 "whether the transaction (mark %s) committed could not be "
                 "learnt (%s); see `exactly dlq list` before replaying "
                 "again",
                 lost, xref->mark, why);
    }
    /* err is the one sentence of a failure, as everywhere in dlq.h. */
    if (fail != EXACTLY_OK)
        snprintf(err, errsz, "%s", o->note);
    return fail;
}
