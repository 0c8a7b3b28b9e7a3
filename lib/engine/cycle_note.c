/*
 * cycle_note.c - what every step of a batch cycle uses, below them all:
 * the failure's note, dead letters of buffered messages, and the
 * trace-ids its log lines name. Calls nothing of the cycle's steps.
 */
#include <stdio.h>
#include <string.h>

#include "cycle_internal.h"
#include "log.h"
#include "trace.h"

/* Records why the attempt failed. */
void cycle_note(cycle *c, const char *sqlstate, const char *msg)
{
    exactly_error_note(&c->err, sqlstate, msg);
}

/* ---- dead letters ------------------------------------------------------- */

/* A message of the batch goes to the dead letters, with its trace-id
 * (the buffered message at offset, when there is one). */
void cycle_dl_message(cycle *c, int64_t offset, const void *key,
                       size_t key_len, const char *id, const char *reason)
{
    dead_letters_add(&c->e->dl, engine_part_msg(c->pt, offset), offset, key,
                     key_len, id, reason, NULL);
}

/* Every message of record r goes to the dead letters. */
void cycle_dl_record(cycle *c, const exactly_record *r, const char *reason,
                      const char *sqlstate)
{
    size_t i;

    for (i = 0; i < r->n_messages; i++)
        dead_letters_add(&c->e->dl, engine_part_msg(c->pt, r->messages[i].offset),
                         r->messages[i].offset, r->messages[i].key,
                         r->messages[i].key_len, r->id, reason, sqlstate);
}

/* ---- trace context ----------------------------------------------------- */

/* At most this many distinct trace-ids name one batch in its log lines. */
#define TRACE_IDS_MAX 8

/* Adds the trace-id of m, when it has one, to the comma-separated list
 * out (TRACE_IDS_MAX * EXACTLY_TRACE_ID_SIZE bytes), once. */
static void trace_list_add(char *out, const rd_kafka_message_t *m)
{
    char id[EXACTLY_TRACE_ID_SIZE];
    size_t len = strlen(out);

    if (!m || exactly_trace_of_message(m, id) != 0 || strstr(out, id) ||
        len + EXACTLY_TRACE_ID_SIZE > TRACE_IDS_MAX * EXACTLY_TRACE_ID_SIZE)
        return;
    snprintf(out + len, TRACE_IDS_MAX * EXACTLY_TRACE_ID_SIZE - len, "%s%s",
             len ? "," : "", id);
}

/* The log lines about one record name the traces of its messages alone;
 * trace_batch() puts the batch's back. */
void cycle_trace_record(const part *pt, const exactly_record *r)
{
    char ids[TRACE_IDS_MAX * EXACTLY_TRACE_ID_SIZE] = "";
    size_t i;

    for (i = 0; i < r->n_messages; i++)
        trace_list_add(ids, engine_part_msg(pt, r->messages[i].offset));
    exactly_log_set_trace(ids);
}

/* The batch's trace-ids, kept while a record's own lines are written. */
static char g_batch_traces[TRACE_IDS_MAX * EXACTLY_TRACE_ID_SIZE];

/* Every log line from here to the batch's end names the distinct
 * trace-ids of its first n messages (the first TRACE_IDS_MAX). */
void cycle_trace_batch(const part *pt, size_t n)
{
    size_t i;

    g_batch_traces[0] = '\0';
    for (i = 0; i < n && i < pt->n_buf; i++)
        trace_list_add(g_batch_traces, pt->buf[i]);
    exactly_log_set_trace(g_batch_traces);
}

/* Back to the batch's trace-ids after a record's lines. */
void cycle_trace_batch_again(void) { exactly_log_set_trace(g_batch_traces); }
