/*
 * test_status_page.c - the supervisor's status page, as a browser shows it.
 *
 * `exactly run --metrics 127.0.0.1:0` runs a ledger pipeline (2 workers,
 * 4 partitions) whose handler dead-letters the records of a few entity
 * IDs. Once every message is consumed and /status.json agrees (lag 0, the
 * dead letters counted), headless Chromium loads / (no network but the
 * loopback server; the page has no external assets) and its rendered DOM
 * is read: per partition the stored offset, LSO and lag must equal what
 * `exactly offsets --json` prints, every worker row shows the pid the
 * supervisor logged and "up", the dead-letter total equals the rows of the
 * dead_letters table, and its reason is listed; an idle relay of the same
 * file has its section (up, 0 pending). (Before that,
 * /status.json must show every partition at its high watermark, lag 0,
 * state running.) The scrape of /metrics at that point passes `promtool
 * check metrics`, and every metric that deploy/prometheus/
 * alerts.yml and deploy/grafana/exactly.json name is in it (the dashboard
 * must parse as JSON). A screenshot is saved as status_page.png in
 * $EXACTLY_ARTIFACT_DIR (the build directory), else in the working
 * directory, beside the rendered DOM (status_page.html).
 *
 * Skipped (77) when chromium is not installed or cannot start here.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "status"
#define N_PARTITIONS 4
#define N_MESSAGES 2000

/* Output of a shell command (malloc'd), and its exit status. */
static char *run_cmd(const char *cmd, int *status)
{
    FILE *f = popen(cmd, "r");
    char *buf = NULL;
    size_t len = 0, cap = 0, n;

    TK_CHECK(f != NULL, "cannot run %s", cmd);
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap);
            TK_CHECK(buf != NULL, "out of memory");
        }
        n = fread(buf + len, 1, cap - len - 1, f);
        if (n == 0)
            break;
        len += n;
    }
    buf[len] = '\0';
    *status = pclose(f);
    return buf;
}

/* The text of the cell of class cls in row [row, end), or NULL. */
static char *cell_text(const char *row, const char *end, const char *cls)
{
    char pat[64], *out;
    const char *at, *close;

    snprintf(pat, sizeof pat, "class=\"%s\"", cls);
    at = strstr(row, pat);
    if (!at || at >= end || !(at = strchr(at, '>')) || at >= end)
        return NULL;
    at++;
    close = strchr(at, '<');
    if (!close || close > end)
        return NULL;
    out = strndup(at, (size_t)(close - at));
    TK_CHECK(out != NULL, "out of memory");
    return out;
}

/* /status.json's newest dead letters are the 10 newest rows of
 * exactly.dead_letters, id descending, every member as the table holds it
 * (integers as JSON integers, text as strings, SQL NULL as null). */
