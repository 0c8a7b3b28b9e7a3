/*
 * broken_abi.c - a loader test: a plausible handler built for the next
 * major ABI. The loader must refuse it by its abi_major, before calling
 * open() or anything else, with a sentence naming both versions.
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

static const exactly_handler broken_abi_handler = {
    .abi_tag = EXACTLY_ABI_TAG,
    .abi_major = EXACTLY_ABI_MAJOR + 1, /* the point of this plugin */
    .abi_minor = 0,
    .struct_size = (uint32_t)sizeof(exactly_handler),
    .name = "broken_abi",
    .description = "built for an ABI this exactly does not speak",
    .options = NULL,
    .n_options = 0,
    .skips_lookup = 0,
    .open = never_open,
    .apply = never_apply,
    .close = NULL,
};

EXACTLY_HANDLER(broken_abi_handler)
