/*
 * `exactly reprocess` over every partition of a topic in one command.
 *
 * A topic of 3 partitions: 0 holds 30 messages, 1 holds 50, 2 none.
 *
 *   offsets  --from 10 --to 40 without --partition: each partition's range
 *            cut to what it holds (0: 10..29, 1: 10..40), the empty one left
 *            out; one row per partition under one parent (the run's
 *            number), both done, each offset applied once (the ledger's
 *            reprocess table, keyed by run and offset, fails loudly on a
 *            second application), counted per row; one progress display
 *            ("partitions N/2 done ...") and a line per partition done;
 *            the pipeline's own offsets and ledger untouched.
 *   resume   a run over the whole topic (--from 0) at --rate 10 is
 *            interrupted (SIGINT) once partition 0 is done: it exits 1 and
 *            names its resume; --resume RUN finishes partition 1 from where
 *            it committed (partition 0 is not applied again), and a second
 *            resume is refused (exit 2: done).
 *   failover a run over the whole topic (--from 0, --rate 10) closes
 *            partition 0; while it applies partition 1, partition 0's row
 *            moves back as a failover to an asynchronous standby that
 *            lacks the commits of its last batches and of its close moves
 *            it: next_offset 20, applied 20, status running, and the
 *            ledger_reprocess rows of 20..29 gone, in one transaction. The
 *            run looks at every row again before it says done: exit 0,
 *            both rows done, partition 0 applied again from 20 (each
 *            offset of 0..29 once), applied counted per row 30 + 50, and
 *            the summary says what the rows hold (applied 80).
 *   times    the time range's refusals and what librdkafka's mock lets us
 *            see: it answers every lookup by timestamp with "none that
 *            recent" (rdkafka_mock_handlers.c, ListOffsets), so
 *            --to-time in the future covers each partition to its end and
 *            --from-time in the future selects nothing (refused, exit 2);
 *            a time PostgreSQL cannot read and a range of offsets and times
 *            at once are refused.
 *   child    a run over the topic with ID 7 failing (2 messages of
 *            partition 0, 3 of partition 1) ends with 5 dead letters;
 *            partition 1's row is then set back as an interrupted session
 *            leaves it (next_offset 0, its ledger rows and dead letters
 *            gone) and resumed by that row's own id, the id the logs
 *            print: it is the run's partition, so its dead letters go
 *            under the run's number (`dlq list --run RUN` shows all 5,
 *            none under the row's id) and its ledger rows under the run.
 *   replay   a run over the topic with ID 7 failing, then, the cause
 *            gone, `dlq replay --run RUN --all`: each replayed message is
 *            counted in the row of its partition (applied 30 and 50,
 *            what the ledger holds per partition), not all in the first.
 *
 * EXACTLY_TEST_ONLY=name[,name] runs only those scenarios.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_kit.h"
#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "rp-topic"
#define N0 30
#define N1 50

/* failing: the ledger fails messages of ID 7 (fail_on_ids). */
static void write_config(cli_kit *c, int failing)
{
    tk_config cfg;
    tk_pipeline *pl = &cfg.pipelines[0];

    tk_config_init(&cfg, c->bootstraps, c->conninfo);
    ledger_pipeline(pl, LEDGER_PIPELINE, TOPIC);
    pl->lookup_id_column = "id";
    if (failing)
        pl->options_yaml = "        fail_on_ids: ['7']\n";
    pl->max_messages = 50;
    pl->max_wait_ms = 50;
    tk_config_write(c->cfg, &cfg);
}

/* `exactly reprocess --pipeline LEDGER_PIPELINE ARGS... -c cfg`: status
 * and output (cli_exactly). */
#define reprocess(c, out, ...)                                              \
    cli_exactly((c), (out), "reprocess", "--pipeline", LEDGER_PIPELINE,     \
                __VA_ARGS__)

