/*
 * broken_open.c - a loader test: loads and validates cleanly, then refuses
 * in open(). The runtime must report the plugin's own errbuf sentence and
 * never call apply() or close() (there is no state to close).
 */
#include <stdio.h>

#include "exactly/exactly.h"

static exactly_err broken_open(const exactly_open_args *args, void **state)
{
    *state = NULL;
    snprintf(args->errbuf, args->errbuf_size,
             "broken_open: refusing to open on purpose");
    return EXACTLY_EPLUGIN;
}

static exactly_err broken_apply(void *state, exactly_txn *txn,
                                const exactly_batch *batch)
{
    /* Unreachable: open() never succeeds. */
    (void)state;
    (void)txn;
    (void)batch;
    return EXACTLY_EPLUGIN;
}

static const exactly_handler broken_open_handler = {
    EXACTLY_HANDLER_HEADER,
    .name = "broken_open",
    .description = "always refuses to open",
    .options = NULL,
    .n_options = 0,
    .skips_lookup = 0,
    .open = broken_open,
    .apply = broken_apply,
    .close = NULL,
};

EXACTLY_HANDLER(broken_open_handler)
