/*
 * relay_kit: what the outbox relay's tests share: reading a whole topic
 * back with each record's event-id header, and running `exactly relay`.
 * Everything fails the test on error (testkit style).
 */
#ifndef EXACTLY_RELAY_KIT_H
#define EXACTLY_RELAY_KIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "testkit.h"

/* One record read back. */
typedef struct relay_rec {
    int32_t partition;
    int64_t offset;
    char key[64];        /* as text, cut; "" for a null key */
    char event_id[64];   /* the event-id header; "" when absent */
    int n_event_ids;     /* how many event-id headers it carried */
} relay_rec;

/* Reads every record of topic (partitions 0..partitions-1) from offset 0
 * up to the high watermarks, without a consumer group, in partition then
 * offset order. Returns a malloc'd array (the caller frees) and its length
 * in *n. Fails unless every low watermark is 0 (see ledger_check.h). */
relay_rec *relay_read_topic(const char *bootstraps, const char *topic,
                            int partitions, size_t *n);

/* Starts `exactly relay -c config [extra args...]` with output appended to
 * log; extra is NULL-terminated (NULL: none). */
pid_t relay_start(const char *config, const char *const *extra,
                  const char *log);

/* Runs `exactly relay -c config --exit-idle idle_ms` to its end within
 * timeout_ms; fails the test (showing the log) otherwise. Returns the exit
 * status. */
int relay_run_to_idle(const char *config, int idle_ms, int timeout_ms,
                      const char *log);

#endif
