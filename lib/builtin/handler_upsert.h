/*
 * handler_upsert.h - the built-in `upsert` handler: YAML names a target
 * table, its conflict key and a mapping of target columns to looked-up
 * columns, and every batch becomes one INSERT ... ON CONFLICT statement.
 *
 * Options (both descriptors declare the same ones):
 *   table           string, required  target, "name" or "schema.name"
 *   key             list, required    the conflict key (target columns; a
 *                                     unique index on exactly these must
 *                                     exist)
 *   columns         map, required     target column -> source column
 *   delete_missing  bool, false       delete the target row of a record
 *                                     whose lookup found nothing (the key
 *                                     must be one column holding the ID)
 *
 * Two descriptors, because skips_lookup is a property of the descriptor:
 *
 *   exactly_builtin_upsert()        unfused: the runtime runs the lookup,
 *                                   and the looked-up rows travel back as
 *                                   one text[] parameter per column.
 *   exactly_builtin_upsert_fused()  skips_lookup = 1: the INSERT reads the
 *                                   lookup's source table itself
 *                                   (INSERT ... SELECT ... FROM source WHERE
 *                                   id = ANY($1)), so rows never leave the
 *                                   server. open() refuses it when the
 *                                   lookup is not a plain table read.
 *
 * exactly_builtin_upsert_extra(fused) gives the same two for an extra
 * writer (`exactly reprocess`, `exactly dlq replay`), which has no queue
 * behind it to correct a write from a stale read: the fused INSERT locks
 * the source rows it reads (FOR SHARE OF s) until the writer commits, as
 * the runtime's lookup does for the unfused form
 * (exactly_lookup_sql_shared).
 *
 * Both generate their SQL once in open() (see upsert_sql.h) and check it
 * with EXPLAIN in the setup transaction, so a missing unique index, an
 * unknown column or a type mismatch stops the worker at start-up rather
 * than failing every batch.
 */
#ifndef EXACTLY_HANDLER_UPSERT_H
#define EXACTLY_HANDLER_UPSERT_H

#include "exactly/handler.h"

const exactly_handler *exactly_builtin_upsert(void);
const exactly_handler *exactly_builtin_upsert_fused(void);
const exactly_handler *exactly_builtin_upsert_extra(int fused);

#endif
