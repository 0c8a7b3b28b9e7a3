/*
 * txn_host.h - the calls a handler makes on its transaction, one for each
 * transaction entry of exactly_host (include/exactly/handler.h, where each
 * contract is stated). The table itself is the plugin layer's
 * (plugin/host.c): it adds the option getters and the log, which the
 * PostgreSQL layer does not know.
 */
#ifndef EXACTLY_TXN_HOST_H
#define EXACTLY_TXN_HOST_H

#include "txn.h"

exactly_err exactly_txn_host_exec(exactly_txn *t, const char *sql,
                                  int n_params, const char *const *params);
exactly_err exactly_txn_host_exec_params(exactly_txn *t, const char *sql,
                                         int n_params,
                                         const char *const *params,
                                         const int *lengths,
                                         const int *formats);
/* Queues the statement and syncs at once; a failure is remembered on t
 * (query_failed), so apply() cannot succeed past it. */
exactly_err exactly_txn_host_query(exactly_txn *t, const char *sql,
                                   int n_params, const char *const *params,
                                   exactly_result **result);
size_t exactly_txn_host_result_rows(const exactly_result *r);
size_t exactly_txn_host_result_columns(const exactly_result *r);
const char *exactly_txn_host_result_value(const exactly_result *r,
                                          size_t row, size_t col);
void exactly_txn_host_result_free(exactly_result *r);
void exactly_txn_host_fail_record(exactly_txn *t, size_t index,
                                  const char *reason);
void exactly_txn_host_fail_recordf(exactly_txn *t, size_t index,
                                   const char *fmt, ...);
void exactly_txn_host_set_error(exactly_txn *t, const char *fmt, ...);
const char *exactly_txn_host_query_error(const exactly_txn *t,
                                         const char **message);
/* Queues the outbox row (t->emit_sql) in phase TXN_HANDLER: it commits
 * with the batch or not at all. EXACTLY_EINVAL without an outbox. */
exactly_err exactly_txn_host_emit(exactly_txn *t, const char *topic,
                                  const void *key, size_t key_len,
                                  const void *value, size_t value_len,
                                  const char *const *headers);

#endif