/* The run number the result line names ("run N: ..."). */
static int64_t printed_run(const char *out)
{
    const char *p = strstr(out, "\nrun ");
    long long id = -1;

    if (!p && strncmp(out, "run ", 4) == 0)
        p = out - 1;
    TK_CHECK(p && sscanf(p + 5, "%lld:", &id) == 1, "no result line:\n%s", out);
    return id;
}

/* Applications of run in ledger_reprocess of partition p within lo..hi
 * (each offset at most once: the primary key). */
static int64_t applied_rows(cli_kit *c, int64_t run, int p, int64_t lo, int64_t hi)
{
    return tk_sql_int64(c->db,
                        "SELECT count(*) FROM ledger_reprocess WHERE run = %"
                        PRId64 " AND partition = %d AND \"offset\" BETWEEN %"
                        PRId64 " AND %" PRId64, run, p, lo, hi);
}

/* Rows of run (its partitions' rows, under the parent run) whose status
 * is done. */
static int64_t rows_done(cli_kit *c, int64_t run)
{
    return tk_sql_int64(c->db, "SELECT count(*) FROM exactly.reprocess_runs"
                               " WHERE parent = %" PRId64 " AND status ="
                               " 'done'", run);
}

/* What the rows of run count as applied, summed. */
static int64_t run_applied(cli_kit *c, int64_t run)
{
    return tk_sql_int64(c->db, "SELECT sum(applied) FROM"
                               " exactly.reprocess_runs WHERE parent = %"
                               PRId64, run);
}

/* Starts, in the background, a run over the whole topic (--from 0) at
 * --rate 10, in batches of 5, output in log (a fresh dir/reprocess-NN.log,
 * log_size bytes), and waits up to 30 s for it to say partition 0 is
 * done. Returns its pid. */
static pid_t start_slow_run(cli_kit *c, char *log, size_t log_size)
{
    const char *args[] = {"reprocess", "--pipeline", LEDGER_PIPELINE,
                          "--topic", TOPIC, "--from", "0", "--batch", "5",
                          "--rate", "10", "-c", c->cfg, NULL};
    pid_t pid;

    snprintf(log, log_size, "%s/reprocess-%02d.log", c->dir, ++c->n_cmd);
    pid = tk_exactly_startv(log, args);
    TK_CHECK(ledger_wait_log(log, "partition 0 done", 1, pid, 30000, NULL),
             "partition 0 was not done within 30 s; log %s", log);
    return pid;
}

static void scenario_offsets(cli_kit *c)
{
    char *out;
    int64_t run;
    int st;

    st = reprocess(c, &out, "--topic", TOPIC, "--from", "10", "--to", "40",
                   "--batch", "7", NULL);
    tk_note("reprocess --topic --from 10 --to 40:\n%s", out);
    TK_CHECK(st == 0, "reprocess over the topic exited %d:\n%s", st, out);
    run = printed_run(out);
    TK_CHECK(strstr(out, "partition 0 done: offsets 10..29, applied 20") &&
                 strstr(out, "partition 1 done: offsets 10..40, applied 31"),
             "no line per partition done:\n%s", out);
    TK_CHECK(strstr(out, "partitions 2/2 done  offsets 51 of 51  100%"),
             "no final progress line over the topic:\n%s", out);
    TK_CHECK(strstr(out, "partition 2 done") == NULL,
             "the empty partition was run:\n%s", out);
    TK_CHECK_EQ_INT64(applied_rows(c, run, 0, 0, 1000), 20, "partition 0 rows");
    TK_CHECK_EQ_INT64(applied_rows(c, run, 0, 10, 29), 20, "partition 0 10..29");
    TK_CHECK_EQ_INT64(applied_rows(c, run, 1, 0, 1000), 31, "partition 1 rows");
    TK_CHECK_EQ_INT64(applied_rows(c, run, 1, 10, 40), 31, "partition 1 10..40");
    TK_CHECK_EQ_INT64(rows_done(c, run), 2, "rows of the run, done");
    TK_CHECK_EQ_INT64(run_applied(c, run), 51, "applied, counted per row");
    TK_CHECK_EQ_INT64(tk_sql_int64(c->db, "SELECT count(*) FROM "
                                          "exactly.reprocess_runs WHERE parent = %"
                                          PRId64 " AND partition = 2", run),
                      0, "a row for the empty partition");
    TK_CHECK_EQ_INT64(ledger_rows(c->db), 0, "live ledger rows");
    TK_CHECK_EQ_INT64(tk_sql_int64(c->db, "SELECT count(*) FROM exactly.offsets"),
                      0, "the pipeline's stored offsets");
    free(out);

    /* A range of offsets no partition holds is refused; nothing written. */
    st = reprocess(c, &out, "--topic", TOPIC, "--from", "500", NULL);
    TK_CHECK(st == 2 && strstr(out, "no offset of the topic is in it"),
             "--from 500 exited %d:\n%s", st, out);
    free(out);
}

