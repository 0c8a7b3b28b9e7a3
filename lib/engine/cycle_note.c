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
 * out (TRACE_IDS_MAX * EXACTLY_TRACE_ID_SIZE bytes), once. 1: added. */
static int trace_list_add(char *out, const rd_kafka_message_t *m)
{
    char id[EXACTLY_TRACE_ID_SIZE];
    size_t len = strlen(out);

    if (!m || exactly_trace_of_message(m, id) != 0 || strstr(out, id) ||
        len + EXACTLY_TRACE_ID_SIZE > TRACE_IDS_MAX * EXACTLY_TRACE_ID_SIZE)
        return 0;
    snprintf(out + len, TRACE_IDS_MAX * EXACTLY_TRACE_ID_SIZE - len, "%s%s",
             len ? "," : "", id);
    return 1;
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

/* The batch whose traces the log lines name: found at the first line
 * written about it (reading a message's headers costs more than the rest
 * of its way through the cycle), from its messages still buffered, those
 * in [first, last]. A message dropped before that line (its batch
 * committed) is no longer read: where a line can follow a drop, the
 * traces are read at once (cycle_trace_batch). */
static struct {
    const part *pt;
    int64_t first, last;
    int pending; /* traces not read yet */
} g_batch;
/* The batch's trace-ids, kept while a record's own lines are written. */
static char g_batch_traces[TRACE_IDS_MAX * EXACTLY_TRACE_ID_SIZE];

static void batch_traces_read(void)
{
    const part *pt = g_batch.pt;
    size_t i, found = 0;

    g_batch.pending = 0;
    g_batch_traces[0] = '\0';
    for (i = 0; i < pt->n_buf && found < TRACE_IDS_MAX; i++) {
        const rd_kafka_message_t *m = pt->buf[i];
        if (m->offset > g_batch.last)
            break;
        if (m->offset >= g_batch.first)
            found += trace_list_add(g_batch_traces, m);
    }
}

static void batch_traces_fn(void *arg, char *out, size_t size)
{
    (void)arg;
    if (g_batch.pending)
        batch_traces_read();
    snprintf(out, size, "%s", g_batch_traces);
}

/* Every log line from here to the batch's end names the distinct
 * trace-ids of its first n messages (the first TRACE_IDS_MAX). They are
 * read when the first line is written, or at once when the cycle may drop
 * messages before its first line: a retry (the stored offset is read
 * again) or debug lines (the commit's line follows the drop). */
void cycle_trace_batch(const part *pt, size_t n)
{
    if (n > pt->n_buf)
        n = pt->n_buf;
    g_batch_traces[0] = '\0';
    g_batch.pt = pt;
    g_batch.pending = n > 0;
    if (n > 0) {
        g_batch.first = pt->buf[0]->offset;
        g_batch.last = pt->buf[n - 1]->offset;
    }
    if (g_batch.pending && pt->attempts == 0 &&
        !exactly_log_enabled(EXACTLY_LOG_DEBUG)) {
        exactly_log_set_trace_fn(batch_traces_fn, NULL);
        return;
    }
    if (g_batch.pending)
        batch_traces_read();
    exactly_log_set_trace(g_batch_traces);
}

/* Back to the batch's trace-ids after a record's lines. */
void cycle_trace_batch_again(void)
{
    if (g_batch.pending)
        exactly_log_set_trace_fn(batch_traces_fn, NULL);
    else
        exactly_log_set_trace(g_batch_traces);
}
