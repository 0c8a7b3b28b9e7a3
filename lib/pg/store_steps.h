/*
 * store_steps.h - the framework schema's steps (store_migrate.c), as the
 * runner (store_migrate_run.c) applies them.
 */
#ifndef EXACTLY_STORE_STEPS_H
#define EXACTLY_STORE_STEPS_H

#include <stddef.h>

/* How many steps there are: the version a migrated schema is at. */
size_t store_steps_count(void);

/* Step i (0-based; it makes version i + 1): its DDL, with %1$s for the
 * quoted schema; NULL past the last. */
const char *store_step_sql(size_t i);

/* The index step i builds: its name when the step is one CREATE INDEX
 * CONCURRENTLY IF NOT EXISTS (its text starts with exactly those words),
 * to run outside any transaction; NULL for a step of transactional DDL. */
const char *store_step_index(size_t i);

/* For such a step: the step (1-based) that creates the table the index is
 * on; 0 for a step of transactional DDL. */
size_t store_step_index_table(size_t i);

#endif