static void check_newest_dead_letters(int port, PGconn *db)
{
    static const char *const names[] = {"id", "topic", "partition", "offset",
                                        "reason", "entity_id", "sqlstate",
                                        "attempts", "last_failed_at"};
    static const char kinds[] = "itiitttit";
    char *body = NULL, *want, got[8192];
    json_t *root, *newest, *d;
    size_t i, k, len = 0;

    TK_CHECK(tk_http_get(port, "/status.json", &body) == 200 && body,
             "GET /status.json failed");
    root = json_loads(body, 0, NULL);
    TK_CHECK(root != NULL, "/status.json is not JSON:\n%s", body);
    newest = json_object_get(
        json_object_get(json_array_get(json_object_get(root, "pipelines"), 0),
                        "dead_letters"),
        "newest");
    TK_CHECK(json_is_array(newest), "/status.json has no newest dead "
             "letters:\n%s", body);
    got[0] = '\0';
    json_array_foreach(newest, i, d) {
        for (k = 0; k < sizeof names / sizeof names[0]; k++) {
            json_t *v = json_object_get(d, names[k]);
            const char *sep = k ? "/" : (i ? ";" : "");
            if (json_is_null(v))
                len += (size_t)snprintf(got + len, sizeof got - len, "%snull",
                                        sep);
            else if (kinds[k] == 'i' && json_is_integer(v))
                len += (size_t)snprintf(got + len, sizeof got - len,
                                        "%s%" JSON_INTEGER_FORMAT, sep,
                                        json_integer_value(v));
            else if (kinds[k] == 't' && json_is_string(v))
                len += (size_t)snprintf(got + len, sizeof got - len, "%s%s",
                                        sep, json_string_value(v));
            else
                tk_fail("newest dead letter member %s has the wrong type:\n%s",
                        names[k], body);
            TK_CHECK(len < sizeof got, "newest dead letters too long");
        }
    }
    want = tk_sql_text(db, "SELECT string_agg(concat_ws('/', id, topic,"
                           " partition, \"offset\", reason,"
                           " coalesce(entity_id, 'null'),"
                           " coalesce(sqlstate, 'null'), attempts,"
                           " to_char(last_failed_at AT TIME ZONE 'UTC',"
                           " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')), ';'"
                           " ORDER BY id DESC) FROM (SELECT * FROM"
                           " exactly.dead_letters ORDER BY id DESC LIMIT 10)"
                           " n");
    TK_CHECK_EQ_STR(got, want, "/status.json's newest dead letters");
    free(want);
    free(body);
    json_decref(root);
}

/* Whether /status.json shows every partition consumed to hw[] (lag 0)
 * and dead letters in total. */
static int status_settled(int port, const int64_t *hw, int64_t dead)
{
    char *body = NULL;
    json_t *root, *pipe, *parts, *p;
    size_t i;
    int ok = 0, seen = 0;

    if (tk_http_get(port, "/status.json", &body) != 200 || !body) {
        free(body);
        return 0;
    }
    root = json_loads(body, 0, NULL);
    free(body);
    TK_CHECK(root != NULL, "/status.json is not JSON");
    pipe = json_array_get(json_object_get(root, "pipelines"), 0);
    parts = json_object_get(pipe, "partitions");
    if (json_integer_value(json_object_get(json_object_get(pipe, "dead_letters"),
                                           "total")) == dead) {
        ok = 1;
        json_array_foreach(parts, i, p) {
            int part = (int)json_integer_value(json_object_get(p, "partition"));
            seen++;
            if (part < 0 || part >= N_PARTITIONS ||
                json_integer_value(json_object_get(p, "stored")) != hw[part] ||
                json_integer_value(json_object_get(p, "lso")) != hw[part] ||
                !json_is_integer(json_object_get(p, "lag")) ||
                json_integer_value(json_object_get(p, "lag")) != 0 ||
                strcmp(json_string_value(json_object_get(p, "state")), "running") != 0)
                ok = 0;
        }
    }
    json_decref(root);
    return ok && seen == N_PARTITIONS;
}

/* Every exactly_* name in text, each once, into *out (malloc'd
 * strings); returns how many. */
static size_t metric_names(const char *text, char ***out)
{
    char **v = NULL;
    size_t n = 0, i;
    const char *at = text;

    while ((at = strstr(at, "exactly_")) != NULL) {
        size_t len = strspn(at, "abcdefghijklmnopqrstuvwxyz0123456789_");
        char *name;
        int dup = 0;
        /* Not part of a longer identifier (e.g. a label value). */
        if (at > text && (at[-1] == '_' || (at[-1] >= 'a' && at[-1] <= 'z'))) {
            at += len;
            continue;
        }
        name = strndup(at, len);
        TK_CHECK(name != NULL, "out of memory");
        for (i = 0; i < n && !dup; i++)
            dup = strcmp(v[i], name) == 0;
        if (dup) {
            free(name);
        } else {
            v = realloc(v, (n + 1) * sizeof(*v));
            TK_CHECK(v != NULL, "out of memory");
            v[n++] = name;
        }
        at += len;
    }
    *out = v;
    return n;
}

