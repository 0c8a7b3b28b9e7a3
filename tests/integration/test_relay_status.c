/*
 * What `exactly relay status` says of a relay (README, `exactly relay
 * status`):
 *   - published: null (text "-") for a relay that never ran; 0 once a
 *     relay ran on this outbox and published nothing;
 *   - rate_per_s: the rows published since the relay took the outbox over
 *     the seconds since then, at least one: a batch just published is not
 *     a rate of its rows per millisecond; a relay that takes the outbox
 *     starts a window of its own;
 *   - last_publish_s: the seconds since a row was last published; a cycle
 *     that published nothing (every row of it dead-lettered) does not
 *     make it new;
 *   - running: whether a session holds the relay's outbox lock now (a
 *     relay publishes), with the holder's pid, application_name and
 *     backend start; false, holder null, once none does: rows alone
 *     cannot tell a running relay from one that stopped.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "relay_kit.h"
#include "testkit.h"

#define TOPIC "relay-status"
#define ROWS 20

/* Runs `exactly relay status -c config [--json]`; returns its output
 * (the caller frees), failing the test unless it exits 0. */
static char *run_status(const relay_fixture *f, int json)
{
    char slog[600], *out;
    char *argv[] = {(char *)ledger_exactly_bin(), "relay", "status", "-c",
                    (char *)f->config, json ? "--json" : NULL, NULL};
    int status;

    snprintf(slog, sizeof(slog), "%s/status-%d.out", f->dir, json);
    (void)remove(slog);
    status = tk_wait(tk_spawn(argv, slog), 30000);
    out = tk_read_file(slog);
    TK_CHECK(status == 0 && out, "relay status exit %d: %s", status,
             out ? out : "");
    return out;
}

static json_t *status_json(const relay_fixture *f)
{
    char *out = run_status(f, 1);
    json_error_t jerr;
    json_t *o = json_loads(out, 0, &jerr);

    TK_CHECK(o != NULL, "relay status printed no JSON: %s", out);
    free(out);
    return o;
}

/* The text output's published column (the fifth) of the relay's line. */
static void text_published(const relay_fixture *f, char *col, size_t size)
{
    char *out = run_status(f, 0), *line = strchr(out, '\n');
    char fields[5][64];

    TK_CHECK(line != NULL, "relay status printed one line: %s", out);
    TK_CHECK(sscanf(line + 1, "%63s %63s %63s %63s %63s", fields[0],
                    fields[1], fields[2], fields[3], fields[4]) == 5,
             "relay status line has fewer than 5 columns: %s", out);
    snprintf(col, size, "%s", fields[4]);
    free(out);
}

/* Polls `relay status --json` until its running is want, within
 * timeout_ms; returns that object (the caller decrefs) or fails. */
static json_t *wait_running(const relay_fixture *f, int want, int timeout_ms)
{
    long long deadline = tk_now_ms() + timeout_ms;
    json_t *o;

    for (;;) {
        json_t *v;
        o = status_json(f);
        v = json_object_get(o, "running");
        TK_CHECK(json_is_boolean(v), "relay status --json has no boolean "
                 "running (whether a relay holds the outbox's lock)");
        if (json_is_true(v) == want)
            return o;
        json_decref(o);
        TK_CHECK(tk_now_ms() < deadline, "relay status still says running "
                 "%s after %d ms", want ? "false" : "true", timeout_ms);
        tk_sleep_ms(200);
    }
}

/* A running relay, as status shows it: running, the holder being the
 * relay's own session (application_name exactly-relay), in JSON and in
 * the text's running and holder_pid columns; after its stop, not. */
static void check_running(relay_fixture *f)
{
    const char *const extra[] = {NULL};
    json_t *o, *h;
    char *out, *line;
    char fields[9][64];
    long long pid;
    pid_t relay;

    relay = relay_start(f->config, extra, f->log);
    o = wait_running(f, 1, 30000);
    h = json_object_get(o, "holder");
    TK_CHECK(json_is_object(h), "running relay: holder is not an object");
    pid = tk_sql_int64(f->db, "SELECT pid FROM pg_stat_activity WHERE"
                              " application_name = 'exactly-relay'");
    TK_CHECK_EQ_INT64(json_integer_value(json_object_get(h, "pid")), pid,
                      "holder pid: the relay's session");
    TK_CHECK_EQ_STR(json_string_value(json_object_get(h, "application_name")),
                    "exactly-relay", "holder application_name");
    TK_CHECK(json_is_string(json_object_get(h, "backend_start")),
             "holder backend_start is not a time");
    json_decref(o);
    out = run_status(f, 0);
    line = strchr(out, '\n');
    TK_CHECK(line && sscanf(line + 1, "%63s %63s %63s %63s %63s %63s %63s "
                            "%63s %63s", fields[0], fields[1], fields[2],
                            fields[3], fields[4], fields[5], fields[6],
                            fields[7], fields[8]) == 9,
             "relay status line has fewer than 9 columns: %s", out);
    TK_CHECK_EQ_STR(fields[7], "yes", "text running of a running relay");
    TK_CHECK_EQ_INT64(strtoll(fields[8], NULL, 10), pid,
                      "text holder_pid of a running relay");
    free(out);
    relay_stop(relay, 30000, f->log);
    o = wait_running(f, 0, 10000);
    TK_CHECK(json_is_null(json_object_get(o, "holder")),
             "holder of a stopped relay is not null");
    json_decref(o);
}

