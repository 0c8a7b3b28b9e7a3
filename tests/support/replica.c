#include "replica.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger_check.h"
#include "own_cluster.h"
#include "testkit.h"

static char script[1024];   /* scripts/pg-replica.sh */
static char pg_script[1024]; /* scripts/pg.sh: removes it */
static char handle[512];    /* the standby's pg.sh handle */
static char log_path[512];
static char own_conninfo[1024];

static void run(char *const argv[])
{
    int status = tk_wait(tk_spawn(argv, log_path), 180000);

    LEDGER_CHECK_LOG(status == 0, log_path, "%s %s exited with %d; log: %s",
                     argv[1], argv[2], status, log_path);
}

void replica_cmd(const char *cmd)
{
    char *argv[] = {"bash", script, (char *)cmd, handle, NULL};

    run(argv);
}

/* As own_cluster.c's guard: a child in its own session waits for EOF on a
 * pipe only this process writes (close-on-exec), then removes the standby
 * with pg.sh stop, however the test ended. */
static void guard(void)
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
        fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
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
        execlp("bash", "bash", pg_script, "stop", handle, (char *)NULL);
        _exit(127);
    }
    close(fds[0]);
}

void replica_start(const char *dir, const char *mode)
{
    char *argv[] = {"bash", script, "start", (char *)own_cluster_handle(),
                    handle, (char *)mode, NULL};
    char path[600];
    char *text;

    snprintf(script, sizeof script, "%s/scripts/pg-replica.sh",
             tk_env_required("EXACTLY_SOURCE_DIR"));
    snprintf(pg_script, sizeof pg_script, "%s/scripts/pg.sh",
             tk_env_required("EXACTLY_SOURCE_DIR"));
    tk_tmpdir("exactly-pgreplica", handle, sizeof handle);
    snprintf(log_path, sizeof log_path, "%s/replica.log", dir);
    guard();
    run(argv);
    snprintf(path, sizeof path, "%s/conninfo", handle);
    text = tk_read_file(path);
    TK_CHECK(text != NULL, "no %s", path);
    text[strcspn(text, "\n")] = '\0';
    snprintf(own_conninfo, sizeof own_conninfo, "%s", text);
    free(text);
}

const char *replica_conninfo(void)
{
    return own_conninfo;
}

/* The value of keyword in conninfo ("" when absent), into out. */
static void option(const char *conninfo, const char *keyword, char *out,
                   size_t out_size)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err), *o;

    TK_CHECK(opts != NULL, "cannot parse conninfo: %s", err ? err : "?");
    out[0] = '\0';
    for (o = opts; o->keyword; o++)
        if (strcmp(o->keyword, keyword) == 0 && o->val)
            snprintf(out, out_size, "%s", o->val);
    PQconninfoFree(opts);
}

void replica_multihost(const char *conninfo, char *out, size_t out_size)
{
    char ph[512], pp[32], rh[512], rp[32], db[128];

    option(conninfo, "host", ph, sizeof ph);
    option(conninfo, "port", pp, sizeof pp);
    option(conninfo, "dbname", db, sizeof db);
    option(own_conninfo, "host", rh, sizeof rh);
    option(own_conninfo, "port", rp, sizeof rp);
    snprintf(out, out_size,
             "host=%s,%s port=%s,%s user=postgres dbname=%s "
             "target_session_attrs=read-write",
             ph, rh, pp, rp, db);
}

void replica_direct(const char *conninfo, char *out, size_t out_size)
{
    char rh[512], rp[32], db[128];

    option(conninfo, "dbname", db, sizeof db);
    option(own_conninfo, "host", rh, sizeof rh);
    option(own_conninfo, "port", rp, sizeof rp);
    snprintf(out, out_size, "host=%s port=%s user=postgres dbname=%s", rh, rp,
             db);
}

void replica_remove(void)
{
    char *argv[] = {"bash", pg_script, "stop", handle, NULL};

    run(argv);
}
