/*
 * testkit: the harness every exactly test is written with.
 *
 * A test is one process. It checks with TK_CHECK*, which on failure print
 * "FAIL: file:line: message" to stderr and exit(1); tk_skip() prints
 * "SKIP: reason" and exits 77, which CTest reports as skipped
 * (SKIP_RETURN_CODE 77). No function here returns an error code for a
 * failure of the harness itself: a database that refuses a statement or a
 * message that is not delivered fails the test on the spot, naming the
 * caller's file and line where the function is a macro.
 *
 * Services (see DESIGN.md section 7):
 *   - PostgreSQL: the cluster that scripts/pg.sh started for CTest's `pg`
 *     fixture; its directory is EXACTLY_TEST_PG_DIR. Each test creates its
 *     own database with tk_pg_create_db().
 *   - Kafka: librdkafka's mock cluster, started in the test process with
 *     tk_mock_start() and reached over TCP on loopback, so child processes
 *     (the exactly binary) reach it too.
 *
 * The parts, one header and one source file per service: tk_checks,
 * tk_pg, tk_kafka, tk_processes, tk_files, tk_http; tk_config writes a
 * worker's YAML configuration and tk_runner runs exactly with it.
 *
 * Strings returned as `const char *` are owned by testkit and live until
 * the owning object is stopped (or, for process-wide values, until exit).
 * Everything else the caller frees as documented.
 */
#ifndef EXACTLY_TESTKIT_H
#define EXACTLY_TESTKIT_H

#include "tk_checks.h"
#include "tk_pg.h"
#include "tk_kafka.h"
#include "tk_processes.h"
#include "tk_files.h"
#include "tk_http.h"
#include "tk_config.h"
#include "tk_runner.h"

#endif /* EXACTLY_TESTKIT_H */
