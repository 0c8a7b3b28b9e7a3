/*
 * `exactly run` leaves a poison record to the crash guard: the supervisor
 * must not give up (crash loop) before the guard dead-letters it.
 *
 * A ledger pipeline with `workers: 1` and the default max_crashes (3) on
 * a 1-partition topic whose first record's ID makes the handler abort()
 * (crash_on_id), then 20 good records. The guard needs max_crashes
 * deaths at the batch's start to isolate it and max_crashes more with the
 * record's own mark set to dead-letter it: 6 deaths, none of them after
 * any commit (the poison comes first), so each is a fast failure to the
 * supervisor. Expected: the record in dead_letters with the 6 deaths
 * logged before it, the 20 good records applied exactly once, no "crash
 * loop" line, and a SIGTERM then ends the run with exit 0.
 *
 * Each life lasts as long as the group join, which waits for the dead
 * member's session (6 s here) on the mock cluster; with the restart
 * delays (0.5 s doubling) the 6 deaths take about 100 s.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "poison_run"
#define POISON_ID 499
#define GOOD 20
/* The default max_crashes; the guard dead-letters after twice that many
 * deaths. */
#define MAX_CRASHES 3
#define WAIT_MS 400000

int main(void)
{
    char dir[256], lockdir[512], conninfo[1024], config[512], log[512];
    char out[512];
    int ids[GOOD + 1];
    int64_t t0 = tk_now_ms(), dead, rows = 0, deaths;
    ledger_config lc;
    tk_config cfg;
    tk_pipeline *pl = &cfg.pipelines[0];
    tk_mock *mock;
    char crash[24];
    PGconn *db;
    pid_t sup;
    int i, st;

    mock = tk_mock_start(1);
    tk_tmpdir("exactly-supervisor-poison", dir, sizeof dir);
    snprintf(lockdir, sizeof lockdir, "%s/locks", dir);
    TK_CHECK(mkdir(lockdir, 0755) == 0, "mkdir %s", lockdir);
    tk_note("logs in %s", dir);
    tk_mock_create_topic(mock, TOPIC, 1);
    tk_pg_create_db("poison_run", conninfo, sizeof conninfo);
    ledger_setup_db(conninfo);
    snprintf(config, sizeof config, "%s/poison.yaml", dir);
    memset(&lc, 0, sizeof lc);
    lc.bootstraps = tk_mock_bootstraps(mock);
    lc.conninfo = conninfo;
    lc.topic = TOPIC;
    lc.group = TOPIC;
    lc.max_messages = 50;
    lc.max_wait_ms = 20;
    ledger_config_fill(&cfg, &lc);
    pl->workers = 1;
    snprintf(crash, sizeof crash, "%d", POISON_ID);
    pl->options[0] = (tk_prop){"crash_on_id", crash};
    pl->kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
    pl->kafka[1] = (tk_prop){"heartbeat.interval.ms", "500"};
    tk_config_write(config, &cfg);
    snprintf(log, sizeof log, "%s/migrate.log", dir);
    tk_migrate(config, log);
    db = tk_pg_connect(conninfo);

    /* The poison first: no batch commits before it is dealt with. */
    ids[0] = POISON_ID;
    for (i = 1; i <= GOOD; i++)
        ids[i] = i;
    tk_produce_int_keys(tk_mock_bootstraps(mock), TOPIC, NULL, ids, GOOD + 1);

    snprintf(log, sizeof log, "%s/run.log", dir);
    snprintf(out, sizeof out, "%s/run.out", dir);
    {
        const char *args[] = {"run", "-c", config, "--lock-dir", lockdir,
                              "--log-file", log, "--shutdown-timeout", "20",
                              NULL};
        sup = tk_exactly_startv(out, args);
    }
    /* Until the poison is dead-lettered and the rest applied. */
    for (;;) {
        dead = tk_sql_int64(db, "SELECT count(*) FROM exactly.dead_letters");
        rows = ledger_rows(db);
        if (dead >= 1 && rows >= GOOD)
            break;
        st = tk_wait(sup, 0);
        LEDGER_CHECK_LOG(st == -1, log, "exactly run exited %d after %d "
                         "deaths, before the crash guard dead-lettered the "
                         "poison record (%" PRId64 " dead letters); log: %s",
                         st, tk_log_lines_with(log, "msg=\"worker killed by "
                                               "signal\"", NULL),
                         dead, log);
        LEDGER_CHECK_LOG(tk_now_ms() - t0 < WAIT_MS, log, "the poison was "
                         "not dead-lettered (%" PRId64 ") or the rest not "
                         "applied (%" PRId64 " rows) within %d s; log: %s",
                         dead, rows, WAIT_MS / 1000, log);
        tk_sleep_ms(200);
    }
    deaths = tk_log_lines_with(log, "msg=\"worker killed by signal\"",
                               "signal=6");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                   "exactly.dead_letters WHERE partition = 0"
                                   " AND \"offset\" = 0 AND entity_id = '%d'",
                                   POISON_ID),
                      1, "the poison record (offset 0) dead-lettered");
    LEDGER_CHECK_LOG(deaths == 2 * MAX_CRASHES &&
                         tk_log_lines_with(log, "crash loop", NULL) == 0,
                     log, "expected %d deaths by SIGABRT and no crash loop, "
                     "found %" PRId64 " deaths; log: %s", 2 * MAX_CRASHES,
                     deaths, log);
    TK_CHECK_EQ_INT64(tk_kill(sup, SIGTERM), 0, "SIGTERM of the supervisor");
    st = tk_wait(sup, 40000);
    LEDGER_CHECK_LOG(st == 0, log, "exactly run exited %d after SIGTERM; "
                     "log: %s", st, log);
    /* Each good record applied once, the stored offset past them all. */
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(DISTINCT \"offset\") "
                                   "FROM ledger WHERE \"offset\" BETWEEN 1 "
                                   "AND %d", GOOD),
                      GOOD, "ledger rows of offsets 1..20 (the good records)");
    TK_CHECK_EQ_INT64(ledger_rows(db), GOOD, "ledger rows");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT next_offset FROM "
                                   "exactly.offsets WHERE partition = 0"),
                      GOOD + 1, "stored offset");
    tk_note("poison dead-lettered after %" PRId64 " deaths; the run went on "
            "and stopped with exit 0 after %.1f s", deaths,
            (double)(tk_now_ms() - t0) / 1000.0);
    PQfinish(db);
    tk_mock_stop(mock);
    ledger_cleanup_dir(dir);
    return 0;
}