static void scenario_resume(cli_kit *c)
{
    char log[512], run_s[24], *out;
    int64_t run, next1;
    int st, i;
    pid_t pid = start_slow_run(c, log, sizeof log);

    /* ... and partition 1 committed a batch or more. */
    for (i = 0; i < 1500; i++) {
        if (tk_sql_int64(c->db, "SELECT count(*) FROM exactly.reprocess_runs"
                                " WHERE partition = 1 AND next_offset > 0"
                                " AND status = 'running'") > 0)
            break;
        tk_sleep_ms(20);
    }
    tk_kill(pid, SIGINT);
    st = tk_wait(pid, c->cmd_timeout_ms);
    out = tk_read_file(log);
    tk_note("interrupted run:\n%s", out ? out : "");
    TK_CHECK(st == 1 && out && strstr(out, ": interrupted;"),
             "the interrupted run exited %d:\n%s", st, out ? out : "");
    run = printed_run(out);
    snprintf(run_s, sizeof run_s, "%" PRId64, run);
    TK_CHECK(strstr(out, "--resume ") && strstr(strstr(out, "--resume "), run_s),
             "no resume line for run %s:\n%s", run_s, out);
    free(out);
    next1 = tk_sql_int64(c->db, "SELECT next_offset FROM exactly.reprocess_runs"
                                " WHERE parent = %" PRId64 " AND partition = 1"
                                " AND status = 'interrupted'", run);
    TK_CHECK(next1 > 0 && next1 < N1,
             "partition 1 interrupted at %" PRId64 ", expected inside 1..%d",
             next1, N1 - 1);
    TK_CHECK_EQ_INT64(applied_rows(c, run, 1, 0, 1000), next1,
                      "partition 1 rows before the resume");

    st = reprocess(c, &out, "--resume", run_s, NULL);
    tk_note("resume:\n%s", out);
    TK_CHECK(st == 0, "--resume exited %d:\n%s", st, out);
    TK_CHECK(strstr(out, "partition 1 done") &&
                 strstr(out, "partition 0 done") == NULL,
             "the resume did not do partition 1 alone:\n%s", out);
    free(out);
    TK_CHECK_EQ_INT64(applied_rows(c, run, 0, 0, N0 - 1), N0, "partition 0");
    TK_CHECK_EQ_INT64(applied_rows(c, run, 1, 0, N1 - 1), N1, "partition 1");
    TK_CHECK_EQ_INT64(rows_done(c, run), 2, "rows of the resumed run, done");
    TK_CHECK_EQ_INT64(run_applied(c, run), N0 + N1,
                      "applied of the resumed run");

    st = reprocess(c, &out, "--resume", run_s, NULL);
    TK_CHECK(st == 2 && strstr(out, "already done"),
             "a second resume exited %d:\n%s", st, out);
    free(out);
}

