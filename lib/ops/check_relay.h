/*
 * check_relay.h - the relay items of `exactly check` (check_relay.c).
 */
#ifndef EXACTLY_OPS_CHECK_RELAY_H
#define EXACTLY_OPS_CHECK_RELAY_H

#include <libpq-fe.h>

#include "config.h"
#include "ops/check_item.h"

/* Relay r's items (its grants and outbox when conn is
 * not NULL, its producer configuration, its topics, what it may not
 * share with the file's other relays). */
void check_relay(checker *ck, const exactly_config *cfg, const cfg_relay *r,
                 PGconn *conn);

#endif
