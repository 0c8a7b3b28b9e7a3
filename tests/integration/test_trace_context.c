/*
 * W3C trace context: a message's `traceparent` header names its trace in
 * the log lines about its batch and in its dead letter.
 *
 * One partition, one batch of four messages: ID 1 and ID 2 carry valid
 * traceparents (T1, T2), ID 3 a malformed one, ID 4 none. The ledger
 * handler fails the batch holding ID 2 (a query error it swallows), so
 * the batch is bisected and ID 2 alone is dead-lettered. Then:
 *   - the "record dead-lettered" line names T2 and not T1 (the lines
 *     about one record carry its own trace), the "handler failed,
 *     isolating" line names both (the batch's traces);
 *   - the malformed header is ignored: ID 3 is applied, and no line
 *     carries its text;
 *   - the dead letter holds T2 and `exactly dlq show` prints it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define T1 "0af7651916cd43dd8448eb211c80319c"
#define T2 "4bf92f3577b34da6a3ce929d0e0e4736"
#define BAD "00-" "ABCDEF0123456789ABCDEF0123456789" "-00f067aa0ba902b7-01"

/* The first line of the file holding all of the needles, or NULL; a
 * malloc'd copy. */
static char *line_with(const char *path, const char *a, const char *b)
{
    char *text = tk_read_file(path), *line, *save = NULL, *found = NULL;

    for (line = text ? strtok_r(text, "\n", &save) : NULL; line && !found;
         line = strtok_r(NULL, "\n", &save))
        if (strstr(line, a) && (!b || strstr(line, b)))
            found = strdup(line);
    free(text);
    return found;
}

int main(void)
{
    static const char tp1[] = "00-" T1 "-b7ad6b7169203331-01";
    static const char tp2[] = "00-" T2 "-00f067aa0ba902b7-01";
    tk_msg m[4];
    ledger_fixture f;
    ledger_config c;
    PGconn *db;
    char *line, *out, log2[600];
    char *argv[12];
    int i, status;
    pid_t pid;

    ledger_fixture_start(&f, "trace_ctx", "trace-ctx", 1);
    memset(m, 0, sizeof m);
    for (i = 0; i < 4; i++) {
        static const char *const keys[] = {"1", "2", "3", "4"};
        m[i].partition = 0;
        m[i].key = keys[i];
        m[i].key_len = 1;
    }
    m[0].n_headers = 1;
    m[0].headers[0] = (tk_header){"traceparent", tp1, sizeof(tp1) - 1};
    m[1].n_headers = 1;
    m[1].headers[0] = (tk_header){"traceparent", tp2, sizeof(tp2) - 1};
    m[2].n_headers = 1;
    m[2].headers[0] = (tk_header){"traceparent", BAD, sizeof(BAD) - 1};
    tk_produce(f.mock->bootstraps, f.topic, m, 4);

    memset(&c, 0, sizeof c);
    c.max_messages = 100;
    c.max_wait_ms = 500;
    c.handler_options_yaml = "        swallow_on_id: \"2\"\n";
    ledger_fixture_config(&f, &c);
    status = ledger_run_to_idle(f.config, 3000, 60000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "worker exited with %d", status);

    line = line_with(f.log, "msg=\"record dead-lettered\"", NULL);
    LEDGER_CHECK_LOG(line != NULL, f.log, "no 'record dead-lettered' line");
    tk_note("%s", line);
    TK_CHECK(strstr(line, "trace_id=" T2 " ") != NULL,
             "the dead-lettered record's line lacks trace_id=" T2 ": %s", line);
    TK_CHECK(strstr(line, "id=2") != NULL && strstr(line, T1) == NULL,
             "the record's line names another message's trace: %s", line);
    free(line);
    line = line_with(f.log, "msg=\"handler failed, isolating", NULL);
    LEDGER_CHECK_LOG(line != NULL, f.log, "no 'handler failed' line");
    tk_note("%s", line);
    TK_CHECK(strstr(line, "trace_id=") && strstr(line, T1) && strstr(line, T2),
             "the batch's line does not name both traces: %s", line);
    free(line);
    TK_CHECK(!tk_file_contains(f.log, "ABCDEF0123456789"),
             "the malformed traceparent reached the log");

    db = tk_pg_connect(f.conninfo);
    TK_CHECK_EQ_INT64(ledger_rows(db), 3, "ledger rows (IDs 1, 3, 4)");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.dead_letters WHERE "
                                       "entity_id = '2' AND trace_id = '" T2 "'"),
                      1, "dead letter of ID 2 with its trace_id");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.dead_letters"),
                      1, "dead letters");
    PQfinish(db);

    snprintf(log2, sizeof log2, "%s/dlq-show.log", f.dir);
    argv[0] = (char *)ledger_exactly_bin();
    argv[1] = "dlq";
    argv[2] = "show";
    argv[3] = "-c";
    argv[4] = f.config;
    argv[5] = NULL;
    pid = tk_spawn(argv, log2);
    status = tk_wait(pid, 30000);
    out = tk_read_file(log2);
    TK_CHECK(status == 0, "dlq show exited %d:\n%s", status, out ? out : "");
    TK_CHECK(out && strstr(out, "trace_id:        " T2 "\n"),
             "dlq show does not print the trace_id:\n%s", out ? out : "");
    tk_note("dlq show:\n%s", out);
    free(out);
    ledger_fixture_stop(&f);
    return 0;
}
