#include "own_cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger_check.h"
#include "testkit.h"

static char pg_script[1024]; /* scripts/pg.sh */
/* pg.sh's DIR: a directory of its own, outside the test's, so that
 * removing the test's directory (EXACTLY_TEST_KEEP unset, mutation.sh)
 * never orphans a running server. */
static char pg_handle[512];
static char pg_log[512]; /* what pg.sh says */

/* Run `bash pg.sh <cmd> <handle>`; fail the test unless it exits 0. */
void own_cluster_cmd(const char *cmd)
{
    char *argv[] = {"bash", pg_script, (char *)cmd, pg_handle, NULL};
    int status = tk_wait(tk_spawn(argv, pg_log), 120000);

    LEDGER_CHECK_LOG(status == 0, pg_log, "scripts/pg.sh %s %s exited with "
                     "%d; log: %s", cmd, pg_handle, status, pg_log);
}

/* A failing check leaves through _exit (no atexit handlers) and a ctest
 * timeout kills: neither may leave a server running. So a guardian child,
 * in a session of its own, waits for EOF on a pipe whose only writer is
 * this process (close-on-exec, so the workers and pg.sh do not hold it),
 * that is, for the test to end however it ends, then removes the cluster.
 * On the passing path the test has removed it already and the guardian's
 * stop finds nothing to do. Call before any thread exists. */
static void pg_guard(void)
{
    int fds[2], fd;
    pid_t pid;
    char c;

    TK_CHECK(pipe2(fds, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
    fflush(NULL);
    pid = fork();
    TK_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        setsid();
        fd = open(pg_log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        fd = open("/dev/null", O_RDONLY);
        if (fd >= 0)
            dup2(fd, STDIN_FILENO);
        for (fd = 3; fd < 1024; fd++)
            if (fd != fds[0])
                close(fd);
        while (read(fds[0], &c, 1) < 0 && errno == EINTR)
            ;
        execlp("bash", "bash", pg_script, "stop", pg_handle, (char *)NULL);
        _exit(127);
    }
    close(fds[0]); /* fds[1] stays open until this process ends */
}

/* Start a cluster of the test's own, guarded, and point testkit's admin
 * conninfo at it. dir is the test's directory (pg.sh's log goes there). */
void own_cluster_start(const char *dir)
{
    snprintf(pg_script, sizeof pg_script, "%s/scripts/pg.sh",
             tk_env_required("EXACTLY_SOURCE_DIR"));
    tk_tmpdir("exactly-pgown", pg_handle, sizeof pg_handle);
    snprintf(pg_log, sizeof pg_log, "%s/pg.log", dir);
    pg_guard();
    own_cluster_cmd("start");
    /* tk_pg_admin_conninfo() reads EXACTLY_TEST_PG_DIR/conninfo unless
     * EXACTLY_TEST_PG_CONNINFO overrides it: make it this cluster's. */
    unsetenv("EXACTLY_TEST_PG_CONNINFO");
    setenv("EXACTLY_TEST_PG_DIR", pg_handle, 1);
}

void own_cluster_hold_commits(PGconn *db)
{
    static const char absent[] = "exactly_absent_standby";
    int64_t until = tk_now_ms() + 10000;
    char *setting;

    tk_sql(db, "SET synchronous_commit = local");
    tk_pg_set_sync_standby(db, absent);
    for (;; tk_sleep_ms(20)) {
        setting = tk_sql_text(db, "SHOW synchronous_standby_names");
        if (setting && strcmp(setting, absent) == 0)
            break;
        TK_CHECK(tk_now_ms() < until, "synchronous_standby_names is '%s'",
                 setting ? setting : "");
        free(setting);
    }
    free(setting);
}

/* Stop and remove the cluster (the passing path). */
void own_cluster_remove(void)
{
    own_cluster_cmd("stop");
}

const char *own_cluster_handle(void)
{
    return pg_handle;
}
