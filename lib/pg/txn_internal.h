/*
 * txn_internal.h - what the files of the batch transaction share (txn.c:
 * its life and the reading of results at a sync; txn_send.c: queuing
 * statements and the prepared-statement cache). Not for other layers.
 */
#ifndef EXACTLY_TXN_INTERNAL_H
#define EXACTLY_TXN_INTERNAL_H

#include "txn.h"

/* Records the first error of the current sync (later ones are dropped):
 * phase, SQLSTATE (NULL: none) and message, its trailing newlines cut. */
void txn_set_error(exactly_txn *t, txn_phase phase, const char *sqlstate,
                   const char *msg);

/* Empties the prepared-statement cache: its statements belong to a
 * session that is gone or no longer trusted. */
void txn_forget_prepared(exactly_txn *t);

#endif
