/*
 * dead_letters.c - the dead letters of one batch attempt, accumulated as
 * array literals and sent as one statement (dead_letters.h).
 */
#include "dead_letters.h"

#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "escape.h"
#include "trace.h"

/* The columns, in the order of the statement's parameters 4..11. */
#define DL_COLUMNS(d)                                                          \
    {&(d)->offs,        &(d)->keys, &(d)->key_lens,                            \
     &(d)->key_digests, &(d)->ids,  &(d)->reasons,                             \
     &(d)->states,      &(d)->traces}

void dead_letters_reset(dead_letters *d)
{
    strbuf *all[] = DL_COLUMNS(d);
    size_t i;

    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        strbuf_reset(all[i]);
        strbuf_array_begin(all[i]);
    }
    d->count = 0;
}

void dead_letters_add(dead_letters *d, const rd_kafka_message_t *m,
                      int64_t offset, const void *key, size_t key_len,
                      const char *id, const char *reason,
                      const char *sqlstate)
{
    char digest[EXACTLY_SHA256_HEX_LEN + 1];
    char trace[EXACTLY_TRACE_ID_SIZE] = "";
    char *valid = NULL;

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
    /* The one place every reason passes: text the database would refuse
     * (22021) must not make the batch fail over and over. */
    if (reason && !exactly_utf8_valid(reason, strlen(reason))) {
        valid = exactly_utf8_dup(reason);
        if (!valid)
            d->reasons.oom = 1;
        reason = valid;
    }
    strbuf_array_elem_str(&d->reasons, reason);
    free(valid);
    strbuf_array_elem_str(&d->states,
                          sqlstate && sqlstate[0] ? sqlstate : NULL);
    if (m)
        (void)exactly_trace_of_message(m, trace);
    strbuf_array_elem_str(&d->traces, trace[0] ? trace : NULL);
    d->count++;
}

exactly_err dead_letters_send(dead_letters *d, exactly_txn *txn,
                              const char *sql, const char *pipeline,
                              const char *topic, const char *part_s)
{
    strbuf *cols[] = DL_COLUMNS(d);
    const char *params[11];
    size_t i;

    if (d->count == 0)
        return EXACTLY_OK;
    params[0] = pipeline;
    params[1] = topic;
    params[2] = part_s;
    for (i = 0; i < sizeof(cols) / sizeof(cols[0]); i++) {
        strbuf_array_end(cols[i]);
        if (cols[i]->oom)
            return EXACTLY_ENOMEM;
        params[3 + i] = strbuf_str(cols[i]);
    }
    return exactly_txn_send(txn, TXN_DEAD_LETTER, sql, 11, params, NULL);
}

void dead_letters_free(dead_letters *d)
{
    strbuf *all[] = DL_COLUMNS(d);
    size_t i;

    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        strbuf_free(all[i]);
    d->count = 0;
}
