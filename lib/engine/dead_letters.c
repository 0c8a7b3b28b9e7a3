/*
 * dead_letters.c - the dead letters of the attempt in flight: each
 * message that is not applied (undecodable, failed by the handler, no
 * lookup row, isolated by the crash guard) with its reason, SQLSTATE and
 * trace-id, sent as one statement in the batch's own transaction, so a
 * dead letter exists exactly when the batch that skipped it committed.
 */
#include <stdio.h>

#include "digest.h"
#include "engine_internal.h"
#include "trace.h"

void engine_dl_reset(engine *e)
{
    engine_dead_letters *d = &e->dl;
    strbuf *all[] = {&d->offs,        &d->keys, &d->key_lens,
                     &d->key_digests, &d->ids,  &d->reasons,
                     &d->states,      &d->traces};
    size_t i;

    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        strbuf_reset(all[i]);
        strbuf_array_begin(all[i]);
    }
    d->count = 0;
}

void engine_dl_add(engine *e, const part *pt, int64_t offset, const void *key,
                   size_t key_len, const char *id, const char *reason,
                   const char *sqlstate)
{
    engine_dead_letters *d = &e->dl;
    char digest[EXACTLY_SHA256_HEX_LEN + 1];
    char trace[EXACTLY_TRACE_ID_SIZE] = "";
    const rd_kafka_message_t *m = engine_part_msg(pt, offset);

    strbuf_array_elem_int(&d->offs, (long long)offset);
    strbuf_array_elem_hex(&d->keys, key,
                          key_len < DL_KEY_PREFIX ? key_len : DL_KEY_PREFIX);
    if (key && exactly_sha256_hex(key, key_len, digest) == 0) {
        strbuf_array_elem_int(&d->key_lens, (long long)key_len);
        strbuf_array_elem_str(&d->key_digests, digest);
    } else {
        if (key)
            d->key_digests.oom = 1;
        strbuf_array_elem_str(&d->key_lens, NULL);
        strbuf_array_elem_str(&d->key_digests, NULL);
    }
    strbuf_array_elem_str(&d->ids, id);
    strbuf_array_elem_str(&d->reasons, reason);
    strbuf_array_elem_str(&d->states,
                          sqlstate && sqlstate[0] ? sqlstate : NULL);
    if (m)
        (void)exactly_trace_of_message(m, trace);
    strbuf_array_elem_str(&d->traces, trace[0] ? trace : NULL);
    d->count++;
}

void engine_dl_add_record(engine *e, const part *pt, const exactly_record *r,
                          const char *reason, const char *sqlstate)
{
    size_t i;

    for (i = 0; i < r->n_messages; i++)
        engine_dl_add(e, pt, r->messages[i].offset, r->messages[i].key,
                      r->messages[i].key_len, r->id, reason, sqlstate);
}

exactly_err engine_dl_send(engine *e, const part *pt, const char *part_s)
{
    engine_dead_letters *d = &e->dl;
    strbuf *cols[] = {&d->offs,        &d->keys, &d->key_lens,
                      &d->key_digests, &d->ids,  &d->reasons,
                      &d->states,      &d->traces};
    const char *params[11];
    size_t i;

    if (d->count == 0)
        return EXACTLY_OK;
    params[0] = e->dl_key ? e->dl_key : e->p->name;
    params[1] = pt->topic;
    params[2] = part_s;
    for (i = 0; i < sizeof(cols) / sizeof(cols[0]); i++) {
        strbuf_array_end(cols[i]);
        if (cols[i]->oom)
            return EXACTLY_ENOMEM;
        params[3 + i] = strbuf_str(cols[i]);
    }
    return exactly_txn_send(&e->txn, TXN_DEAD_LETTER, e->sql.dead_letter, 11,
                            params, NULL);
}

void engine_dl_free(engine_dead_letters *d)
{
    strbuf_free(&d->offs);
    strbuf_free(&d->keys);
    strbuf_free(&d->key_lens);
    strbuf_free(&d->key_digests);
    strbuf_free(&d->ids);
    strbuf_free(&d->reasons);
    strbuf_free(&d->states);
    strbuf_free(&d->traces);
    d->count = 0;
}
