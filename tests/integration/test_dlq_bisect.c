/*
 * `exactly dlq replay` when some records still fail: the replay bisects
 * like the worker, so the records whose cause was fixed are applied and
 * only the ones that still fail stay dead letters.
 *
 * The failing.so handler fails the WHOLE batch (set_error + an error
 * return) when it holds an ID of fail_ids, and runs a query the server
 * refuses (SELECT 1/0) for an ID of query_ids; otherwise it counts
 * applied messages per ID in failing_applied.
 *
 *   - a worker runs with fail_ids FAIL_IDS and query_ids QUERY_ID: it
 *     bisects and dead-letters exactly those IDs' messages;
 *   - the cause is fixed for all but two: fail_ids keeps STILL_FAILING
 *     (a handler failure), query_ids keeps QUERY_ID (an SQL error);
 *   - replay --all then applies every fixed ID's messages (their counts
 *     equal what was produced) and deletes their dead letters, in the
 *     same batches as the two that fail; those two stay, attempts 2, with
 *     the new failure's reason (and the server's SQLSTATE for the query);
 *   - before that, a replay that cannot take a lock (the test holds one on
 *     failing_applied; lock_timeout_ms 500) is not bisected: the failure
 *     is the server's, not the records', so the whole replay rolls back,
 *     exit 1, nothing applied and no dead letter changed;
 *   - it exits 0 and its summary says how many were replayed and how many
 *     failed again, listing the ones left with their reason;
 *   - a second replay of what is left changes nothing but the attempts.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_kit.h"
#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "dlq-bisect"
#define PIPELINE "bisect"
#define NP 2
/* Message i names ID (i % N_IDS) + 1 and goes to partition i % NP; N_IDS
 * is odd, so every ID has messages on both partitions. */
#define N_IDS 15
#define N_MSGS 60
#define STILL_FAILING "5"
#define QUERY_ID "6"
#define WORKER_TIMEOUT_MS 120000

static const char *const fixed_ids[] = {"3", "8", "11"};
#define N_FIXED 3

/* The pipeline; before the fix fail_ids also lists the fixed IDs. Batches
 * of 8 messages: a partition's dead letters (2 messages per ID) take more
 * than one replay batch, and a batch holds fixed and failing IDs. */
static void write_config(cli_kit *c, int fixed)
{
    tk_config cfg;
    tk_pipeline *pl = &cfg.pipelines[0];

    tk_config_init(&cfg, c->bootstraps, c->conninfo);
    cfg.kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
    cfg.lock_timeout_ms = 500;
    ledger_pipeline(pl, PIPELINE, TOPIC);
    pl->group = "dlq-bisect";
    pl->lookup_id_column = "id";
    pl->plugin = "failing.so";
    pl->options_yaml = fixed ? "        fail_ids: ['" STILL_FAILING "']\n"
                               "        query_ids: ['" QUERY_ID "']\n"
                             : "        fail_ids: ['3', '" STILL_FAILING
                               "', '8', '11']\n"
                               "        query_ids: ['" QUERY_ID "']\n";
    pl->max_messages = 8;
    pl->max_wait_ms = 50;
    tk_config_write(c->cfg, &cfg);
}

/* Runs `exactly dlq ARGS... -c cfg` (ARGS NULL-terminated); exit status,
 * output in *out. */
#define dlq(c, out, ...) cli_exactly((c), (out), "dlq", __VA_ARGS__)

/* Messages of id failing_applied counted (0: none). */
static int64_t applied(cli_kit *c, const char *id)
{
    return tk_sql_int64(c->db, "SELECT coalesce(sum(n), 0) FROM"
                               " failing_applied WHERE id = '%s'",
                        id);
}

