/*
 * tk_files.c: temporary directories, reading and writing files, logs.
 * The contract of each function is in the header.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "testkit.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Files                                                               */
/* ------------------------------------------------------------------ */

void tk_write_file(const char *path, const char *fmt, ...)
{
    va_list ap;
    char *text;
    FILE *f;
    size_t len;

    va_start(ap, fmt);
    text = tk_vformat(fmt, ap);
    va_end(ap);
    f = fopen(path, "w");
    if (f == NULL)
        tk_fail("cannot create %s: %s", path, strerror(errno));
    len = strlen(text);
    if (fwrite(text, 1, len, f) != len || fclose(f) != 0)
        tk_fail("cannot write %s: %s", path, strerror(errno));
    free(text);
}

char *tk_read_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t len = 0, cap = 4096;
    char *buf = NULL, *grown;
    ssize_t r;

    if (fd < 0)
        return NULL;
    buf = malloc(cap);
    if (buf == NULL)
        goto oom;
    for (;;) {
        if (cap - len < 2048) {
            cap *= 2;
            grown = realloc(buf, cap);
            if (grown == NULL)
                goto oom;
            buf = grown;
        }
        r = read(fd, buf + len, cap - len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            tk_fail("reading %s: %s", path, strerror(errno));
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    return buf;
oom:
    tk_fail("out of memory reading %s", path);
}

int tk_file_contains(const char *path, const char *needle)
{
    char *text = tk_read_file(path);
    int found;

    if (text == NULL)
        return 0;
    found = strstr(text, needle) != NULL;
    free(text);
    return found;
}

char *tk_tmpdir(const char *prefix, char *out, size_t out_size)
{
    if ((size_t)snprintf(out, out_size, "/tmp/%s-XXXXXX",
                         prefix ? prefix : "tk") >= out_size)
        tk_fail("tk_tmpdir: buffer of %zu bytes too small", out_size);
    if (mkdtemp(out) == NULL)
        tk_fail("mkdtemp(%s): %s", out, strerror(errno));
    if (chmod(out, 0755) != 0)
        tk_fail("chmod(%s): %s", out, strerror(errno));
    return out;
}

static int tk_rm_one(const char *path, const struct stat *st, int type,
                     struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT)
        tk_note("cannot remove %s: %s", path, strerror(errno));
    return 0;
}

void tk_rm_rf(const char *path)
{
    struct stat st;

    if (lstat(path, &st) != 0)
        return;
    nftw(path, tk_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ------------------------------------------------------------------ */
/* Logs                                                                */
/* ------------------------------------------------------------------ */

void tk_cleanup_dir(const char *dir)
{
    const char *keep = getenv("EXACTLY_TEST_KEEP");

    if (keep && *keep) {
        tk_note("EXACTLY_TEST_KEEP: logs kept in %s", dir);
        return;
    }
    tk_rm_rf(dir);
}

int tk_log_count(const char *path, const char *needle)
{
    char *text = tk_read_file(path);
    const char *p;
    size_t len = strlen(needle);
    int n = 0;

    if (text == NULL || len == 0) {
        free(text);
        return 0;
    }
    for (p = strstr(text, needle); p; p = strstr(p + len, needle))
        n++;
    free(text);
    return n;
}

int64_t tk_log_last_int(const char *log, const char *key)
{
    char *text = tk_read_file(log);
    const char *last = NULL, *p;
    int64_t v = -1;

    if (text == NULL)
        return -1;
    for (p = strstr(text, key); p; p = strstr(p + 1, key))
        last = p;
    if (last)
        v = strtoll(last + strlen(key), NULL, 10);
    free(text);
    return v;
}

void tk_log_tail(const char *path, int lines)
{
    char *text = tk_read_file(path);
    const char *start;
    size_t len;
    int seen = 0;

    if (text == NULL) {
        fprintf(stderr, "---- %s: cannot be read ----\n", path);
        return;
    }
    len = strlen(text);
    start = text + len;
    /* Step back over `lines` newlines (ignoring a final one). */
    while (start > text) {
        if (start[-1] == '\n' && start != text + len && ++seen > lines)
            break;
        start--;
    }
    fprintf(stderr, "---- %s (last %d lines) ----\n%s%s---- end of %s ----\n",
            path, lines, start,
            len > 0 && text[len - 1] != '\n' ? "\n" : "", path);
    free(text);
}

int tk_wait_log(const char *log, const char *needle, int count,
                    pid_t pid, int timeout_ms, int *status)
{
    int64_t deadline = tk_now_ms() + timeout_ms;

    if (status)
        *status = -1;
    for (;;) {
        if (tk_log_count(log, needle) >= count)
            return 1;
        if (pid > 0) {
            int st = tk_wait(pid, 0);
            if (st != -1) {
                if (status)
                    *status = st;
                /* It may have written the line just before exiting. */
                return tk_log_count(log, needle) >= count;
            }
        }
        if (tk_now_ms() >= deadline)
            return 0;
        tk_sleep_ms(20);
    }
}
