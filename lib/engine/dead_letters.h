/*
 * dead_letters.h - the dead letters of one batch attempt: each message
 * that is not applied (undecodable, failed by the handler, no lookup row,
 * isolated by the crash guard) with its reason, SQLSTATE and trace-id,
 * accumulated as PostgreSQL array literals (one column each) and sent as
 * one statement in the batch's own transaction, so a dead letter exists
 * exactly when the batch that skipped it committed.
 *
 * A module of its own: it knows messages, a transaction and the SQL it is
 * given, nothing of the engine or its partitions.
 */
#ifndef EXACTLY_DEAD_LETTERS_H
#define EXACTLY_DEAD_LETTERS_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "strbuf.h"
#include "txn.h"

/* What a dead letter keeps of a message key: its first bytes, with the
 * length and SHA-256 of all of it, so that a batch of huge keys stays far
 * below PostgreSQL's message limit. */
#define DL_KEY_PREFIX 1024

typedef struct dead_letters {
    strbuf offs, keys, key_lens, key_digests, ids, reasons, states, traces;
    size_t count;
} dead_letters;

/* Empties d for a new attempt. */
void dead_letters_reset(dead_letters *d);

/* Adds the message at offset with key[0..key_len) (key may be NULL), the
 * record id (may be NULL), why it was not applied and the SQLSTATE (may
 * be NULL or ""). m, when not NULL, is the message itself: its trace-id
 * is kept. The reason is kept as well-formed UTF-8 (a byte that is not
 * part of it as \xNN), whatever a handler or the server wrote: the
 * database refuses other text, and with it the batch. Out of memory is
 * remembered and reported by dead_letters_send. */
void dead_letters_add(dead_letters *d, const rd_kafka_message_t *m,
                      int64_t offset, const void *key, size_t key_len,
                      const char *id, const char *reason,
                      const char *sqlstate);

/* Queues the insert of the accumulated dead letters of pipeline's topic
 * and partition (part_s, as text) into txn with the prepared statement
 * sql (nothing when there are none). EXACTLY_OK, EXACTLY_ENOMEM or the
 * txn's error. */
exactly_err dead_letters_send(dead_letters *d, exactly_txn *txn,
                              const char *sql, const char *pipeline,
                              const char *topic, const char *part_s);

void dead_letters_free(dead_letters *d);

#endif
