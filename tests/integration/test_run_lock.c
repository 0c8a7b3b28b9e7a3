/*
 * The per-group lock file of `exactly run` and what the workers inherit.
 *
 *   symlink   a symbolic link planted at the lock path, pointing at a file
 *             of the test's: the supervisor refuses (exit 2, naming the
 *             path) and the target keeps its content.
 *   opendir   a lock directory writable by others (mode 0777) is refused
 *             (exit 2): anyone could plant or hold the lock there.
 *   name      a group name holding "/" and ".." cannot put the lock file
 *             outside the lock directory.
 *   default   with neither --lock-dir nor $EXACTLY_LOCK_DIR the lock goes
 *             into $XDG_RUNTIME_DIR, not a world-writable /tmp; the lock
 *             file is readable and writable by its owner only.
 *   inherit   a running worker holds neither the lock file nor the
 *             supervisor's metrics socket (read from /proc/PID/fd), so a
 *             worker that outlives its supervisor cannot keep either.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <arpa/inet.h>
#include <dirent.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "runlock"
#define N_PARTITIONS 2
#define VICTIM_TEXT "precious contents of a file the lock must never touch\n"

static tk_mock *g_mock;
static char g_dir[256];
static char g_conninfo[1024];

/* A config of the ledger pipeline with consumer group `group`. */
static void write_config(const char *path, const char *group)
{
    ledger_config c;

    memset(&c, 0, sizeof c);
    c.bootstraps = tk_mock_bootstraps(g_mock);
    c.conninfo = g_conninfo;
    c.topic = TOPIC;
    c.group = group;
    c.max_messages = 100;
    c.max_wait_ms = 20;
    ledger_write_config(path, &c);
}

/* `exactly run -c config [--lock-dir dir] [extra...]`, output to log. */
static pid_t start_run(const char *config, const char *lock_dir,
                       const char *log, const char *extra1,
                       const char *extra2)
{
    char *argv[12];
    int n = 0;

    argv[n++] = (char *)ledger_exactly_bin();
    argv[n++] = "run";
    argv[n++] = "-c";
    argv[n++] = (char *)config;
    if (lock_dir) {
        argv[n++] = "--lock-dir";
        argv[n++] = (char *)lock_dir;
    }
    if (extra1)
        argv[n++] = (char *)extra1;
    if (extra2)
        argv[n++] = (char *)extra2;
    argv[n] = NULL;
    return tk_spawn(argv, log);
}

/* Waits for the supervisor to exit within timeout_ms; a supervisor still
 * running is stopped (so the test leaves nothing behind) and -1 returned. */
static int wait_exit(pid_t pid, int timeout_ms)
{
    int st = tk_wait(pid, timeout_ms);

    if (st == -1)
        (void)tk_terminate(pid, 30000);
    return st;
}

static void scenario_symlink(void)
{
    char lockdir[512], victim[512], lock[600], config[512], log[512];
    char *text;
    int st;

    snprintf(lockdir, sizeof lockdir, "%s/sym", g_dir);
    TK_CHECK(mkdir(lockdir, 0755) == 0, "mkdir %s", lockdir);
    snprintf(victim, sizeof victim, "%s/victim.txt", g_dir);
    tk_write_file(victim, "%s", VICTIM_TEXT);
    snprintf(lock, sizeof lock, "%s/exactly-sym-group.lock", lockdir);
    TK_CHECK(symlink(victim, lock) == 0, "symlink %s", lock);
    snprintf(config, sizeof config, "%s/sym.yaml", g_dir);
    write_config(config, "sym-group");
    snprintf(log, sizeof log, "%s/sym.log", g_dir);

    st = wait_exit(start_run(config, lockdir, log, NULL, NULL), 30000);
    text = tk_read_file(victim);
    LEDGER_CHECK_LOG(text && strcmp(text, VICTIM_TEXT) == 0, log,
                     "the symlink's target %s was changed through the lock "
                     "path: it holds \"%s\"", victim, text ? text : "(gone)");
    free(text);
    LEDGER_CHECK_LOG(st == 2, log, "exactly run with a symlink at the lock "
                     "path exited %d, expected 2 (refused)", st);
    LEDGER_CHECK_LOG(tk_file_contains(log, lock), log,
                     "the refusal does not name the lock path %s", lock);
    LEDGER_CHECK_LOG(!tk_file_contains(log, "worker started"), log,
                     "workers were started despite the refused lock");
    tk_note("[symlink] refused with exit 2; the target is untouched");
}