int main(void)
{
    relay_fixture f;
    json_t *o, *v;
    char col[64];
    double rate, last;
    int status;

    relay_fixture_start(&f, "relay_status", NULL);
    tk_mock_create_topic(f.mock, TOPIC, 1);
    relay_fixture_config(&f, &(relay_config){.name = "st", .topic = TOPIC,
                                              .batch_size = 50});

    /* Never ran: published unknown, not running. */
    o = status_json(&f);
    TK_CHECK(json_is_false(json_object_get(o, "running")),
             "relay status --json does not say that no relay runs "
             "(running false)");
    TK_CHECK(json_is_null(json_object_get(o, "holder")),
             "holder while no relay runs is not null");
    TK_CHECK(json_is_null(json_object_get(o, "published")),
             "published of a relay that never ran is not null");
    TK_CHECK(json_is_null(json_object_get(o, "last_publish_s")),
             "last_publish_s of a relay that never ran is not null");
    json_decref(o);
    text_published(&f, col, sizeof(col));
    TK_CHECK_EQ_STR(col, "-", "text published of a relay that never ran");

    /* Ran on an empty outbox: published 0, nothing published yet. */
    status = relay_run_to_idle(f.config, 300, 30000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "relay exit status %d", status);
    o = status_json(&f);
    v = json_object_get(o, "published");
    TK_CHECK(json_is_integer(v),
             "published of a relay that ran and published nothing is not a "
             "number (null says it never ran)");
    TK_CHECK_EQ_INT64(json_integer_value(v), 0,
                      "published after a run on an empty outbox");
    TK_CHECK(json_is_null(json_object_get(o, "last_publish_s")),
             "last_publish_s before any row was published is not null");
    json_decref(o);
    text_published(&f, col, sizeof(col));
    TK_CHECK_EQ_STR(col, "0", "text published after a run that published "
                              "nothing");

    /* One batch of ROWS rows: the rate is over at least one second. */
    relay_insert_rows(f.db, ROWS);
    status = relay_run_to_idle(f.config, 300, 30000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "relay exit status %d", status);
    o = status_json(&f);
    TK_CHECK_EQ_INT64(json_integer_value(json_object_get(o, "published")),
                      ROWS, "published after one batch");
    rate = json_number_value(json_object_get(o, "rate_per_s"));
    TK_CHECK(rate > 0 && rate <= ROWS,
             "rate_per_s %.1f after %d rows published in one batch: not in "
             "(0, %d]", rate, ROWS, ROWS);
    last = json_number_value(json_object_get(o, "last_publish_s"));
    TK_CHECK(json_is_number(json_object_get(o, "last_publish_s")) &&
                 last >= 0 && last < 60,
             "last_publish_s %.1f just after a publish", last);
    json_decref(o);
    text_published(&f, col, sizeof(col));
    TK_CHECK_EQ_STR(col, "20", "text published after one batch");

    /* The publish an hour back (every timestamp of relay_state moved), then
     * a cycle whose only row is dead-lettered: still an hour. */
    tk_sql(f.db,
           "DO $$ DECLARE c text; BEGIN"
           " FOR c IN SELECT column_name FROM information_schema.columns"
           "  WHERE table_schema = 'exactly' AND table_name = 'relay_state'"
           "  AND data_type LIKE 'timestamp%%' LOOP"
           "  EXECUTE format('UPDATE exactly.relay_state"
           "   SET %%I = %%I - interval ''1 hour''', c, c);"
           " END LOOP; END $$");
    tk_sql(f.db, "INSERT INTO exactly.outbox (key, value, headers) VALUES "
                 "('k', 'bad headers', '[1, 2]')");
    status = relay_run_to_idle(f.config, 300, 30000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "relay exit status %d", status);
    TK_CHECK_EQ_INT64(tk_sql_int64(f.db, "SELECT count(*) FROM exactly.outbox"
                                         " WHERE dead_reason IS NOT NULL"),
                      1, "the row with bad headers, dead-lettered");
    o = status_json(&f);
    last = json_number_value(json_object_get(o, "last_publish_s"));
    TK_CHECK(last >= 3600,
             "last_publish_s %.1f after a cycle that only dead-lettered; the "
             "last row was published an hour ago", last);
    TK_CHECK_EQ_INT64(json_integer_value(json_object_get(o, "published")),
                      ROWS, "published after the dead-lettered row");
    /* That relay took the outbox anew: a window of its own, in which it
     * published nothing. */
    rate = json_number_value(json_object_get(o, "rate_per_s"));
    TK_CHECK(rate == 0, "rate_per_s %.3f of a relay that took the outbox "
                        "and published nothing", rate);
    TK_CHECK_EQ_INT64(tk_sql_int64(f.db, "SELECT count(*) FROM"
                                         " exactly.relay_state WHERE"
                                         " started_at > now() - interval"
                                         " '10 minutes'"),
                      1, "relay_state windows started by the last run");
    json_decref(o);
    check_running(&f);
    relay_fixture_stop(&f);
    return 0;
}
