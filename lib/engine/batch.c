#include "batch.h"
#include "batch_internal.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "fault.h"
#include "id_decode.h"

#define EMPTY_SLOT UINT32_MAX
/* Bytes of decoded IDs a batch may reserve without measuring them. */
#define ARENA_BOUND ((size_t)1 << 20)

int batch_grow(void **p, size_t *cap, size_t need, size_t size)
{
    size_t c;
    void *q;

    if (need <= *cap)
        return 0;
    c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    q = realloc(*p, c * size);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

static void clear_msgs(batch_builder *b)
{
    b->n_msgs = 0;
    b->n_ids = 0;
    b->n_records = 0;
}

/* Room for n IDs and their values: a batch of n messages has at most n
 * IDs, so interning them never grows anything. */
static int reserve_ids(batch_builder *b, size_t n)
{
    size_t cap = b->cap_ids;

    if (n <= b->cap_ids)
        return 0;
    if (batch_grow((void **)&b->ids, &cap, n, sizeof(char *)))
        return -1;
    cap = b->cap_ids;
    if (batch_grow((void **)&b->id_vals, &cap, n, sizeof(int64_t)))
        return -1;
    b->cap_ids = cap;
    return 0;
}

/* The ID's index in b->ids, adding it if new (reserve_ids made room). */
static size_t intern(batch_builder *b, char *id)
{
    size_t mask = b->n_slots - 1;
    size_t h = (size_t)exactly_hash_str(id) & mask;

    while (b->slots[h] != EMPTY_SLOT) {
        if (strcmp(b->ids[b->slots[h]], id) == 0)
            return b->slots[h];
        h = (h + 1) & mask;
    }
    b->ids[b->n_ids] = id; /* borrowed from the batch_msg */
    b->slots[h] = (uint32_t)b->n_ids;
    return b->n_ids++;
}

static size_t hash_i64(int64_t v)
{
    /* Fibonacci hashing, high bits folded down: the mask keeps low ones. */
    uint64_t x = (uint64_t)v * 0x9e3779b97f4a7c15ULL;
    return (size_t)(x ^ (x >> 32));
}

/* intern() for a bigint ID: by its value v, id its canonical text. */
static inline size_t intern_i64(batch_builder *b, char *id, int64_t v)
{
    size_t mask = b->n_slots - 1;
    size_t h = hash_i64(v) & mask;

    while (b->slots[h] != EMPTY_SLOT) {
        if (b->id_vals[b->slots[h]] == v)
            return b->slots[h];
        h = (h + 1) & mask;
    }
    b->ids[b->n_ids] = id;
    b->id_vals[b->n_ids] = v;
    b->slots[h] = (uint32_t)b->n_ids;
    return b->n_ids++;
}

/* The value of a bigint text; *ok 0 when it is not one. Only for the
 * value: whether the text is canonical is not checked here. */
static int64_t bigint_value(const char *s, int *ok)
{
    int64_t v;
    char *end;

    *ok = 1;
    if (exactly_id_bigint_plain(s, strlen(s), &v))
        return v;
    /* 19 digits: strtoll is exact within int8 and says when outside. */
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        *ok = 0;
    return v;
}

size_t batch_lookup_id(const batch_builder *b, const char *id)
{
    size_t mask = b->n_slots - 1;
    size_t h;

    if (b->p->id.type == CFG_ID_BIGINT) {
        int ok;
        int64_t v = bigint_value(id, &ok);
        if (!ok)
            return SIZE_MAX;
        /* Found by value, matched as text: a row's key is compared with
         * the canonical ID exactly, as for every other type ("007" is no
         * row of 7). */
        for (h = hash_i64(v) & mask; b->slots[h] != EMPTY_SLOT;
             h = (h + 1) & mask)
            if (b->id_vals[b->slots[h]] == v)
                return strcmp(b->ids[b->slots[h]], id) == 0 ? b->slots[h]
                                                             : SIZE_MAX;
        return SIZE_MAX;
    }
    for (h = (size_t)exactly_hash_str(id) & mask; b->slots[h] != EMPTY_SLOT;
         h = (h + 1) & mask)
        if (strcmp(b->ids[b->slots[h]], id) == 0)
            return b->slots[h];
    return SIZE_MAX;
}

static int source_bytes(const rd_kafka_message_t *m, cfg_id_from from,
                        const char *header, const void **data, size_t *len)
{
    rd_kafka_headers_t *hdrs = NULL;

    switch (from) {
    case CFG_FROM_KEY:
        *data = m->key;
        *len = m->key_len;
        return 0;
    case CFG_FROM_VALUE:
        *data = m->payload;
        *len = m->len;
        return 0;
    case CFG_FROM_HEADER:
        /* rd_kafka_message_headers() parses lazily; the message is const
         * to us but librdkafka caches the parse inside it. */
        if (rd_kafka_message_headers((rd_kafka_message_t *)m, &hdrs) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
            rd_kafka_header_get_last(hdrs, header, data, len) !=
                RD_KAFKA_RESP_ERR_NO_ERROR)
            return -1;
        return 0;
    }
    return -1;
}

/* Sizes the builder for n messages: the message slots, the IDs, the ID
 * hash (emptied) and the arena, which is sized up front so that pointers into
 * it stay put: each ID needs at most exactly_id_decode_room() bytes, each
 * digest its hex and a NUL. */
static exactly_err build_reserve(batch_builder *b, const cfg_pipeline *p,
                                 rd_kafka_message_t *const *msgs, size_t n)
{
    size_t i;
    size_t slots = 16;
    size_t need = 0;

    if (batch_grow((void **)&b->msgs, &b->cap_msgs, n, sizeof(batch_msg)) ||
        reserve_ids(b, n))
        return EXACTLY_ENOMEM;
    while (slots < n * 2)
        slots *= 2;
    if (n >= EMPTY_SLOT)
        return EXACTLY_ENOMEM; /* the slots index 32 bits */
    if (slots > b->cap_slots) {
        uint32_t *s = realloc(b->slots, slots * sizeof(*s));
        if (!s)
            return EXACTLY_ENOMEM;
        b->slots = s;
        b->cap_slots = slots;
    }
    /* Only the slots this batch uses are emptied: a batch after a large
     * one does not pay for the large one's table. */
    b->n_slots = slots;
    memset(b->slots, 0xff, b->n_slots * sizeof(*b->slots));
    /* When every ID at the longest allowed fits in ARENA_BOUND bytes,
     * that bound is the size and no message is looked at; otherwise each
     * one's own. */
    if (p->id.max_length < ARENA_BOUND &&
        n <= ARENA_BOUND / exactly_id_decode_room(p->id.max_length)) {
        need = n * exactly_id_decode_room(p->id.max_length);
    } else {
        for (i = 0; i < n; i++) {
            const void *data = NULL;
            size_t len = 0;
            if (source_bytes(msgs[i], p->id.from, p->id.header, &data,
                             &len) == 0 &&
                len <= p->id.max_length)
                need += exactly_id_decode_room(len);
        }
    }
    if (p->dedup.enabled)
        need += n * (EXACTLY_SHA256_HEX_LEN + 1);
    if (need > b->arena_cap) {
        char *a = realloc(b->arena, need);
        if (!a)
            return EXACTLY_ENOMEM;
        b->arena = a;
        b->arena_cap = need;
    }
    return EXACTLY_OK;
}

/* Why a message has no ID bytes (source_bytes failed, or gave NULL). */
static void no_id_reason(batch_msg *bm, const cfg_pipeline *p, int missing)
{
    if (missing)
        snprintf(bm->reason, sizeof(bm->reason), "header '%s' missing",
                 p->id.header);
    else if (p->id.from == CFG_FROM_HEADER)
        /* Null (absent on the wire) is not empty (zero bytes): a producer
         * that sent no key needs another fix than one that sent an empty
         * one. */
        snprintf(bm->reason, sizeof(bm->reason), "header '%s' is null",
                 p->id.header);
    else
        snprintf(bm->reason, sizeof(bm->reason), "the %s is null",
                 p->id.from == CFG_FROM_VALUE ? "value" : "key");
    bm->dead = 1;
}

/* Decodes bm's ID into the arena at *used and interns it; a message
 * whose ID does not decode is dead, with its reason. Then its dedup key's
 * digest. EXACTLY_OK or EXACTLY_ENOMEM. */
static exactly_err decode_msg(batch_builder *b, const cfg_pipeline *p,
                              batch_msg *bm, size_t *used)
{
    const void *data = NULL;
    size_t len = 0;
    size_t id_len = 0;
    int64_t v;
    int missing = source_bytes(bm->rk, p->id.from, p->id.header, &data, &len);

    if (missing || !data) {
        no_id_reason(bm, p, missing);
    } else if (len <= p->id.max_length &&
               exactly_id_decode_room(len) > b->arena_cap - *used) {
        return EXACTLY_ENOMEM; /* cannot happen: sized above */
    } else if (p->id.type == CFG_ID_BIGINT && len <= p->id.max_length &&
               exactly_id_bigint_copy(b->arena + *used, data, len, &v)) {
        /* The common case: the bytes are the canonical ID, as the general
         * decoder would find, and now copied. */
        bm->id = b->arena + *used;
        *used += len + 1;
        bm->id_index = intern_i64(b, bm->id, v);
        if (bm->id_index == SIZE_MAX)
            return EXACTLY_ENOMEM;
    } else if (exactly_id_decode_to(
                   p->id.type, p->id.max_length,
                   p->id.non_canonical == CFG_NONCANON_ACCEPT, data, len,
                   len <= p->id.max_length ? b->arena + *used : (char[1]){0},
                   &id_len, bm->reason, sizeof(bm->reason)) != EXACTLY_OK) {
        if (!bm->reason[0])
            return EXACTLY_ENOMEM;
        bm->dead = 1;
    } else {
        int ok = 1;
        bm->id = b->arena + *used;
        *used += id_len + 1;
        if (p->id.type == CFG_ID_BIGINT) {
            v = bigint_value(bm->id, &ok);
            bm->id_index = ok ? intern_i64(b, bm->id, v) : SIZE_MAX;
        } else {
            bm->id_index = intern(b, bm->id);
        }
        if (bm->id_index == SIZE_MAX)
            return EXACTLY_ENOMEM;
    }
    /* An empty or missing key is no key: such a message is applied
     * without dedup, never dropped as a duplicate of another. The key is
     * stored as its digest, a fixed size whatever it holds. */
    if (p->dedup.enabled && !bm->dead &&
        source_bytes(bm->rk, p->dedup.from, p->dedup.header, &data, &len) == 0 &&
        data && len > 0) {
        if (EXACTLY_SHA256_HEX_LEN + 1 > b->arena_cap - *used)
            return EXACTLY_ENOMEM;
        bm->dedup_hex = b->arena + *used;
        *used += EXACTLY_SHA256_HEX_LEN + 1;
        if (exactly_sha256_hex(data, len, bm->dedup_hex) != 0)
            return EXACTLY_ENOMEM;
    }
    return EXACTLY_OK;
}

/* Dedup keys: the first occurrence in the batch is the candidate (in
 * dedup_keys and dedup_offs); a later one with the same key is a
 * duplicate already. */
static exactly_err dedup_candidates(batch_builder *b)
{
    size_t i;

    strbuf_array_begin(&b->dedup_offs);
    if (strset_reset(&b->dedup_set, b->n_msgs) != 0)
        return EXACTLY_ENOMEM;
    for (i = 0; i < b->n_msgs; i++) {
        batch_msg *bm = &b->msgs[i];
        int added;
        if (!bm->dedup_hex)
            continue;
        added = strset_add(&b->dedup_set, bm->dedup_hex);
        if (added < 0)
            return EXACTLY_ENOMEM;
        if (!added) {
            bm->duplicate = 1;
            continue;
        }
        strbuf_array_elem_str(&b->dedup_keys, bm->dedup_hex);
        strbuf_array_elem_int(&b->dedup_offs, (long long)bm->rk->offset);
    }
    strbuf_array_end(&b->dedup_offs);
    return EXACTLY_OK;
}

exactly_err batch_build(batch_builder *b, const cfg_pipeline *p,
                        rd_kafka_message_t *const *msgs, size_t n)
{
    size_t i;
    size_t used = 0;
    exactly_err rc;

    clear_msgs(b);
    b->p = p;
    if (EXACTLY_FAULT("batch_build"))
        return EXACTLY_ENOMEM;
    rc = build_reserve(b, p, msgs, n);
    if (rc != EXACTLY_OK)
        return rc;
    strbuf_reset(&b->dedup_keys);
    strbuf_reset(&b->dedup_offs);
    strbuf_array_begin(&b->dedup_keys);
    for (i = 0; i < n; i++) {
        batch_msg *bm = &b->msgs[i];

        /* Field by field: the reason buffer is written only on failure. */
        bm->rk = msgs[i];
        bm->id = NULL;
        bm->id_index = SIZE_MAX;
        bm->reason[0] = '\0';
        bm->dedup_hex = NULL;
        bm->duplicate = 0;
        bm->dead = 0;
        bm->record = 0;
        b->n_msgs = i + 1;
        rc = decode_msg(b, p, bm, &used);
        if (rc != EXACTLY_OK)
            return rc;
    }
    if (p->dedup.enabled && (rc = dedup_candidates(b)) != EXACTLY_OK)
        return rc;
    strbuf_array_end(&b->dedup_keys);
    b->ids_data = NULL;
    b->ids_len = 0;
    if (b->dedup_keys.oom || b->dedup_offs.oom)
        return EXACTLY_ENOMEM;
    return EXACTLY_OK;
}

exactly_err batch_ids_param(batch_builder *b)
{
    size_t i;

    pgarray_begin(&b->ids_param,
                  pgarray_oid_of(exactly_id_type_name(b->p->id.type)));
    if (b->p->id.type == CFG_ID_BIGINT) {
        /* The values decoding found: no text to parse again. */
        pgarray_add_int8s(&b->ids_param, b->id_vals, b->n_ids);
    } else {
        for (i = 0; i < b->n_ids; i++)
            if (pgarray_add_text_as(&b->ids_param, b->ids[i],
                                    strlen(b->ids[i])) != 0)
                return EXACTLY_ENOMEM; /* not canonical: cannot happen */
    }
    b->ids_data = pgarray_finish(&b->ids_param, &b->ids_len);
    return b->ids_data ? EXACTLY_OK : EXACTLY_ENOMEM;
}

exactly_err batch_apply_dedup(batch_builder *b, const PGresult *res)
{
    size_t i;
    int r;

    if (!res)
        return EXACTLY_OK;
    /* The keys the insert returned are the new ones; every other candidate
     * was seen in an earlier batch. */
    if (strset_reset(&b->dedup_set, (size_t)PQntuples(res)) != 0)
        return EXACTLY_ENOMEM;
    for (r = 0; r < PQntuples(res); r++)
        if (strset_add(&b->dedup_set, PQgetvalue(res, r, 0)) < 0)
            return EXACTLY_ENOMEM;
    for (i = 0; i < b->n_msgs; i++) {
        batch_msg *bm = &b->msgs[i];
        if (bm->dedup_hex && !bm->duplicate &&
            !strset_has(&b->dedup_set, bm->dedup_hex))
            bm->duplicate = 1;
    }
    return EXACTLY_OK;
}

void batch_free(batch_builder *b)
{
    if (!b)
        return;
    clear_msgs(b);
    free(b->msgs);
    free(b->ids);
    free(b->id_vals);
    free(b->slots);
    free(b->records);
    free(b->rec_vals);
    free(b->rec_msgs);
    free(b->values);
    free(b->colnames);
    free(b->scratch);
    free(b->arena);
    pgarray_free(&b->ids_param);
    strbuf_free(&b->dedup_keys);
    strbuf_free(&b->dedup_offs);
    strset_free(&b->dedup_set);
    memset(b, 0, sizeof(*b));
}