/* Collects every "expr" and "query" string of a Grafana dashboard. */
static void dashboard_exprs(const json_t *j, char **acc, size_t *len)
{
    const char *key;
    json_t *v;
    size_t i;

    if (json_is_object(j)) {
        json_object_foreach((json_t *)j, key, v) {
            if ((strcmp(key, "expr") == 0 || strcmp(key, "query") == 0) &&
                json_is_string(v)) {
                size_t l = strlen(json_string_value(v));
                *acc = realloc(*acc, *len + l + 2);
                TK_CHECK(*acc != NULL, "out of memory");
                memcpy(*acc + *len, json_string_value(v), l);
                (*acc)[*len + l] = '\n';
                *len += l + 1;
                (*acc)[*len] = '\0';
            } else {
                dashboard_exprs(v, acc, len);
            }
        }
    } else if (json_is_array(j)) {
        json_array_foreach((json_t *)j, i, v)
            dashboard_exprs(v, acc, len);
    }
}

/* The scrape passes promtool check metrics, and every metric the alerts
 * and the dashboard in deploy/ name is in it. */
static void check_deploy(int port, const char *dir, const char *log)
{
    const char *src = tk_env_required("EXACTLY_SOURCE_DIR");
    char path[1024], cmd[2200], *scrape = NULL, *alerts, *exprs = NULL, **names;
    size_t n, i, len = 0;
    json_t *dash;
    json_error_t jerr;
    int checked = 0;

    LEDGER_CHECK_LOG(tk_http_get(port, "/metrics", &scrape) == 200 && scrape,
                     log, "GET /metrics did not answer 200");
    if (system("command -v promtool >/dev/null 2>&1") == 0) {
        snprintf(path, sizeof path, "%s/scrape.txt", dir);
        tk_write_file(path, "%s", scrape);
        snprintf(cmd, sizeof cmd, "promtool check metrics < '%s' > '%s.out' 2>&1",
                 path, path);
        if (system(cmd) != 0) {
            char *why;
            snprintf(path, sizeof path, "%s/scrape.txt.out", dir);
            why = tk_read_file(path);
            TK_CHECK(0, "promtool check metrics rejects the scrape:\n%s",
                     why ? why : "");
        }
    } else {
        tk_note("promtool not installed: the scrape is not linted here");
    }
    snprintf(path, sizeof path, "%s/deploy/grafana/exactly.json", src);
    dash = json_load_file(path, 0, &jerr);
    TK_CHECK(dash != NULL, "%s does not parse: %s (line %d)", path, jerr.text,
             jerr.line);
    TK_CHECK(json_array_size(json_object_get(dash, "panels")) > 0,
             "%s has no panels", path);
    dashboard_exprs(dash, &exprs, &len);
    json_decref(dash);
    snprintf(path, sizeof path, "%s/deploy/prometheus/alerts.yml", src);
    alerts = tk_read_file(path);
    TK_CHECK(alerts != NULL && exprs != NULL, "cannot read %s or the "
             "dashboard's queries", path);
    {
        char *both = malloc(strlen(alerts) + len + 2);
        TK_CHECK(both != NULL, "out of memory");
        sprintf(both, "%s\n%s", alerts, exprs);
        n = metric_names(both, &names);
        free(both);
    }
    for (i = 0; i < n; i++) {
        char line_start[160], *at = scrape;
        int found = 0;
        snprintf(line_start, sizeof line_start, "\n%s", names[i]);
        while (!found && (at = strstr(at, line_start)) != NULL) {
            char c = at[strlen(line_start)];
            found = c == '{' || c == ' ';
            at++;
        }
        /* A histogram's family name (its TYPE line) counts too. */
        snprintf(line_start, sizeof line_start, "# TYPE %s ", names[i]);
        found = found || strstr(scrape, line_start) != NULL;
        TK_CHECK(found, "deploy/ names the metric %s, which the scrape does "
                 "not have", names[i]);
        free(names[i]);
        checked++;
    }
    free(names);
    free(alerts);
    free(exprs);
    free(scrape);
    TK_CHECK(checked >= 10, "only %d metric names found in deploy/", checked);
    tk_note("deploy/: %d metric names of the alerts and the dashboard are in "
            "the scrape", checked);
}

