/*
 * broken_minor.c - a loader test: a handler built against a newer minor
 * version of the ABI than this exactly speaks. Such a plugin may read
 * members that this host does not have (batch->reprocess_run was added in
 * ABI 1.1: a 1.1 plugin on a 1.0 host reads past the host's struct), so
 * the loader must refuse it before calling open(), naming both versions.
 */
#include "exactly/exactly.h"

static exactly_err never_open(const exactly_open_args *args, void **state)
{
    (void)args;
    *state = NULL;
    return EXACTLY_EPLUGIN;
}

static exactly_err never_apply(void *state, exactly_txn *txn,
                               const exactly_batch *batch)
{
    (void)state;
    (void)txn;
    (void)batch;
    return EXACTLY_EPLUGIN;
}

static const exactly_handler broken_minor_handler = {
    .abi_tag = EXACTLY_ABI_TAG,
    .abi_major = EXACTLY_ABI_MAJOR,
    .abi_minor = EXACTLY_ABI_MINOR + 1, /* the point of this plugin */
    .struct_size = (uint32_t)sizeof(exactly_handler),
    .name = "broken_minor",
    .description = "built for a newer minor ABI than this exactly speaks",
    .options = NULL,
    .n_options = 0,
    .skips_lookup = 0,
    .open = never_open,
    .apply = never_apply,
    .close = NULL,
};

EXACTLY_HANDLER(broken_minor_handler)