static void scenario_failover(cli_kit *c)
{
    char log[512], *out, *moved;
    int64_t run;
    int st;
    pid_t pid = start_slow_run(c, log, sizeof log);

    run = tk_sql_int64(c->db, "SELECT max(parent) FROM exactly.reprocess_runs");
    /* The failover: partition 0's row and its last two batches' rows as
     * they were before those batches, in one statement, only while the
     * run is still early in partition 1 (it looks at its rows again only
     * once that one is done). */
    moved = tk_sql_text(c->db,
                        "WITH m AS (UPDATE exactly.reprocess_runs SET "
                        "next_offset = 20, applied = 20, status = 'running', "
                        "ended_at = NULL WHERE parent = %" PRId64 " AND "
                        "partition = 0 AND status = 'done' AND next_offset = "
                        "%d AND EXISTS (SELECT 1 FROM exactly.reprocess_runs "
                        "WHERE parent = %" PRId64 " AND partition = 1 AND "
                        "status = 'running' AND next_offset < 40) RETURNING "
                        "id), d AS (DELETE FROM ledger_reprocess WHERE run = "
                        "%" PRId64 " AND partition = 0 AND \"offset\" >= 20 "
                        "AND EXISTS (SELECT 1 FROM m) RETURNING 1) SELECT "
                        "(SELECT count(*) FROM m) || ' ' || (SELECT count(*) "
                        "FROM d)",
                        run, N0, run, run);
    TK_CHECK(moved && strcmp(moved, "1 10") == 0,
             "moving partition 0's row back changed \"%s\" (row, ledger "
             "rows), expected \"1 10\": partition 1 was already far on; "
             "log %s", moved ? moved : "", log);
    free(moved);
    st = tk_wait(pid, c->cmd_timeout_ms);
    out = tk_read_file(log);
    tk_note("run whose partition 0 moved back after it was done:\n%s",
            out ? out : "");
    TK_CHECK(st == 0 && out && strstr(out, ": done;"),
             "the run exited %d:\n%s", st, out ? out : "");
    /* What the rows hold: the applications the failover took back are
     * not counted, their second time is. */
    TK_CHECK(strstr(out, ": done; applied 80 messages of " TOPIC),
             "the summary does not count what the rows hold (80):\n%s", out);
    TK_CHECK_EQ_INT64(applied_rows(c, run, 0, 0, N0 - 1), N0,
                      "partition 0 rows after its row moved back (the "
                      "offsets the failover lost applied again)");
    TK_CHECK_EQ_INT64(applied_rows(c, run, 1, 0, N1 - 1), N1, "partition 1");
    TK_CHECK_EQ_INT64(tk_sql_int64(c->db, "SELECT next_offset FROM "
                                          "exactly.reprocess_runs WHERE parent"
                                          " = %" PRId64 " AND partition = 0",
                                   run),
                      N0, "next_offset of partition 0's row");
    TK_CHECK_EQ_INT64(rows_done(c, run), 2, "rows of the run, done");
    TK_CHECK_EQ_INT64(run_applied(c, run), N0 + N1,
                      "applied of the run, counted per row");
    free(out);
}

