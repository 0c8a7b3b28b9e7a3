/*
 * The corpus of broken configurations (tests/data/bad_config/, see
 * tests/unit/test_config_corpus.c) through the exactly binary: `run`,
 * `worker` and `check` must each exit 2 on every file and print the
 * file's path followed by what its first line expects (LINE:COLUMN and
 * the message, naming the key), and nothing may be written: the files
 * point at a migrated database (${EXACTLY_TEST_CONNINFO}) whose
 * framework tables stay empty and which gains no table, and at a mock
 * cluster (${EXACTLY_TEST_BOOTSTRAP}) whose topic holds messages, so a
 * worker started by mistake would leave traces.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <dirent.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "testkit.h"

#define MIN_FILES 64
#define CMD_TIMEOUT_MS 60000

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int is_yaml(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return n > 5 && strcmp(d->d_name + n - 5, ".yaml") == 0;
}

/* Runs `exactly cmd -c path`; returns its exit status and output. */
static int exactly(const char *bin, const char *cmd, const char *path,
                   const char *log, char **out)
{
    char *argv[] = {(char *)bin, (char *)cmd, "-c", (char *)path, NULL};
    pid_t pid;
    int status;

    tk_rm_rf(log);
    pid = tk_spawn(argv, log);
    status = tk_wait(pid, CMD_TIMEOUT_MS);
    if (status == -1) {
        tk_terminate(pid, 5000);
        tk_fail("exactly %s -c %s did not finish in %d ms; log %s", cmd,
                path, CMD_TIMEOUT_MS, log);
    }
    *out = tk_read_file(log);
    if (!*out)
        *out = strdup("");
    return status;
}

int main(void)
{
    const char *bin = tk_env_required("EXACTLY_BIN");
    const char *src = tk_env_required("EXACTLY_SOURCE_DIR");
    static const char *const cmds[] = {"run", "worker", "check"};
    char conninfo[1024], dir[PATH_MAX], tmp[256], log[512], migrate[512];
    struct dirent **names = NULL;
    PGconn *db;
    tk_mock *m;
    int n, i;
    size_t c;

    m = tk_mock_start(1);
    tk_mock_create_topic(m, "corpus", 1);
    tk_produce_ids(tk_mock_bootstraps(m), "corpus", 20, 5, 1, 3, NULL);
    tk_pg_create_db("refusal_corpus", conninfo, sizeof conninfo);
    db = tk_pg_connect(conninfo);
    tk_sql(db, "CREATE TABLE accounts (id bigint PRIMARY KEY);"
               "INSERT INTO accounts SELECT generate_series(1, 5);"
               "CREATE TABLE accounts_copy (id bigint PRIMARY KEY)");
    setenv("EXACTLY_TEST_BOOTSTRAP", tk_mock_bootstraps(m), 1);
    setenv("EXACTLY_TEST_CONNINFO", conninfo, 1);
    unsetenv("EXACTLY_TEST_SURELY_UNSET");
    unsetenv("EXACTLY_TEST_SURELY_UNSET_TOO");

    tk_tmpdir("exactly-refusal-corpus", tmp, sizeof tmp);
    snprintf(migrate, sizeof migrate, "%s/migrate.yaml", tmp);
    tk_write_file(migrate,
                  "kafka: {bootstrap.servers: \"${EXACTLY_TEST_BOOTSTRAP}\"}\n"
                  "postgres: {conninfo: \"${EXACTLY_TEST_CONNINFO}\"}\n"
                  "pipelines:\n  p:\n    topics: [corpus]\n"
                  "    lookup: {table: accounts}\n"
                  "    handler: {builtin: upsert, options: {table:"
                  " accounts_copy, key: [id], columns: {id: id}}}\n");
    {
        char *out;
        snprintf(log, sizeof log, "%s/migrate.log", tmp);
        TK_CHECK(exactly(bin, "migrate", migrate, log, &out) == 0,
                 "migrate failed:\n%s", out);
        free(out);
    }

    snprintf(dir, sizeof dir, "%s/tests/data/bad_config", src);
    n = scandir(dir, &names, is_yaml, by_name);
    TK_CHECK(n >= MIN_FILES, "%s holds %d files, expected at least %d", dir,
             n, MIN_FILES);
    for (i = 0; i < n; i++) {
        char path[PATH_MAX + 256], want[PATH_MAX + 1536];
        char *text = NULL, *nl;

        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        text = tk_read_file(path);
        TK_CHECK(text && strncmp(text, "# expect: ", 10) == 0 &&
                     (nl = strchr(text, '\n')) != NULL,
                 "%s does not start with an expectation", path);
        *nl = '\0';
        snprintf(want, sizeof want, "%s:%s", path, text + 10);
        free(text);
        for (c = 0; c < sizeof cmds / sizeof cmds[0]; c++) {
            char *out;
            int status;

            snprintf(log, sizeof log, "%s/%s.log", tmp, cmds[c]);
            status = exactly(bin, cmds[c], path, log, &out);
            TK_CHECK(status == 2, "[%s] exactly %s exited %d, expected 2:\n%s",
                     names[i]->d_name, cmds[c], status, out);
            TK_CHECK(strstr(out, want) != NULL,
                     "[%s] exactly %s did not say \"%s\":\n%s",
                     names[i]->d_name, cmds[c], want, out);
            free(out);
        }
        free(names[i]);
    }
    free(names);

    /* Nothing was written. */
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM exactly.offsets"),
                      0, "stored offsets");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.dead_letters"),
                      0, "dead letters");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.dedup_keys"),
                      0, "dedup keys");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM "
                                       "exactly.schema_version"),
                      EXACTLY_SCHEMA_VERSION, "migration steps");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM accounts_copy"),
                      0, "rows written by a handler");
    TK_CHECK_EQ_INT64(tk_sql_int64(db, "SELECT count(*) FROM pg_tables WHERE"
                                       " schemaname NOT IN ('pg_catalog',"
                                       " 'information_schema', 'exactly')"),
                      2, "tables outside the framework schema");
    PQfinish(db);
    tk_mock_stop(m);
    tk_rm_rf(tmp);
    tk_note("%d broken configurations x 3 commands: exit 2, the expected "
            "message, nothing written",
            n);
    return 0;
}
