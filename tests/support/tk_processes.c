/*
 * tk_processes.c: spawning, waiting for, signalling and stopping children.
 * The contract of each function is in the header.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "testkit.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Processes                                                           */
/* ------------------------------------------------------------------ */

/* Write a string from the forked child, where stdio is off limits. */
static void tk_child_say(const char *a, const char *b, const char *c)
{
    const char *parts[3] = {a, b, c};
    size_t i;

    for (i = 0; i < 3; i++)
        if (write(STDERR_FILENO, parts[i], strlen(parts[i])) < 0)
            return;
}

pid_t tk_spawn(char *const argv[], const char *log_path)
{
    pid_t parent = getpid();
    pid_t pid;

    if (argv == NULL || argv[0] == NULL)
        tk_fail("tk_spawn: empty argv");
    fflush(NULL); /* or buffered output is written twice */
    pid = fork();
    if (pid < 0)
        tk_fail("fork: %s", strerror(errno));
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        static const int reset[] = {SIGPIPE, SIGINT, SIGTERM, SIGQUIT,
                                    SIGCHLD, SIGHUP, SIGUSR1, SIGUSR2};
        sigset_t none;
        size_t i;
        int fd;

        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (i = 0; i < sizeof reset / sizeof reset[0]; i++)
            signal(reset[i], SIG_DFL);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);
        fd = open("/dev/null", O_RDONLY);
        if (fd >= 0) {
            dup2(fd, STDIN_FILENO);
            if (fd != STDIN_FILENO)
                close(fd);
        }
        if (log_path != NULL) {
            fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                      0644);
            if (fd < 0) {
                tk_child_say("tk_spawn: cannot open log ", log_path, "\n");
                _exit(127);
            }
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        execvp(argv[0], argv);
        tk_child_say("tk_spawn: cannot execute ", argv[0], "\n");
        _exit(127);
    }
    return pid;
}

int tk_wait(pid_t pid, int timeout_ms)
{
    int64_t deadline = tk_now_ms() + timeout_ms;
    int status, pause_ms = 1;

    for (;;) {
        pid_t r = waitpid(pid, &status, timeout_ms < 0 ? 0 : WNOHANG);

        if (r == pid) {
            if (WIFEXITED(status))
                return WEXITSTATUS(status);
            if (WIFSIGNALED(status))
                return 128 + WTERMSIG(status);
            continue; /* stopped or continued: keep waiting */
        }
        if (r < 0 && errno != EINTR)
            tk_fail("waitpid(%ld): %s", (long)pid, strerror(errno));
        if (timeout_ms >= 0 && tk_now_ms() >= deadline)
            return -1;
        if (r == 0) {
            tk_sleep_ms(pause_ms);
            if (pause_ms < 20)
                pause_ms *= 2;
        }
    }
}

int tk_kill(pid_t pid, int sig)
{
    if (pid <= 0)
        tk_fail("tk_kill: refusing pid %ld", (long)pid);
    if (kill(pid, sig) == 0)
        return 0;
    if (errno == ESRCH)
        return -1;
    tk_fail("kill(%ld, %d): %s", (long)pid, sig, strerror(errno));
}

int tk_terminate(pid_t pid, int timeout_ms)
{
    int st;

    tk_kill(pid, SIGTERM);
    st = tk_wait(pid, timeout_ms);
    if (st != -1)
        return st;
    tk_note("pid %ld ignored SIGTERM for %d ms: SIGKILL", (long)pid,
            timeout_ms);
    tk_kill(pid, SIGKILL);
    return tk_wait(pid, 10000);
}
