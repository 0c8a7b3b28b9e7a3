/* cli_kit: see cli_kit.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "cli_kit.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"

void cli_kit_start(cli_kit *k, const char *name, const char *topic,
                   int partitions, const char *config_file, int ledger)
{
    char prefix[128];
    char *p;

    memset(k, 0, sizeof *k);
    k->cmd_timeout_ms = 60000;
    k->mock = tk_mock_start(1);
    k->bootstraps = tk_mock_bootstraps(k->mock);
    tk_mock_create_topic(k->mock, topic, partitions);
    snprintf(prefix, sizeof prefix, "exactly-%s", name);
    for (p = prefix; *p; p++)
        if (*p == '_')
            *p = '-';
    tk_tmpdir(prefix, k->dir, sizeof k->dir);
    tk_pg_create_db(name, k->conninfo, sizeof k->conninfo);
    if (ledger)
        ledger_setup_db(k->conninfo);
    k->db = tk_pg_connect(k->conninfo);
    snprintf(k->cfg, sizeof k->cfg, "%s/%s", k->dir, config_file);
}

void cli_kit_produce_ids(cli_kit *k, const char *topic, int n_msgs,
                         int n_ids, int partitions, int64_t *produced)
{
    tk_msg *msgs = calloc((size_t)n_msgs, sizeof *msgs);
    char(*keys)[16] = calloc((size_t)n_msgs, sizeof *keys);
    int i;

    TK_CHECK(msgs && keys, "out of memory");
    for (i = 0; i < n_msgs; i++) {
        int id = (i % n_ids) + 1;
        snprintf(keys[i], sizeof keys[i], "%d", id);
        if (produced)
            produced[id]++;
        msgs[i].partition = i % partitions;
        msgs[i].key = keys[i];
        msgs[i].key_len = strlen(keys[i]);
    }
    tk_produce(k->bootstraps, topic, msgs, (size_t)n_msgs);
    free(msgs);
    free(keys);
}

void cli_kit_migrate(cli_kit *k)
{
    char log[512];

    snprintf(log, sizeof log, "%s/migrate.log", k->dir);
    ledger_migrate(k->cfg, log);
}

void cli_kit_worker_to_idle(cli_kit *k, int timeout_ms)
{
    char log[512];
    int status;

    snprintf(log, sizeof log, "%s/worker.log", k->dir);
    status = tk_worker_run(k->cfg, 3000, timeout_ms, log, NULL);
    LEDGER_CHECK_LOG(status == 0, log, "worker exited %d", status);
}

int64_t cli_kit_worker_to_offset_at(const char *file, int line, cli_kit *k,
                                    const char *pipeline, int64_t want,
                                    int wait_ms, const char *needle,
                                    int64_t *matched, int *status)
{
    char log[512];
    int64_t stored;
    pid_t pid;

    snprintf(log, sizeof log, "%s/worker.log", k->dir);
    pid = tk_worker_start(k->cfg, 3000, log, NULL);
    stored = tk_sql_wait_int64_at(file, line, k->db, want, wait_ms,
                                  "SELECT coalesce((SELECT next_offset FROM"
                                  " exactly.offsets WHERE pipeline = '%s'),"
                                  " 0)",
                                  pipeline);
    if (matched)
        *matched = tk_log_lines_with(log, needle, NULL);
    if (stored != want)
        kill(pid, SIGTERM);
    *status = tk_worker_wait(pid, 60000, log);
    return stored;
}

int cli_exactly(cli_kit *k, char **out, ...)
{
    const char *args[32];
    char log[512];
    va_list ap;
    const char *a;
    int n = 0;

    va_start(ap, out);
    while ((a = va_arg(ap, const char *)) != NULL && n < 28)
        args[n++] = a;
    va_end(ap);
    TK_CHECK(n > 0, "cli_exactly without a command");
    args[n++] = "-c";
    args[n++] = k->cfg;
    args[n] = NULL;
    snprintf(log, sizeof log, "%s/%s-%02d.log", k->dir, args[0], ++k->n_cmd);
    return tk_exactly_output(log, k->cmd_timeout_ms, args, out);
}

int64_t cli_dead_letters(cli_kit *k, const char *where)
{
    return tk_sql_int64(k->db, "SELECT count(*) FROM exactly.dead_letters%s%s",
                        where ? " WHERE " : "", where ? where : "");
}

void cli_kit_stop(cli_kit *k)
{
    PQfinish(k->db);
    k->db = NULL;
    tk_mock_stop(k->mock);
    k->mock = NULL;
    tk_cleanup_dir(k->dir);
}

void cli_kit_worker_summary(cli_kit *k, const char *tag, int idle_ms,
                            int timeout_ms, ledger_summary *sum)
{
    char log[512];
    pid_t pid;
    int status;

    snprintf(log, sizeof log, "%s/worker-%s.log", k->dir, tag);
    pid = ledger_start_worker(k->cfg, idle_ms, log);
    status = tk_wait(pid, timeout_ms);
    if (status == -1)
        tk_terminate(pid, 5000);
    LEDGER_CHECK_LOG(status == 0, log, "worker %s exited %d", tag, status);
    LEDGER_CHECK_LOG(ledger_read_summary(log, sum), log,
                     "worker %s printed no summary", tag);
}
