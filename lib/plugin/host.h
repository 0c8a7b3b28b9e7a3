/*
 * host.h - the table of calls a handler receives (exactly_host,
 * include/exactly/handler.h): the log, the option getters
 * (plugin/options.c) and the calls on its transaction (pg/txn_host.c).
 */
#ifndef EXACTLY_PLUGIN_HOST_H
#define EXACTLY_PLUGIN_HOST_H

#include "exactly/handler.h"

/* The one table, static: valid for the life of the process. */
const exactly_host *exactly_plugin_host(void);

#endif