int main(void)
{
    cli_kit c;
    int64_t produced[N_IDS + 1];
    int64_t n_fixed = 0, n_left;
    char *out, *before, *after;
    int status, i;

    memset(produced, 0, sizeof produced);
    cli_kit_start(&c, "dlq_bisect", TOPIC, NP, "dlq.yaml", 1);
    cli_kit_produce_ids(&c, TOPIC, N_MSGS, N_IDS, NP, produced);
    for (i = 0; i < N_FIXED; i++)
        n_fixed += produced[atoi(fixed_ids[i])];
    n_left = produced[atoi(STILL_FAILING)] + produced[atoi(QUERY_ID)];

    tk_sql(c.db, "CREATE TABLE failing_applied (id text PRIMARY KEY,"
                 " n bigint NOT NULL)");
    write_config(&c, 0);
    cli_kit_migrate(&c);
    cli_kit_worker_to_idle(&c, WORKER_TIMEOUT_MS);
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, NULL), n_fixed + n_left,
                      "dead letters after the run");
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, "entity_id = '" QUERY_ID "' AND"
                                           " sqlstate = '22012'"),
                      produced[atoi(QUERY_ID)],
                      "dead letters of the failing query (division by zero)");
    for (i = 0; i < N_FIXED; i++)
        TK_CHECK_EQ_INT64(applied(&c, fixed_ids[i]), 0,
                          "a failing ID applied by the worker");

    /* Fixed for all but two. A lock the replay cannot get is no fault of
     * the records: everything rolls back, nothing is bisected away. */
    write_config(&c, 1);
    before = tk_sql_text(c.db, "SELECT string_agg(format('%%s/%%s/%%s/%%s', id,"
                               " attempts, reason, last_failed_at), ';' ORDER BY"
                               " id) FROM exactly.dead_letters");
    {
        PGconn *locker = tk_pg_connect(c.conninfo);
        tk_sql(locker, "BEGIN; LOCK TABLE failing_applied IN EXCLUSIVE MODE");
        status = dlq(&c, &out, "replay", "--all", NULL);
        tk_sql(locker, "ROLLBACK");
        PQfinish(locker);
    }
    tk_note("dlq replay --all under a lock:\n%s", out);
    TK_CHECK(status == 1 && strstr(out, "lock timeout") &&
                 strstr(out, "rolled back: nothing was applied"),
             "replay under a lock exited %d:\n%s", status, out);
    free(out);
    after = tk_sql_text(c.db, "SELECT string_agg(format('%%s/%%s/%%s/%%s', id,"
                              " attempts, reason, last_failed_at), ';' ORDER BY"
                              " id) FROM exactly.dead_letters");
    TK_CHECK_EQ_STR(after, before, "dead letters after a rolled-back replay");
    free(before);
    free(after);
    for (i = 0; i < N_FIXED; i++)
        TK_CHECK_EQ_INT64(applied(&c, fixed_ids[i]), 0,
                          "a fixed ID applied by a rolled-back replay");

    /* Replay bisects down to the two that still fail. */
    status = dlq(&c, &out, "replay", "--all", NULL);
    tk_note("dlq replay --all:\n%s", out);
    TK_CHECK(status == 0, "replay exited %d:\n%s", status, out);
    {
        char want[256];
        snprintf(want, sizeof want,
                 "replayed %" PRId64 " dead letter(s) of pipeline " PIPELINE
                 " through handler 'failing'; %" PRId64 " left in place (0 "
                 "without an entity ID, 0 without a looked-up row, %" PRId64
                 " failed again)",
                 n_fixed, n_left, n_left);
        TK_CHECK(strstr(out, want) != NULL, "replay did not say '%s':\n%s",
                 want, out);
        TK_CHECK(strstr(out, "failing: record " STILL_FAILING " is listed in"
                             " fail_ids") &&
                     strstr(out, "division by zero"),
                 "replay does not list why the two failed again:\n%s", out);
    }
    free(out);
    for (i = 0; i < N_FIXED; i++)
        TK_CHECK_EQ_INT64(applied(&c, fixed_ids[i]),
                          produced[atoi(fixed_ids[i])],
                          "messages of a fixed ID applied by the replay");
    TK_CHECK_EQ_INT64(applied(&c, STILL_FAILING) + applied(&c, QUERY_ID), 0,
                      "messages of the still failing IDs applied");
    for (i = 1; i <= N_IDS; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", i);
        if (strcmp(id, STILL_FAILING) != 0 && strcmp(id, QUERY_ID) != 0)
            TK_CHECK_EQ_INT64(applied(&c, id), produced[i],
                              "messages of an ID applied once");
    }
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, NULL), n_left,
                      "dead letters after the replay");
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, "entity_id = '" STILL_FAILING
                                           "' AND attempts = 2 AND reason ="
                                           " 'failing: record " STILL_FAILING
                                           " is listed in fail_ids' AND"
                                           " sqlstate IS NULL"),
                      produced[atoi(STILL_FAILING)],
                      "dead letters of the ID the handler still fails");
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, "entity_id = '" QUERY_ID "' AND"
                                           " attempts = 2 AND reason LIKE"
                                           " '%division by zero%' AND"
                                           " sqlstate = '22012'"),
                      produced[atoi(QUERY_ID)],
                      "dead letters of the ID whose query still fails");

    /* Again: nothing applied, the attempts counted, the rest unchanged. */
    before = tk_sql_text(c.db, "SELECT string_agg(format('%%s/%%s/%%s/%%s', id,"
                               " entity_id, reason, sqlstate), ';' ORDER BY id)"
                               " FROM exactly.dead_letters");
    status = dlq(&c, &out, "replay", "--all", NULL);
    TK_CHECK(status == 0 && strstr(out, "replayed 0 dead letter(s)"),
             "second replay exited %d:\n%s", status, out);
    free(out);
    after = tk_sql_text(c.db, "SELECT string_agg(format('%%s/%%s/%%s/%%s', id,"
                              " entity_id, reason, sqlstate), ';' ORDER BY id)"
                              " FROM exactly.dead_letters");
    TK_CHECK_EQ_STR(after, before, "dead letters after the second replay");
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, "attempts = 3"), n_left,
                      "attempts after the second replay");
    free(before);
    free(after);
    tk_note("dlq replay: %" PRId64 " applied, %" PRId64 " isolated and kept",
            n_fixed, n_left);

    cli_kit_stop(&c);
    return 0;
}
