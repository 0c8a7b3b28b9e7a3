/*
 * `exactly reprocess` as an operator sees it: its exit code, where its
 * dead letters are, its progress line and -q.
 *
 *   deadletters  a run over a range in which the ledger's fail_on_ids
 *                fails one ID finishes (status done) with those messages
 *                dead-lettered: it exits 3 ("finished, some records
 *                dead-lettered", documented in --help), not 1 ("failed,
 *                resume it"), does not offer a resume (which would do
 *                nothing), and says how to see them; `exactly dlq list
 *                --run N` lists them, and once the cause is gone `dlq
 *                replay --run N --all` applies them as part of the run
 *                (ledger_reprocess rows of run N, the run's applied count
 *                completed) and deletes them.
 *   resumed      a run that dead-letters in its first session, is
 *                interrupted (SIGINT) and finished by --resume with no
 *                new failure is a run with dead letters all the same: the
 *                resume exits 3, counts the run's dead letters (not the
 *                session's none) and says how to list them; resuming the
 *                done run again is refused with the same pointer.
 *   quiet        -q prints no progress line (nor any ETA), only the result.
 *   eta          --batch 300 --rate 100 over 600 offsets: the first progress
 *                line comes at 50 %; its ETA is the remaining messages over
 *                the rate that will apply (the measured rate, at most
 *                --rate): at least 3 s, and consistent with the printed
 *                msg/s.
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

#define TOPIC "rp-ops"
#define N_MSGS 600
#define N_IDS 20          /* message i names (i % N_IDS) + 1 */
#define FAIL_ID 7
#define CMD_TIMEOUT_MS 120000

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

static int64_t last_run(cli_kit *c)
{
    return tk_sql_int64(c->db, "SELECT max(id) FROM exactly.reprocess_runs");
}

static void scenario_deadletters(cli_kit *c)
{
    char want[1024], run_s[24], *out, *status_text;
    int64_t run, n_fail = 0, i;
    int st;

    for (i = 0; i < 100; i++)
        n_fail += (i % N_IDS) + 1 == FAIL_ID;
    write_config(c, 1);
    st = cli_exactly(c, &out, "reprocess", "--pipeline", LEDGER_PIPELINE,
                     "--topic", TOPIC, "--partition", "0", "--from", "0",
                     "--to", "99", NULL);
    tk_note("reprocess with dead letters:\n%s", out);
    run = last_run(c);
    snprintf(run_s, sizeof run_s, "%" PRId64, run);
    status_text = tk_sql_text(c->db, "SELECT status FROM exactly.reprocess_runs"
                                     " WHERE id = %" PRId64, run);
    TK_CHECK_EQ_STR(status_text, "done", "status of the run");
    free(status_text);
    TK_CHECK(st == 3, "a run that finished with dead letters exited %d, "
             "expected 3 (1 means failed: resume it):\n%s", st, out);
    TK_CHECK(strstr(out, "resume") == NULL,
             "a finished run offers a resume (which does nothing):\n%s", out);
    snprintf(want, sizeof want, "exactly dlq list -c %s --pipeline "
             LEDGER_PIPELINE " --run %" PRId64, c->cfg, run);
    TK_CHECK(strstr(out, want) != NULL, "the output does not say \"%s\":\n%s",
             want, out);
    free(out);
    TK_CHECK_EQ_INT64(tk_sql_int64(c->db, "SELECT count(*) FROM"
                                          " exactly.dead_letters"),
                      n_fail, "dead letters of the run");

    /* --help says what 3 means. */
    st = cli_exactly(c, &out, "reprocess", "--help", NULL);
    TK_CHECK(st == 0 && strstr(out, "3 finished, but some messages were "
                                    "dead-lettered"),
             "reprocess --help does not document exit code 3:\n%s", out);
    free(out);

    /* dlq reaches them. */
    st = cli_exactly(c, &out, "dlq", "list", "--pipeline", LEDGER_PIPELINE,
                     "--run", run_s, NULL);
    tk_note("dlq list --run %s:\n%s", run_s, out);
    snprintf(want, sizeof want, "%" PRId64 " dead letter(s) of reprocess run "
             "%" PRId64 " of pipeline " LEDGER_PIPELINE, n_fail, run);
    TK_CHECK(st == 0 && strstr(out, want),
             "dlq list --run %s exited %d, without \"%s\":\n%s", run_s, st,
             want, out);
    free(out);
    /* ... and the live pipeline's list points at them. */
    st = cli_exactly(c, &out, "dlq", "list", "--pipeline", LEDGER_PIPELINE,
                     NULL);
    snprintf(want, sizeof want, "--run %" PRId64, run);
    TK_CHECK(st == 0 && strstr(out, "0 dead letter(s) of pipeline ledger") &&
                 strstr(out, want),
             "dlq list of the live pipeline does not point at run %s:\n%s",
             run_s, out);
    free(out);
    /* An unknown run is a usage error. */
    st = cli_exactly(c, &out, "dlq", "list", "--pipeline", LEDGER_PIPELINE,
                     "--run", "999999", NULL);
    TK_CHECK(st == 2 && strstr(out, "no reprocess run 999999"),
             "dlq list --run 999999 exited %d:\n%s", st, out);
    free(out);

    /* The cause gone, replay applies them as part of the run. */
    write_config(c, 0);
    st = cli_exactly(c, &out, "dlq", "replay", "--pipeline", LEDGER_PIPELINE,
                     "--run", run_s, "--all", NULL);
    tk_note("dlq replay --run %s --all:\n%s", run_s, out);
    snprintf(want, sizeof want, "replayed %" PRId64 " dead letter(s)", n_fail);
    TK_CHECK(st == 0 && strstr(out, want),
             "dlq replay --run %s exited %d, without \"%s\":\n%s", run_s, st,
             want, out);
    free(out);
    TK_CHECK_EQ_INT64(tk_sql_int64(c->db, "SELECT count(*) FROM"
                                          " exactly.dead_letters"),
                      0, "dead letters after the replay");
    TK_CHECK_EQ_INT64(tk_sql_int64(c->db, "SELECT count(DISTINCT \"offset\")"
                                          " FROM ledger_reprocess WHERE run ="
                                          " %" PRId64 " AND \"offset\" BETWEEN"
                                          " 0 AND 99", run),
                      100, "offsets 0..99 in ledger_reprocess of the run");
    TK_CHECK_EQ_INT64(tk_sql_int64(c->db, "SELECT applied FROM"
                                          " exactly.reprocess_runs WHERE id ="
                                          " %" PRId64, run),
                      100, "applied of the run after the replay");
    TK_CHECK_EQ_INT64(ledger_rows(c->db), 0,
                      "live ledger rows (a run's replay is the run's)");
}

