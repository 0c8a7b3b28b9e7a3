/*
 * host.c - assembles the table of calls a handler receives. Each entry is
 * implemented by the layer that owns it: the log (util/log.c), the option
 * getters (plugin/options.c) and the calls on the transaction
 * (pg/txn_host.c); the PostgreSQL layer itself knows nothing of plugins.
 */
#include "host.h"

#include "log.h"
#include "options.h"
#include "pg/txn_host.h"

static const exactly_host host_table = {
    .size = sizeof(exactly_host),
    .log = exactly_log_handler,
    .opt_string = exactly_options_string,
    .opt_int = exactly_options_int,
    .opt_bool = exactly_options_bool,
    .opt_list = exactly_options_list,
    .opt_map = exactly_options_map,
    .exec = exactly_txn_host_exec,
    .query = exactly_txn_host_query,
    .result_rows = exactly_txn_host_result_rows,
    .result_columns = exactly_txn_host_result_columns,
    .result_value = exactly_txn_host_result_value,
    .result_free = exactly_txn_host_result_free,
    .fail_record = exactly_txn_host_fail_record,
    .set_error = exactly_txn_host_set_error,
    .emit = exactly_txn_host_emit,
    .fail_recordf = exactly_txn_host_fail_recordf,
    .exec_params = exactly_txn_host_exec_params,
    .query_error = exactly_txn_host_query_error,
};

const exactly_host *exactly_plugin_host(void) { return &host_table; }
