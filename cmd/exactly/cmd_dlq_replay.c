/*
 * cmd_dlq_replay.c - `exactly dlq replay`: runs it (lib/ops/dlq.h) and
 * says what it did, what it left and why, and, when the answer to its
 * COMMIT was lost, what reading back found.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_dlq_internal.h"
#include "ops/dlq.h"
#include "table.h"

/* What replay does, for --help (and the README says the same). */
const char dlq_replay_help[] =
            "  replay   applies the selected dead letters again with the\n"
            "           pipeline's current lookup and handler: per partition\n"
            "           one record per entity ID, its messages in offset\n"
            "           order, in batches of at most batch.max_messages\n"
            "           messages, all in ONE transaction that also deletes\n"
            "           what was applied. Each batch runs under a savepoint:\n"
            "           if apply() returns an error or the handler's SQL fails\n"
            "           on the data, the batch is rolled back to it, then\n"
            "           split in halves, each half tried again, down to\n"
            "           single records, as the worker does. A record that fails\n"
            "           alone stays a dead letter (attempts + 1, the new reason and\n"
            "           SQLSTATE); the others are applied, their dead letters\n"
            "           deleted and their outbox events committed with them.\n"
            "           Left in place and listed, while the rest commits (exit\n"
            "           0): records that failed again (fail_record too), dead\n"
            "           letters without an entity ID, and those whose lookup\n"
            "           still finds no row (unless lookup.on_missing is\n"
            "           handler). A deadlock or serialization failure (40P01,\n"
            "           40001) of the lookup, the handler's statements or the\n"
            "           check before COMMIT rolls the whole replay back and\n"
            "           runs it again, up to 5 tries, with a warning each\n"
            "           time; any other failure that is not the records' (the\n"
            "           connection, a timeout, apply() asking for a retry), or\n"
            "           the last try, rolls it back for good (exit 1). A\n"
            "           COMMIT whose answer is lost with the connection is\n"
            "           decided on a new one by the mark its transaction wrote\n"
            "           (a unique token in SCHEMA.commit_marks, deleted once\n"
            "           known), waiting while the transaction is still\n"
            "           finishing: there, committed (exit 0); not there and\n"
            "           nothing writing it, rolled back (exit 1), as after a\n"
            "           crash or a failover that lost it; no answer (still in\n"
            "           progress, a read-only standby, a mark over 23 hours\n"
            "           old, which the deletion of marks older than a day may\n"
            "           have taken), unknown (exit 1). Not by the\n"
            "           transaction's id, which a crash or a failover lets\n"
            "           the server hand to another transaction.\n"
            "           No dedup filter, no stored offset moves, nothing is\n"
            "           read from Kafka: a message is what its dead letter kept\n"
            "           (offset, key up to 1,024 bytes, no timestamp). The\n"
            "           lookup locks the source rows it finds FOR SHARE, in the\n"
            "           order of their IDs, until COMMIT (the fused upsert's\n"
            "           read too), so a change of\n"
            "           them meanwhile is applied by the live worker after the\n"
            "           replay, never under it, and a dead letter is deleted\n"
            "           only when its row was written; this needs UPDATE on the\n"
            "           lookup's tables. A lookup PostgreSQL cannot lock (GROUP\n"
            "           BY, DISTINCT, ...) reads unlocked, with a warning. A row\n"
            "           the lookup did not find cannot be locked: with\n"
            "           on_missing: handler (delete_missing) those IDs are\n"
            "           looked up again before COMMIT, and a row inserted\n"
            "           meanwhile runs the replay again, with a warning\n"
            "           (README, \"Extra writers and row locks\").\n";


/* ---- replay -------------------------------------------------------------- */

/* The dead letters a replay left in place, and why. */
static void print_left(const ops_dlq_replayed *r)
{
    static const char *const headers[] = {"ID",     "TOPIC",     "PARTITION",
                                          "OFFSET", "ENTITY_ID", "LEFT BECAUSE"};
    cli_table *t = cli_table_new(6, headers, "rlrrll");
    size_t i;

    for (i = 0; t && i < r->n; i++) {
        const store_dl_row *d = &r->rows[i];
        char id[24], part[16], off[24], why[DLQ_REASON_WIDTH + 8];
        const char *cells[6];

        if (r->outcome[i] == OPS_DL_REPLAYED)
            continue;
        snprintf(id, sizeof(id), "%" PRId64, d->id);
        snprintf(part, sizeof(part), "%d", (int)d->partition);
        snprintf(off, sizeof(off), "%" PRId64, d->offset);
        if (r->outcome[i] == OPS_DL_UNDECODABLE)
            snprintf(why, sizeof(why), "no entity ID: cannot be replayed");
        else if (r->outcome[i] == OPS_DL_NO_ROW)
            snprintf(why, sizeof(why), "lookup found no row");
        else
            cli_cell_line(r->reason[i] ? r->reason[i] : "failed by handler", why,
                     DLQ_REASON_WIDTH);
        cells[0] = id;
        cells[1] = d->topic;
        cells[2] = part;
        cells[3] = off;
        cells[4] = d->entity;
        cells[5] = why;
        cli_table_add(t, cells);
    }
    if (t) {
        (void)cli_table_print(t, stdout);
        printf("\n");
    }
    cli_table_free(t);
}

int dlq_do_replay(PGconn *conn, const exactly_config *cfg,
                     const cfg_pipeline *p, const ops_dlq_sel *s)
{
    ops_dlq_replayed r;
    char err[2048];
    exactly_err rc;
    size_t left;

    rc = ops_dlq_replay(conn, cfg, p, s, &r, err, sizeof(err));
    /* A lost COMMIT: what reading back found, whichever way it went. */
    if (r.commit_lost)
        cli_line(stderr, "exactly dlq replay: %s", r.note);
    if (rc != EXACTLY_OK) {
        if (!r.commit_lost)
            cli_line(stderr, "exactly dlq replay: %s%s", err,
                     r.rolled_back ? "; rolled back: nothing was applied "
                                     "and the dead letters are unchanged"
                                   : "");
        ops_dlq_replayed_free(&r);
        return rc == EXACTLY_ECONFIG ? CLI_REFUSED : CLI_FAILED;
    }
    left = r.count[OPS_DL_UNDECODABLE] + r.count[OPS_DL_NO_ROW] +
           r.count[OPS_DL_FAILED];
    if (left > 0)
        print_left(&r);
    cli_line(stdout, "replayed %zu dead letter(s) of %s through handler '%s'; "
             "%zu left in place (%zu without an entity ID, %zu without a "
             "looked-up row, %zu failed again)",
             r.count[OPS_DL_REPLAYED], s->label, r.handler, left,
             r.count[OPS_DL_UNDECODABLE], r.count[OPS_DL_NO_ROW],
             r.count[OPS_DL_FAILED]);
    ops_dlq_replayed_free(&r);
    return CLI_OK;
}

