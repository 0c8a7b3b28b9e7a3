/*
 * A reprocess run whose position left the log before it was resumed:
 * `--resume` cannot apply those offsets, so it must not end advising a
 * resume, which could never succeed. It says that the offsets from the
 * run's position left the log (retention), gives the low watermark, and
 * what is left to do: a new run from the low watermark to the range's
 * end.
 *
 * The partition holds SMALL tiny messages and BIG_FIRST messages of
 * BIG_BYTES. A run over offsets 0..LAST (every small one and the big
 * ones) is interrupted (SIGINT; --rate keeps it slow) a few offsets in.
 * Then BIG_MORE big messages take the partition over the mock broker's
 * log size (5 MB in librdkafka 2.0.2's mock, which deletes its oldest
 * message sets past it): the low watermark moves past the run's
 * position, yet stays at or below LAST. `--resume` then exits 1 with the
 * line of the offsets that left the log and the command of a new run
 * from the low watermark, and without "resume with".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "cli_kit.h"
#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "reprocess-gone"
#define SMALL 100
#define BIG_FIRST 3
#define BIG_MORE 4
#define BIG_BYTES (900 * 1000)
#define LAST (SMALL + BIG_FIRST - 1)
#define CMD_TIMEOUT_MS 60000

/* Produces n messages of BIG_BYTES to partition 0, keys "1". */
static void produce_big(cli_kit *c, int n)
{
    static const char key[] = "1";
    tk_msg m[BIG_FIRST + BIG_MORE];
    char *value = calloc(1, BIG_BYTES);
    int i;

    TK_CHECK(value != NULL, "out of memory");
    memset(m, 0, sizeof m);
    for (i = 0; i < n; i++) {
        m[i].partition = 0;
        m[i].key = key;
        m[i].key_len = 1;
        m[i].value = value;
        m[i].value_len = BIG_BYTES;
    }
    tk_produce(c->bootstraps, TOPIC, m, (size_t)n);
    free(value);
}

/* The partition's low watermark, as a consumer sees it. */
static int64_t low_watermark(cli_kit *c)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    int64_t lo = -1, hi = -1;
    rd_kafka_resp_err_t e;

    TK_CHECK(rd_kafka_conf_set(conf, "bootstrap.servers", c->bootstraps, err,
                               sizeof err) == RD_KAFKA_CONF_OK,
             "bootstrap.servers: %s", err);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    TK_CHECK(rk != NULL, "rd_kafka_new: %s", err);
    e = rd_kafka_query_watermark_offsets(rk, TOPIC, 0, &lo, &hi, 10000);
    TK_CHECK(e == RD_KAFKA_RESP_ERR_NO_ERROR, "watermarks: %s",
             rd_kafka_err2str(e));
    rd_kafka_destroy(rk);
    return lo;
}

int main(void)
{
    const char *args[] = {"reprocess", NULL, NULL, "--pipeline",
                          LEDGER_PIPELINE, "--topic", TOPIC, "--partition",
                          "0", "--from", "0", "--to", NULL, "--batch", "5",
                          "--rate", "20", NULL};
    char log[600], want[1024], run_s[24], last_s[24], *out;
    int64_t run, next, low, deadline;
    ledger_config lc;
    cli_kit c;
    pid_t pid;
    int st;

    cli_kit_start(&c, "reprocess_gone", TOPIC, 1, "worker.yaml", 1);
    /* DDL of plugins/README.md, section "ledger". */
    ledger_create_reprocess_table(c.db);
    cli_kit_produce_ids(&c, TOPIC, SMALL, 10, 1, NULL);
    produce_big(&c, BIG_FIRST);
    memset(&lc, 0, sizeof lc);
    lc.bootstraps = c.bootstraps;
    lc.conninfo = c.conninfo;
    lc.topic = TOPIC;
    lc.max_messages = 10;
    lc.max_wait_ms = 50;
    ledger_write_config(c.cfg, &lc);
    cli_kit_migrate(&c);

    /* A run over the whole partition, interrupted a few offsets in. */
    args[1] = "-c";
    args[2] = c.cfg;
    snprintf(last_s, sizeof last_s, "%d", LAST);
    args[12] = last_s;
    snprintf(log, sizeof log, "%s/reprocess-first.log", c.dir);
    pid = tk_exactly_startv(log, args);
    deadline = tk_now_ms() + 30000;
    for (;; tk_sleep_ms(20)) {
        TK_CHECK(tk_wait(pid, 0) == -1 && tk_now_ms() < deadline,
                 "the run did not reach offset 10 in 30 s (or exited)");
        if (tk_sql_int64(c.db, "SELECT coalesce(max(next_offset), 0) FROM "
                               "exactly.reprocess_runs") >= 10)
            break;
    }
    TK_CHECK_EQ_INT64(tk_kill(pid, SIGINT), 0, "SIGINT of the run");
    st = tk_exactly_wait(pid, CMD_TIMEOUT_MS, log, "exactly reprocess");
    TK_CHECK(st == 1, "the interrupted run exited %d, expected 1", st);
    run = tk_sql_int64(c.db, "SELECT max(id) FROM exactly.reprocess_runs");
    next = tk_sql_int64(c.db, "SELECT next_offset FROM exactly.reprocess_runs"
                              " WHERE id = %" PRId64, run);
    TK_CHECK(next < SMALL, "the run was not interrupted among the small "
             "messages: next_offset %" PRId64, next);

    /* Retention: the log loses its oldest messages, the run's position
     * among them. */
    produce_big(&c, BIG_MORE);
    low = low_watermark(&c);
    TK_CHECK(low > next && low <= LAST,
             "the mock's low watermark is %" PRId64 ", expected past the "
             "run's position %" PRId64 " and at most %d",
             low, next, LAST);

    snprintf(run_s, sizeof run_s, "%" PRId64, run);
    c.cmd_timeout_ms = CMD_TIMEOUT_MS;
    st = cli_exactly(&c, &out, "reprocess", "--pipeline", LEDGER_PIPELINE,
                     "--resume", run_s, NULL);
    tk_note("--resume of a run whose position left the log:\n%s", out);
    TK_CHECK(st == 1, "the resume exited %d, expected 1:\n%s", st, out);
    TK_CHECK(strstr(out, "resume with") == NULL,
             "a run whose position left the log advises a resume, which "
             "cannot succeed:\n%s", out);
    snprintf(want, sizeof want, "offsets %" PRId64 "..%" PRId64 " of "
             TOPIC " [0] are no longer in the log", next, low - 1);
    TK_CHECK(strstr(out, want) != NULL,
             "the output does not say \"%s\":\n%s", want, out);
    snprintf(want, sizeof want, "exactly reprocess -c %s --pipeline "
             LEDGER_PIPELINE " --topic " TOPIC " --partition 0 --from %"
             PRId64 " --to %d", c.cfg, low, LAST);
    TK_CHECK(strstr(out, want) != NULL,
             "the output does not say \"%s\":\n%s", want, out);
    free(out);

    cli_kit_stop(&c);
    return 0;
}