static void scenario_opendir(void)
{
    char lockdir[512], config[512], log[512];
    int st;

    snprintf(lockdir, sizeof lockdir, "%s/open", g_dir);
    TK_CHECK(mkdir(lockdir, 0755) == 0 && chmod(lockdir, 0777) == 0,
             "mkdir %s", lockdir);
    snprintf(config, sizeof config, "%s/open.yaml", g_dir);
    write_config(config, "open-group");
    snprintf(log, sizeof log, "%s/open.log", g_dir);

    st = wait_exit(start_run(config, lockdir, log, NULL, NULL), 30000);
    LEDGER_CHECK_LOG(st == 2, log, "exactly run with a lock directory "
                     "writable by others exited %d, expected 2 (refused)",
                     st);
    LEDGER_CHECK_LOG(tk_file_contains(log, lockdir) &&
                         tk_file_contains(log, "writable"),
                     log, "the refusal does not name the directory %s and "
                     "why", lockdir);
    tk_note("[opendir] a lock directory of mode 0777 is refused");
}

/* Every directory entry under dir (recursively) whose name contains
 * needle; returns how many. */
static int count_named(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (!d)
        return 0;
    while ((e = readdir(d)) != NULL) {
        char sub[1024];
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (strstr(e->d_name, needle))
            n++;
        snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
            n += count_named(sub, needle);
    }
    closedir(d);
    return n;
}

static void scenario_name(void)
{
    char base[512], lockdir[600], trap[700], config[512], log[512];
    int st, outside, inside;

    /* base/locks is the lock directory; base/locks/exactly-x exists, so a
     * path built from "x/../../escaped" leads to base/escaped.lock. */
    snprintf(base, sizeof base, "%s/name", g_dir);
    TK_CHECK(mkdir(base, 0755) == 0, "mkdir %s", base);
    snprintf(lockdir, sizeof lockdir, "%s/locks", base);
    TK_CHECK(mkdir(lockdir, 0755) == 0, "mkdir %s", lockdir);
    snprintf(trap, sizeof trap, "%s/exactly-x", lockdir);
    TK_CHECK(mkdir(trap, 0755) == 0, "mkdir %s", trap);
    snprintf(config, sizeof config, "%s/name.yaml", g_dir);
    write_config(config, "x/../../escaped");
    snprintf(log, sizeof log, "%s/name.log", g_dir);

    {
        pid_t run = start_run(config, lockdir, log, "--exit-idle", "1000");
        /* Either refused, or running with its lock: give it time to take
         * the lock, then stop it. */
        st = tk_wait(run, 3000);
        if (st == -1)
            st = tk_terminate(run, 30000);
    }
    {
        char esc[700];
        struct stat sb;
        snprintf(esc, sizeof esc, "%s/escaped.lock", base);
        outside = lstat(esc, &sb) == 0;
    }
    inside = count_named(lockdir, "escaped");
    LEDGER_CHECK_LOG(!outside, log, "group \"x/../../escaped\" put its lock "
                     "file outside the lock directory, at %s/escaped.lock",
                     base);
    LEDGER_CHECK_LOG(inside == 1 || st == 2, log,
                     "the lock of group \"x/../../escaped\" is neither in "
                     "the lock directory (%d entries) nor refused (exit %d)",
                     inside, st);
    tk_note("[name] group \"x/../../escaped\": exit %d, %d lock file(s) in "
            "the lock directory, none outside", st, inside);
}

