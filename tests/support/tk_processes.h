/*
 * tk_processes.h: spawning, waiting for, signalling and stopping child processes.
 * Part of testkit (testkit.h includes every part).
 */
#ifndef EXACTLY_TK_PROCESSES_H
#define EXACTLY_TK_PROCESSES_H

#include <sys/types.h>

#include "tk_checks.h"

/* ------------------------------------------------------------------ */
/* Processes                                                           */
/* ------------------------------------------------------------------ */


/* fork + execvp(argv[0], argv) with the environment inherited, stdin from
 * /dev/null, stdout and stderr appended to log_path (NULL: inherited).
 * The child gets SIGKILL if the test process dies, so a failing test
 * leaves nothing running. Call from the main thread. Fails the test if
 * fork fails; if exec fails the child writes why to the log and exits 127.
 * Returns the child's pid. */
pid_t tk_spawn(char *const argv[], const char *log_path);

/* Wait up to timeout_ms (< 0: forever) for pid to end and reap it. Returns
 * its exit status, 128 + N if signal N killed it (as the shell says), or -1
 * on timeout (the child is left running). */
int tk_wait(pid_t pid, int timeout_ms);

/* Send sig to pid. Returns 0, or -1 if the process is gone (ESRCH); other
 * errors fail the test. */
int tk_kill(pid_t pid, int sig);

/* Stop a child politely: SIGTERM, wait up to timeout_ms, then SIGKILL.
 * Returns what tk_wait() returned for the final wait. */
int tk_terminate(pid_t pid, int timeout_ms);

#endif /* EXACTLY_TK_PROCESSES_H */
