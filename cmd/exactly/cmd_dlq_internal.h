/*
 * cmd_dlq_internal.h - what cmd_dlq.c (arguments, list, show, discard)
 * and cmd_dlq_replay.c (replay) share.
 */
#ifndef EXACTLY_CMD_DLQ_INTERNAL_H
#define EXACTLY_CMD_DLQ_INTERNAL_H

#include <stddef.h>

#include <libpq-fe.h>

#include "config.h"
#include "ops/dlq.h"

/* Width of a reason cell in the tables. */
#define DLQ_REASON_WIDTH 60

/* What replay does, for --help (and the README says the same). */
extern const char dlq_replay_help[];

/* Runs the replay of s on conn and prints its outcome; the exit code. */
int dlq_do_replay(PGconn *conn, const exactly_config *cfg,
                  const cfg_pipeline *p, const ops_dlq_sel *s);

#endif