/* The pid of the n-th "worker started" line. */
static long worker_pid(const char *log, int n)
{
    char *text = tk_read_file(log), *at;
    long pid = -1;
    int i;

    TK_CHECK(text != NULL, "cannot read %s", log);
    at = text;
    for (i = 0; i <= n && at; i++) {
        at = strstr(at, "msg=\"worker started\"");
        if (at && i < n)
            at++;
    }
    if (at && (at = strstr(at, "worker_pid=")))
        pid = strtol(at + strlen("worker_pid="), NULL, 10);
    free(text);
    return pid;
}

int main(void)
{
    static const char *const kafka[] = {"session.timeout.ms", "6000",
                                        "heartbeat.interval.ms", "500", NULL};
    ledger_fixture f;
    ledger_config cfg;
    int64_t hw[N_PARTITIONS], dead, t0;
    char cmd[4096], shot[1024], ud[512], url[64], *text, *at, *dom, *out;
    const char *artifacts = getenv("EXACTLY_ARTIFACT_DIR");
    json_t *offsets, *row;
    PGconn *db;
    pid_t run;
    size_t k;
    int port = 0, status, rows = 0, i;
    long pids[2];

    if (system("command -v chromium >/dev/null 2>&1") != 0) {
        tk_note("SKIP: chromium is not installed (scripts/deps.sh installs it)");
        return 77;
    }
    ledger_fixture_start(&f, "status_page", TOPIC, N_PARTITIONS);
    memset(&cfg, 0, sizeof cfg);
    cfg.max_messages = 200;
    cfg.max_wait_ms = 20;
    cfg.kafka = kafka;
    cfg.pipeline_yaml = "    workers: 2\n";
    cfg.handler_options_yaml = "        fail_on_ids: ['7', '13', '42']\n";
    ledger_fixture_config(&f, &cfg);
    /* A relay beside the pipeline, idle (its outbox stays empty): its
     * metrics are in the scrape that deploy/'s alerts are checked on, and
     * it has its section on the page. */
    {
        FILE *cf = fopen(f.config, "a");
        TK_CHECK(cf != NULL, "cannot append to %s", f.config);
        fprintf(cf, "relays:\n  idle:\n    topic: " TOPIC "\n"
                    "    poll_interval_ms: 200\n");
        TK_CHECK(fclose(cf) == 0, "cannot write %s", f.config);
    }
    snprintf(ud, sizeof ud, "%s/chromium", f.dir);
    /* Chromium first: a machine where it cannot start skips the test. */
    snprintf(cmd, sizeof cmd,
             "timeout 60 chromium --headless --no-sandbox --disable-gpu "
             "--user-data-dir='%s' --dump-dom 'data:text/html,<p>ok</p>' "
             "2>/dev/null", ud);
    out = run_cmd(cmd, &status);
    if (status != 0 || !strstr(out, "<p>ok</p>")) {
        tk_note("SKIP: chromium --headless cannot start here (exit status "
                "%d)", status);
        free(out);
        ledger_fixture_stop(&f);
        return 77;
    }
    free(out);

    tk_produce_ids(tk_mock_bootstraps(f.mock), TOPIC, N_MESSAGES,
                   LEDGER_ACCOUNTS, N_PARTITIONS, 77, NULL);
    db = tk_pg_connect(f.conninfo);
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "run", "-c", f.config,
                        "--metrics", "127.0.0.1:0", "--lock-dir", f.dir, NULL};
        run = tk_spawn(argv, f.log);
    }
    LEDGER_CHECK_LOG(ledger_wait_log(f.log, "serving metrics", 1, run, 15000, NULL) &&
                         ledger_wait_log(f.log, "msg=\"worker started\"", 2,
                                         run, 15000, NULL),
                     f.log, "the supervisor did not serve and start 2 workers");
    text = tk_read_file(f.log);
    at = text ? strstr(text, "address=127.0.0.1:") : NULL;
    if (at)
        port = atoi(at + strlen("address=127.0.0.1:"));
    free(text);
    TK_CHECK(port > 0, "no bound address in %s", f.log);
    pids[0] = worker_pid(f.log, 0);
    pids[1] = worker_pid(f.log, 1);

    /* Every message applied or dead-lettered, and the page's sources
     * caught up (the status reader reads every 2 s). */
    t0 = tk_now_ms();
    ledger_high_watermarks(tk_mock_bootstraps(f.mock), TOPIC, N_PARTITIONS, hw);
    for (;;) {
        dead = tk_sql_int64(db,
                               "SELECT count(*) FROM exactly.dead_letters");
        if (ledger_rows(db) + dead >= N_MESSAGES && status_settled(port, hw, dead))
            break;
        LEDGER_CHECK_LOG(tk_now_ms() - t0 < 30000 && tk_wait(run, 0) == -1,
                         f.log, "/status.json did not show all %d messages "
                         "consumed (lag 0) and %" PRId64 " dead letters "
                         "within 30 s", N_MESSAGES, dead);
        tk_sleep_ms(200);
    }
    TK_CHECK(dead > 0, "the handler dead-lettered nothing");
    check_newest_dead_letters(port, db);

    check_deploy(port, f.dir, f.log);

    snprintf(cmd, sizeof cmd, "'%s' offsets -c '%s' --json",
             ledger_exactly_bin(), f.config);
    out = run_cmd(cmd, &status);
    TK_CHECK(status == 0, "exactly offsets --json exited %d:\n%s", status, out);
    offsets = json_loads(out, 0, NULL);
    TK_CHECK(json_is_array(offsets), "exactly offsets --json is not an "
             "array:\n%s", out);
    free(out);

    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    snprintf(cmd, sizeof cmd,
             "timeout 60 chromium --headless --no-sandbox --disable-gpu "
             "--user-data-dir='%s' --dump-dom '%s' 2>/dev/null", ud, url);
    dom = run_cmd(cmd, &status);
    TK_CHECK(status == 0 && strstr(dom, "<h1>exactly</h1>"),
             "chromium --dump-dom %s exited %d:\n%.2000s", url, status, dom);
    snprintf(shot, sizeof shot, "%s/status_page.html", artifacts ? artifacts : ".");
    tk_write_file(shot, "%s", dom);

    /* Partitions: the DOM against exactly offsets --json. */
    json_array_foreach(offsets, k, row) {
        const char *topic = json_string_value(json_object_get(row, "topic"));
        int part = (int)json_integer_value(json_object_get(row, "partition"));
        const char *r = dom, *end;
        char want[3][32];
        static const char *const cls[3] = {"stored", "lso", "lag"};
        static const char *const key[3] = {"stored", "lso", "lag"};
        int found = 0, c;

        for (c = 0; c < 3; c++) {
            json_t *v = json_object_get(row, key[c]);
            TK_CHECK(json_is_integer(v), "offsets --json has no %s for "
                     "partition %d", key[c], part);
            snprintf(want[c], sizeof want[c], "%lld",
                     (long long)json_integer_value(v));
        }
        while ((r = strstr(r, "<tr class=\"partition-row\">")) != NULL) {
            char *t, *p;
            end = strstr(r, "</tr>");
            TK_CHECK(end != NULL, "a partition row without its end");
            t = cell_text(r, end, "topic");
            p = cell_text(r, end, "partition");
            if (t && p && strcmp(t, topic) == 0 && atoi(p) == part) {
                found = 1;
                for (c = 0; c < 3; c++) {
                    char *got = cell_text(r, end, cls[c]);
                    TK_CHECK(got && strcmp(got, want[c]) == 0,
                             "partition %s/%d: the page shows %s %s, exactly "
                             "offsets --json %s", topic, part, cls[c],
                             got ? got : "(none)", want[c]);
                    free(got);
                }
            }
            free(t);
            free(p);
            r = end;
        }
        TK_CHECK(found, "the page has no row for partition %s/%d", topic, part);
        rows++;
    }
    TK_CHECK_EQ_INT64(rows, N_PARTITIONS, "partitions in exactly offsets --json");

    /* Workers: the pids the supervisor logged, up. */
    for (i = 0; i < 2; i++) {
        char want[48], *w = strstr(dom, "<table class=\"workers\">"), *end;
        int found = 0;
        snprintf(want, sizeof want, "%ld", pids[i]);
        end = w ? strstr(w, "</table>") : NULL;
        TK_CHECK(end != NULL, "the page has no workers table");
        while ((w = strstr(w, "<tr")) && w < end) {
            char *rend = strstr(w, "</tr>"), *pid = cell_text(w, rend, "pid"),
                 *up = cell_text(w, rend, "up");
            if (pid && strcmp(pid, want) == 0) {
                found = 1;
                TK_CHECK(up && strcmp(up, "yes") == 0, "worker pid %s is not "
                         "shown up", want);
            }
            free(pid);
            free(up);
            w = rend;
        }
        TK_CHECK(found, "worker pid %ld is not on the page", pids[i]);
    }

    /* The relay: its section, up, nothing pending. */
    {
        char *r = strstr(dom, "<section class=\"relay\" data-relay=\"idle\">"),
             *end = r ? strstr(r, "</table>") : NULL, *up, *pending;
        TK_CHECK(r && end, "the page has no section for relay idle");
        r = strstr(r, "<tr class=");
        TK_CHECK(r && r < end, "relay idle's section has no row");
        up = cell_text(r, end, "up");
        pending = cell_text(r, end, "num pending");
        TK_CHECK(up && strcmp(up, "yes") == 0, "relay idle is not shown up");
        TK_CHECK(pending && strcmp(pending, "0") == 0,
                 "relay idle shows %s pending, not 0",
                 pending ? pending : "(none)");
        free(up);
        free(pending);
    }

    /* Dead letters: the total and the reason. */
    {
        char *total = strstr(dom, "class=\"dl-total\">"), want[64];
        snprintf(want, sizeof want, "class=\"dl-total\">%" PRId64 "<", dead);
        TK_CHECK(total && strncmp(total, want, strlen(want)) == 0,
                 "the page's dead-letter total is not %" PRId64 ": %.60s",
                 dead, total ? total : "(none)");
        TK_CHECK(strstr(dom, "ledger: id listed in fail_on_ids") != NULL,
                 "the page does not list the dead letters' reason");
    }

    /* A screenshot, for a person to look at. */
    snprintf(shot, sizeof shot, "%s/status_page.png", artifacts ? artifacts : ".");
    snprintf(cmd, sizeof cmd,
             "timeout 60 chromium --headless --no-sandbox --disable-gpu "
             "--user-data-dir='%s' --window-size=1280,1100 --screenshot='%s' "
             "'%s' >/dev/null 2>&1", ud, shot, url);
    status = system(cmd);
    TK_CHECK(status == 0 && access(shot, R_OK) == 0,
             "chromium --screenshot exited %d, no %s", status, shot);
    tk_note("status page: %d partitions match exactly offsets --json, "
            "%" PRId64 " dead letters; screenshot %s", rows, dead, shot);

    free(dom);
    json_decref(offsets);
    PQfinish(db);
    TK_CHECK_EQ_INT64(tk_kill(run, SIGTERM), 0, "SIGTERM of the supervisor");
    status = tk_wait(run, 30000);
    LEDGER_CHECK_LOG(status == 0, f.log, "exactly run exited %d after SIGTERM",
                     status);
    ledger_fixture_stop(&f);
    tk_note("ok");
    return 0;
}