/* Dead letters kept under run's name. */
static int64_t run_dead_letters(cli_kit *c, int64_t run)
{
    char where[128];

    snprintf(where, sizeof where, "pipeline = '" LEDGER_PIPELINE
             ":reprocess:%" PRId64 "'", run);
    return cli_dead_letters(c, where);
}

static void scenario_resumed(cli_kit *c)
{
    const char *args[] = {"reprocess", "-c", c->cfg, "--pipeline",
                          LEDGER_PIPELINE, "--topic", TOPIC, "--partition",
                          "0", "--from", "200", "--to", "299", "--batch",
                          "10", "--rate", "20", NULL};
    char log[600], want[1024], run_s[24], *out;
    int64_t runs0 = tk_sql_int64(c->db, "SELECT count(*) FROM"
                                        " exactly.reprocess_runs");
    int64_t run = 0, deadline = tk_now_ms() + 30000, n_dead;
    pid_t pid;
    int st;

    write_config(c, 1);
    snprintf(log, sizeof log, "%s/reprocess-resumed.log", c->dir);
    pid = tk_exactly_startv(log, args);
    /* Interrupted once a dead letter of the run has committed. */
    for (;; tk_sleep_ms(20)) {
        TK_CHECK(tk_wait(pid, 0) == -1 && tk_now_ms() < deadline,
                 "the run wrote no dead letter in 30 s (or exited)");
        if (tk_sql_int64(c->db, "SELECT count(*) FROM exactly.reprocess_runs")
            == runs0)
            continue;
        run = last_run(c);
        if (run_dead_letters(c, run) > 0)
            break;
    }
    TK_CHECK_EQ_INT64(tk_kill(pid, SIGINT), 0, "SIGINT of the run");
    st = tk_exactly_wait(pid, CMD_TIMEOUT_MS, log, "exactly reprocess");
    TK_CHECK(st == 1, "the interrupted run exited %d, expected 1", st);
    n_dead = run_dead_letters(c, run);
    TK_CHECK(tk_sql_int64(c->db, "SELECT next_offset FROM"
                                 " exactly.reprocess_runs WHERE id = %" PRId64,
                          run) <= 299,
             "the run was not interrupted before its end");

    /* The cause gone, the resume fails nothing more. */
    write_config(c, 0);
    snprintf(run_s, sizeof run_s, "%" PRId64, run);
    st = cli_exactly(c, &out, "reprocess", "--pipeline", LEDGER_PIPELINE,
                     "--resume", run_s, NULL);
    tk_note("--resume of a run with %" PRId64 " dead letter(s):\n%s", n_dead,
            out);
    TK_CHECK_EQ_INT64(run_dead_letters(c, run), n_dead,
                      "dead letters of the run after the resume");
    TK_CHECK(st == 3, "the resumed run finished with %" PRId64 " dead "
             "letter(s) but exited %d, expected 3:\n%s", n_dead, st, out);
    snprintf(want, sizeof want, "dead-lettered %" PRId64 ",", n_dead);
    TK_CHECK(strstr(out, want) != NULL, "the output does not say \"%s\":\n%s",
             want, out);
    snprintf(want, sizeof want, "exactly dlq list -c %s --pipeline "
             LEDGER_PIPELINE " --run %" PRId64, c->cfg, run);
    TK_CHECK(strstr(out, want) != NULL, "the output does not say \"%s\":\n%s",
             want, out);
    free(out);

    /* Done: a second resume is refused, and still points at them. */
    st = cli_exactly(c, &out, "reprocess", "--pipeline", LEDGER_PIPELINE,
                     "--resume", run_s, NULL);
    tk_note("--resume of the done run:\n%s", out);
    TK_CHECK(st == 2 && strstr(out, want) != NULL,
             "resuming the done run exited %d, without \"%s\":\n%s", st,
             want, out);
    free(out);
}