static void scenario_times(cli_kit *c)
{
    char *out;
    int st;

    st = reprocess(c, &out, "--topic", TOPIC, "--to-time", "2999-01-01",
                   "--dry-run", NULL);
    tk_note("--to-time 2999-01-01 --dry-run:\n%s", out);
    TK_CHECK(st == 0 && strstr(out, "partition 0: offsets 0..29 (30 offsets)") &&
                 strstr(out, "partition 1: offsets 0..49 (50 offsets)") &&
                 strstr(out, "partition 2:") == NULL &&
                 strstr(out, "to 80 offsets of 2 partitions"),
             "--to-time in the future exited %d:\n%s", st, out);
    free(out);
    st = reprocess(c, &out, "--topic", TOPIC, "--from-time", "2999-01-01",
                   NULL);
    TK_CHECK(st == 2 && strstr(out, "no offset of the topic is in it"),
             "--from-time in the future exited %d:\n%s", st, out);
    free(out);
    st = reprocess(c, &out, "--topic", TOPIC, "--partition", "1",
                   "--from-time", "the day before", NULL);
    TK_CHECK(st == 2 && strstr(out, "cannot read 'the day before' as a time"),
             "an unreadable time exited %d:\n%s", st, out);
    free(out);
    st = reprocess(c, &out, "--topic", TOPIC, "--from", "1", "--to-time",
                   "2999-01-01", NULL);
    TK_CHECK(st == 2 && strstr(out, "not both"),
             "offsets and times at once exited %d:\n%s", st, out);
    free(out);
    st = reprocess(c, &out, "--topic", TOPIC, "--from-time", "2999-01-01",
                   "--to-time", "2000-01-01", NULL);
    TK_CHECK(st == 2 && strstr(out, "--to-time is not after --from-time"),
             "an inverted time range exited %d:\n%s", st, out);
    free(out);
    st = reprocess(c, &out, "--topic", TOPIC, NULL);
    TK_CHECK(st == 2 && strstr(out, "needs --topic and a range"),
             "no range exited %d:\n%s", st, out);
    free(out);
}

/* Runs the topic from 0 with ID 7 failing: exit 3, 5 dead letters under
 * the run's number. Returns the run's number. */
static int64_t run_failing(cli_kit *c)
{
    char *out;
    int64_t run;
    int st;

    write_config(c, 1);
    st = reprocess(c, &out, "--topic", TOPIC, "--from", "0", NULL);
    tk_note("reprocess with ID 7 failing:\n%s", out);
    TK_CHECK(st == 3, "a run with dead letters exited %d:\n%s", st, out);
    run = printed_run(out);
    free(out);
    TK_CHECK_EQ_INT64(tk_sql_int64(c->db, "SELECT count(*) FROM "
                                          "exactly.dead_letters WHERE pipeline"
                                          " = '" LEDGER_PIPELINE ":reprocess:%"
                                          PRId64 "'", run),
                      5, "dead letters of the run");
    return run;
}

static void scenario_child(cli_kit *c)
{
    char child_s[24], run_s[24], want[256], *out;
    int64_t run = run_failing(c), child;
    int st;

    child = tk_sql_int64(c->db, "SELECT id FROM exactly.reprocess_runs WHERE"
                                " parent = %" PRId64 " AND partition = 1", run);
    TK_CHECK(child > 0 && child != run, "partition 1's row %" PRId64
             " of run %" PRId64 " is not a child row", child, run);
    /* Partition 1 as an interrupted first session leaves it. */
    tk_sql(c->db, "UPDATE exactly.reprocess_runs SET status = 'interrupted',"
                  " next_offset = 0, applied = 0, ended_at = NULL WHERE id = %"
                  PRId64, child);
    tk_sql(c->db, "DELETE FROM ledger_reprocess WHERE run = %" PRId64
                  " AND partition = 1", run);
    tk_sql(c->db, "DELETE FROM exactly.dead_letters WHERE pipeline = '"
                  LEDGER_PIPELINE ":reprocess:%" PRId64 "' AND partition = 1",
           run);
    snprintf(child_s, sizeof child_s, "%" PRId64, child);
    st = reprocess(c, &out, "--resume", child_s, NULL);
    tk_note("--resume %s (partition 1's row of run %" PRId64 "):\n%s",
            child_s, run, out);
    TK_CHECK(st == 3, "--resume of the child row exited %d:\n%s", st, out);
    free(out);
    TK_CHECK_EQ_INT64(tk_sql_int64(c->db, "SELECT count(*) FROM "
                                          "exactly.dead_letters WHERE pipeline"
                                          " = '" LEDGER_PIPELINE ":reprocess:%"
                                          PRId64 "'", run),
                      5, "dead letters under the run's number after resuming "
                         "its partition 1 row");
    TK_CHECK_EQ_INT64(tk_sql_int64(c->db, "SELECT count(*) FROM "
                                          "exactly.dead_letters WHERE pipeline"
                                          " = '" LEDGER_PIPELINE ":reprocess:%"
                                          PRId64 "'", child),
                      0, "dead letters under the row's own id");
    TK_CHECK_EQ_INT64(applied_rows(c, run, 1, 0, N1 - 1), N1 - 3,
                      "partition 1 ledger rows under the run");
    TK_CHECK_EQ_INT64(rows_done(c, run), 2, "rows of the run, done");
    snprintf(run_s, sizeof run_s, "%" PRId64, run);
    snprintf(want, sizeof want, "5 dead letter(s) of reprocess run %" PRId64,
             run);
    st = cli_exactly(c, &out, "dlq", "list", "--pipeline", LEDGER_PIPELINE,
                     "--run", run_s, NULL);
    TK_CHECK(st == 0 && strstr(out, want),
             "dlq list --run %s exited %d, without \"%s\":\n%s", run_s, st,
             want, out);
    free(out);
    write_config(c, 0);
}

