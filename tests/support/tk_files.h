/*
 * tk_files.h: temporary directories, reading and writing files, logs.
 * Part of testkit (testkit.h includes every part).
 */
#ifndef EXACTLY_TK_FILES_H
#define EXACTLY_TK_FILES_H

#include <stddef.h>
#include <sys/types.h>

#include "tk_checks.h"

/* ------------------------------------------------------------------ */
/* Files                                                               */
/* ------------------------------------------------------------------ */

/* Write a printf-formatted string to path (created or truncated). */
void tk_write_file(const char *path, const char *fmt, ...) TK_PRINTF(2, 3);

/* The whole file as a NUL-terminated malloc'd string, or NULL if it cannot
 * be opened. The caller frees. */
char *tk_read_file(const char *path);

/* 1 if the file exists and contains needle, else 0. */
int tk_file_contains(const char *path, const char *needle);

/* Create /tmp/<prefix>-XXXXXX (mode 0755) and write its path into out.
 * Fails the test on error. Returns out. */
char *tk_tmpdir(const char *prefix, char *out, size_t out_size);

/* Remove path and, for a directory, everything under it. Missing is fine. */
void tk_rm_rf(const char *path);

/* ------------------------------------------------------------------ */
/* Logs                                                                */
/* ------------------------------------------------------------------ */

/* Remove a test's temporary directory, unless EXACTLY_TEST_KEEP is set
 * (then say where it is, for reading the worker logs of a passing run). */
void tk_cleanup_dir(const char *dir);

/* How many times needle occurs in the file (0 if it cannot be read). */
int tk_log_count(const char *path, const char *needle);

/* Print the last `lines` lines of a log to stderr, framed with its path, so
 * that a failure shows what the worker said. */
void tk_log_tail(const char *path, int lines);

/* Wait until needle occurs at least `count` times in log. Returns 1 when it
 * does, 0 when timeout_ms passed or (pid > 0) the process exited first;
 * an exited pid is reaped and its status stored in *status if not NULL
 * (-1 while it runs). Polls every 20 ms: a condition, not a sleep. */
int tk_wait_log(const char *log, const char *needle, int count, pid_t pid,
                int timeout_ms, int *status);

/* The integer after the last occurrence of key (e.g. " rebalances=") in
 * the log, or -1 if key does not occur. */
int64_t tk_log_last_int(const char *log, const char *key);

#endif /* EXACTLY_TK_FILES_H */