static void scenario_quiet(cli_kit *c)
{
    char *out;
    int st;

    write_config(c, 0);
    st = cli_exactly(c, &out, "reprocess", "--pipeline", LEDGER_PIPELINE,
                     "--topic", TOPIC, "--partition", "0", "--from", "100",
                     "--to", "199", "-q", NULL);
    tk_note("reprocess -q:\n%s", out);
    TK_CHECK(st == 0, "reprocess -q exited %d:\n%s", st, out);
    TK_CHECK(strstr(out, "msg/s") == NULL && strstr(out, "ETA") == NULL,
             "reprocess -q printed progress:\n%s", out);
    TK_CHECK(strstr(out, ": done; applied 100 messages"),
             "reprocess -q did not print its result:\n%s", out);
    free(out);
}

static void scenario_eta(cli_kit *c)
{
    char *out;
    const char *line;
    long long off, from, to, rate;
    int pct, min, sec, st;
    double remaining, expect, eta;

    write_config(c, 0);
    st = cli_exactly(c, &out, "reprocess", "--pipeline", LEDGER_PIPELINE,
                     "--topic", TOPIC, "--partition", "0", "--from", "0",
                     "--to", "599", "--batch", "300", "--rate", "100", NULL);
    tk_note("reprocess --batch 300 --rate 100:\n%s", out);
    TK_CHECK(st == 0, "reprocess exited %d:\n%s", st, out);
    line = strstr(out, "offset ");
    TK_CHECK(line && sscanf(line, "offset %lld of %lld..%lld %d%% %lld msg/s"
                                  " ETA %d:%d",
                            &off, &from, &to, &pct, &rate, &min, &sec) == 7,
             "no progress line:\n%s", out);
    TK_CHECK(off == 300 && pct == 50,
             "the first progress line is not at offset 300 (50 %%):\n%s", out);
    remaining = (double)(to + 1 - off);
    eta = min * 60.0 + sec;
    /* The rate that applies from here: the measured one, at most --rate. */
    expect = remaining / (double)(rate < 100 ? rate : 100);
    TK_CHECK(eta >= 3.0,
             "ETA %d:%02d for %.0f messages at --rate 100 (at least 0:03):\n%s",
             min, sec, remaining, out);
    TK_CHECK(rate > 0 && eta >= expect - 1.0 && eta <= expect * 1.01 + 1.0,
             "ETA %d:%02d is not the %.0f remaining messages over %lld msg/s "
             "(at most 100): %.1f s:\n%s",
             min, sec, remaining, rate, expect, out);
    free(out);
}

int main(void)
{
    cli_kit c;

    cli_kit_start(&c, "reprocess_ops", TOPIC, 1, "ledger.yaml", 1);
    c.cmd_timeout_ms = CMD_TIMEOUT_MS;
    cli_kit_produce_ids(&c, TOPIC, N_MSGS, N_IDS, 1, NULL);
    /* DDL of plugins/README.md, section "ledger". */
    ledger_create_reprocess_table(c.db);
    write_config(&c, 0);
    cli_kit_migrate(&c);

    if (tk_wanted("deadletters"))
        scenario_deadletters(&c);
    if (tk_wanted("resumed"))
        scenario_resumed(&c);
    if (tk_wanted("quiet"))
        scenario_quiet(&c);
    if (tk_wanted("eta"))
        scenario_eta(&c);

    cli_kit_stop(&c);
    return 0;
}
