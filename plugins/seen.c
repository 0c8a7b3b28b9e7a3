/* seen.c - remembers, per entity, the last offset that named it. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <exactly/exactly.h>

/*
 * CREATE TABLE seen (id text PRIMARY KEY, last_offset bigint NOT NULL,
 *                    source text);
 */
static const char upsert_sql[] =
    "INSERT INTO seen (id, last_offset, source) VALUES ($1, $2::bigint, $3) "
    "ON CONFLICT (id) DO UPDATE SET last_offset = EXCLUDED.last_offset, "
    "source = EXCLUDED.source";

typedef struct seen {
    const exactly_host *host;
    const char *source; /* option strings live until close() */
} seen;

static const exactly_option_decl seen_options[] = {
    {"source", EXACTLY_OPT_STRING, "kafka", "written into seen.source"},
};

static exactly_err seen_open(const exactly_open_args *args, void **state)
{
    seen *s = calloc(1, sizeof(*s));

    if (!s) {
        snprintf(args->errbuf, args->errbuf_size, "seen: out of memory");
        return EXACTLY_ENOMEM;
    }
    s->host = args->host;
    s->source = args->host->opt_string(args->opts, "source");
    *state = s;
    return EXACTLY_OK;
}

static exactly_err seen_apply(void *state, exactly_txn *txn,
                              const exactly_batch *batch)
{
    seen *s = state;

    for (size_t i = 0; i < batch->n_records; i++) {
        const exactly_record *r = &batch->records[i];
        char offset[24];
        const char *params[3];
        exactly_err rc;

        if (r->n_rows == 0) { /* only with on_missing: handler */
            s->host->fail_record(txn, i, "seen: entity has no row");
            continue;
        }
        snprintf(offset, sizeof(offset), "%" PRId64,
                 r->messages[r->n_messages - 1].offset);
        params[0] = r->id;  /* values always go as parameters */
        params[1] = offset;
        params[2] = s->source;
        rc = s->host->exec(txn, upsert_sql, 3, params);
        if (rc != EXACTLY_OK) {
            s->host->set_error(txn, "seen: cannot queue the upsert of %s",
                               r->id);
            return rc;
        }
    }
    return EXACTLY_OK;
}

static void seen_close(void *state) { free(state); }

static const exactly_handler seen_handler = {
    EXACTLY_HANDLER_HEADER,
    .name = "seen",
    .description = "remembers the last offset per entity",
    .options = seen_options,
    .n_options = sizeof(seen_options) / sizeof(seen_options[0]),
    .open = seen_open,
    .apply = seen_apply,
    .close = seen_close,
};

EXACTLY_HANDLER(seen_handler)