static void scenario_default(void)
{
    char xdg[512], config[512], log[512], lock[700];
    char tmp_lock[256];
    struct stat sb;
    pid_t run;
    int st;

    snprintf(xdg, sizeof xdg, "%s/xdg", g_dir);
    TK_CHECK(mkdir(xdg, 0700) == 0, "mkdir %s", xdg);
    snprintf(config, sizeof config, "%s/default.yaml", g_dir);
    snprintf(log, sizeof log, "%s/default.log", g_dir);
    {
        char group[64];
        snprintf(group, sizeof group, "default-group-%d", (int)getpid());
        write_config(config, group);
        snprintf(lock, sizeof lock, "%s/exactly/exactly-%s.lock", xdg, group);
        snprintf(tmp_lock, sizeof tmp_lock, "/tmp/exactly-%s.lock", group);
    }
    TK_CHECK(unsetenv("EXACTLY_LOCK_DIR") == 0 &&
                 setenv("XDG_RUNTIME_DIR", xdg, 1) == 0,
             "setenv");
    run = start_run(config, NULL, log, NULL, NULL);
    TK_CHECK(unsetenv("XDG_RUNTIME_DIR") == 0, "unsetenv");
    LEDGER_CHECK_LOG(ledger_wait_log(log, "msg=\"worker started\"", 1, run,
                                     30000, &st),
                     log, "the supervisor started no worker (exit %d)", st);
    {
        int in_xdg = lstat(lock, &sb) == 0;
        int in_tmp = lstat(tmp_lock, &sb) == 0;
        mode_t mode = 0;
        if (in_xdg && lstat(lock, &sb) == 0)
            mode = sb.st_mode & 0777;
        st = tk_terminate(run, 30000);
        if (in_tmp)
            unlink(tmp_lock);
        LEDGER_CHECK_LOG(!in_tmp, log, "the default lock went to %s",
                         tmp_lock);
        LEDGER_CHECK_LOG(in_xdg, log, "no lock file at %s with "
                         "XDG_RUNTIME_DIR=%s", lock, xdg);
        LEDGER_CHECK_LOG((mode & 077) == 0, log, "the lock file has mode "
                         "%03o: others can open it (and hold the lock)",
                         (unsigned)mode);
    }
    LEDGER_CHECK_LOG(st == 0, log, "exactly run exited %d after SIGTERM", st);
    tk_note("[default] the lock is %s, mode 0600", lock);
}

/* The inode of the socket listening on 127.0.0.1:port, from
 * /proc/net/tcp; 0 when not found. */
static unsigned long listen_inode(int port)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    char line[512];
    unsigned long inode = 0;

    TK_CHECK(f != NULL, "cannot read /proc/net/tcp");
    while (fgets(line, sizeof line, f)) {
        unsigned int lport, state;
        unsigned long ino;
        if (sscanf(line, " %*d: %*x:%x %*x:%*x %x %*x:%*x %*x:%*x %*x %*u "
                         "%*u %lu", &lport, &state, &ino) == 3 &&
            (int)lport == port && state == 0x0A)
            inode = ino;
    }
    fclose(f);
    return inode;
}