static void scenario_replay(cli_kit *c)
{
    char run_s[24], *out;
    int64_t run = run_failing(c);
    int st;

    write_config(c, 0);
    snprintf(run_s, sizeof run_s, "%" PRId64, run);
    st = cli_exactly(c, &out, "dlq", "replay", "--pipeline", LEDGER_PIPELINE,
                     "--run", run_s, "--all", NULL);
    tk_note("dlq replay --run %s --all:\n%s", run_s, out);
    TK_CHECK(st == 0 && strstr(out, "replayed 5 dead letter(s)"),
             "dlq replay --run %s exited %d:\n%s", run_s, st, out);
    free(out);
    TK_CHECK_EQ_INT64(applied_rows(c, run, 0, 0, N0 - 1), N0, "partition 0");
    TK_CHECK_EQ_INT64(applied_rows(c, run, 1, 0, N1 - 1), N1, "partition 1");
    TK_CHECK_EQ_INT64(tk_sql_int64(c->db, "SELECT applied FROM "
                                          "exactly.reprocess_runs WHERE parent"
                                          " = %" PRId64 " AND partition = 0",
                                   run),
                      N0, "applied of partition 0's row after the replay");
    TK_CHECK_EQ_INT64(tk_sql_int64(c->db, "SELECT applied FROM "
                                          "exactly.reprocess_runs WHERE parent"
                                          " = %" PRId64 " AND partition = 1",
                                   run),
                      N1, "applied of partition 1's row after the replay");
}

int main(void)
{
    cli_kit c;
    tk_msg msgs[N0 + N1];
    char keys[N0 + N1][8];
    int i;

    cli_kit_start(&c, "reprocess_topic", TOPIC, 3, "ledger.yaml", 1);
    memset(msgs, 0, sizeof msgs);
    for (i = 0; i < N0 + N1; i++) {
        snprintf(keys[i], sizeof keys[i], "%d", i % 17 + 1);
        msgs[i].partition = i < N0 ? 0 : 1;
        msgs[i].key = keys[i];
        msgs[i].key_len = strlen(keys[i]);
    }
    tk_produce(c.bootstraps, TOPIC, msgs, N0 + N1);
    /* DDL of plugins/README.md, section "ledger". */
    ledger_create_reprocess_table(c.db);
    write_config(&c, 0);
    cli_kit_migrate(&c);

    if (tk_wanted("offsets"))
        scenario_offsets(&c);
    if (tk_wanted("resume"))
        scenario_resume(&c);
    if (tk_wanted("failover"))
        scenario_failover(&c);
    if (tk_wanted("times"))
        scenario_times(&c);
    if (tk_wanted("child"))
        scenario_child(&c);
    if (tk_wanted("replay"))
        scenario_replay(&c);

    cli_kit_stop(&c);
    return 0;
}
