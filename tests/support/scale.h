/*
 * scale: what the scale and soak tests (many partitions, one huge batch,
 * steady load) need beyond testkit and ledger_check: a worker's memory as
 * the kernel counts it, and waits on the positions stored in PostgreSQL.
 *
 * Memory figures are in KiB, as /proc and getrusage(2) give them. In a
 * build with AddressSanitizer (scripts/test.sh's build-test) they include
 * its shadow memory and the quarantine of freed blocks, so they are far
 * above those of a release build; SCALE_SANITIZED says which one a test
 * (built with the same flags as the worker) is.
 *
 * Everything here fails the test on error (testkit style).
 */
#ifndef EXACTLY_TEST_SCALE_H
#define EXACTLY_TEST_SCALE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ledger_check.h"
#include "testkit.h"

#if defined(__SANITIZE_ADDRESS__)
#define SCALE_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SCALE_SANITIZED 1
#endif
#endif
#ifndef SCALE_SANITIZED
#define SCALE_SANITIZED 0
#endif

/* The value in KiB of a memory field of /proc/PID/status ("VmRSS",
 * "VmHWM", ...), or -1 when the process is gone (or a zombie, which has
 * none) or the field is missing. */
int64_t scale_proc_kib(pid_t pid, const char *field);

/* Wait up to timeout_ms (< 0: forever) for the child pid to end and reap
 * it with wait4(2). Returns what tk_wait() returns (the exit status, 128 +
 * N for signal N, -1 on timeout, the child left running) and stores in
 * *maxrss_kib the peak resident set of the child (ru_maxrss: the largest
 * of its own and of every descendant it reaped), or -1 on timeout. */
int scale_wait_rusage(pid_t pid, int timeout_ms, int64_t *maxrss_kib);

/* Sum of next_offset over the rows of pipeline and topic in
 * exactly.offsets (0 when there are none). */
int64_t scale_stored_total(PGconn *db, const char *pipeline,
                           const char *topic);

/* Wait until scale_stored_total() reaches want. Fails the test, printing
 * the tail of log, when timeout_ms pass first or when pid (> 0) exits
 * before (it is not reaped: scale_wait_rusage() can still read its
 * figures). Polls every 100 ms: a condition, not a sleep. */
void scale_wait_stored(PGconn *db, const char *pipeline, const char *topic,
                       int64_t want, pid_t pid, const char *log,
                       int timeout_ms);

/* The median of v[0 .. n) (n >= 1; the lower one of the middle two for an
 * even n). v is left as it was. */
int64_t scale_median(const int64_t *v, size_t n);

#endif /* EXACTLY_TEST_SCALE_H */