/* How many of pid's descriptors link to target. */
static int fds_to(pid_t pid, const char *target)
{
    char dir[64];
    DIR *d;
    struct dirent *e;
    int n = 0;

    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    d = opendir(dir);
    TK_CHECK(d != NULL, "cannot read %s", dir);
    while ((e = readdir(d)) != NULL) {
        char path[384], link[1024];
        ssize_t len;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        len = readlink(path, link, sizeof link - 1);
        if (len <= 0)
            continue;
        link[len] = '\0';
        if (strcmp(link, target) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static void scenario_inherit(void)
{
    char lockdir[512], config[512], log[512], lock[700], addr[64];
    char sock[64], tag[64];
    unsigned long inode;
    pid_t run, worker;
    int port, st, lock_fds, sock_fds;

    snprintf(lockdir, sizeof lockdir, "%s/inherit", g_dir);
    TK_CHECK(mkdir(lockdir, 0755) == 0, "mkdir %s", lockdir);
    snprintf(config, sizeof config, "%s/inherit.yaml", g_dir);
    write_config(config, "inherit-group");
    snprintf(lock, sizeof lock, "%s/exactly-inherit-group.lock", lockdir);
    snprintf(log, sizeof log, "%s/inherit.log", g_dir);
    port = tk_free_port();
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);

    run = start_run(config, lockdir, log, "--metrics", addr);
    LEDGER_CHECK_LOG(ledger_wait_log(log, "msg=\"worker started\"", 1, run,
                                     30000, &st),
                     log, "the supervisor started no worker (exit %d)", st);
    worker = (pid_t)ledger_log_last_int(log, " worker_pid=");
    TK_CHECK(worker > 0, "no worker_pid in %s", log);
    /* The worker's own "started" line: it is past its set-up. */
    snprintf(tag, sizeof tag, " pid=%d ", (int)worker);
    {
        int64_t deadline = tk_now_ms() + 60000;
        for (;;) {
            char *text = tk_read_file(log);
            int seen = 0;
            char *line, *save = NULL;
            for (line = text ? strtok_r(text, "\n", &save) : NULL; line;
                 line = strtok_r(NULL, "\n", &save))
                if (strstr(line, tag) && strstr(line, "msg=\"started\""))
                    seen = 1;
            free(text);
            if (seen)
                break;
            LEDGER_CHECK_LOG(tk_now_ms() < deadline && tk_wait(run, 0) == -1,
                             log, "worker %d did not start", (int)worker);
            tk_sleep_ms(20);
        }
    }
    inode = listen_inode(port);
    TK_CHECK(inode != 0, "nothing listens on %s", addr);
    snprintf(sock, sizeof sock, "socket:[%lu]", inode);
    TK_CHECK(fds_to(run, lock) == 1 && fds_to(run, sock) == 1,
             "the supervisor does not hold the lock %s and the socket %s",
             lock, sock);
    lock_fds = fds_to(worker, lock);
    sock_fds = fds_to(worker, sock);
    st = tk_terminate(run, 30000);
    LEDGER_CHECK_LOG(lock_fds == 0 && sock_fds == 0, log,
                     "worker %d holds %d descriptor(s) of the lock file and "
                     "%d of the metrics socket", (int)worker, lock_fds,
                     sock_fds);
    LEDGER_CHECK_LOG(st == 0, log, "exactly run exited %d after SIGTERM", st);
    tk_note("[inherit] the worker holds neither the lock nor the metrics "
            "socket");
}

int main(void)
{
    char log[512];

    g_mock = tk_mock_start(1);
    tk_mock_create_topic(g_mock, TOPIC, N_PARTITIONS);
    tk_tmpdir("exactly-runlock", g_dir, sizeof g_dir);
    tk_pg_create_db("runlock", g_conninfo, sizeof g_conninfo);
    ledger_setup_db(g_conninfo);
    {
        char config[512];
        snprintf(config, sizeof config, "%s/migrate.yaml", g_dir);
        write_config(config, "migrate");
        snprintf(log, sizeof log, "%s/migrate.log", g_dir);
        ledger_migrate(config, log);
    }
    tk_note("logs in %s", g_dir);
    if (tk_wanted("symlink"))
        scenario_symlink();
    if (tk_wanted("opendir"))
        scenario_opendir();
    if (tk_wanted("name"))
        scenario_name();
    if (tk_wanted("default"))
        scenario_default();
    if (tk_wanted("inherit"))
        scenario_inherit();
    tk_mock_stop(g_mock);
    ledger_cleanup_dir(g_dir);
    printf("test_run_lock: ok\n");
    return 0;
}
