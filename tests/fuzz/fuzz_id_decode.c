/*
 * fuzz_id_decode.c - libFuzzer target: the entity ID decoder.
 *
 * The first byte picks the type and whether non-canonical spellings are
 * accepted, the second the maximum length; the rest is the message's
 * bytes. Checked on every input: an accepted ID is NUL-terminated valid
 * output that decodes again to itself (the canonical form is a fixed
 * point) and is accepted in strict mode; a refusal has no ID and a short
 * reason of printable ASCII.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "id_decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_reason(const char *reason)
{
    size_t i, n = strlen(reason);

    if (n == 0 || n >= EXACTLY_ID_REASON_MAX)
        abort();
    for (i = 0; i < n; i++)
        if ((unsigned char)reason[i] < 0x20 || (unsigned char)reason[i] > 0x7e)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const cfg_id_type types[] = {CFG_ID_BIGINT, CFG_ID_TEXT,
                                        CFG_ID_UUID};
    char reason[EXACTLY_ID_REASON_MAX];
    char *out = NULL, *again = NULL;
    cfg_id_type t;
    int accept;
    size_t max_len;
    exactly_err rc;
    int64_t plain;

    if (size < 2)
        return 0;
    t = types[data[0] % 3];
    accept = (data[0] >> 2) & 1;
    max_len = (size_t)data[1] + 1;
    data += 2;
    size -= 2;

    rc = exactly_id_decode(t, max_len, accept, size ? data : NULL, size,
                           &out, reason, sizeof(reason));
    /* The batches' bigint fast path says yes only where the decoder
     * gives back the input itself. */
    if (t == CFG_ID_BIGINT && size <= max_len &&
        exactly_id_bigint_plain(size ? data : NULL, size, &plain) &&
        (rc != EXACTLY_OK || strlen(out) != size ||
         memcmp(out, data, size) != 0 || strtoll(out, NULL, 10) != plain))
        abort();
    if (rc != EXACTLY_OK) {
        if (out != NULL || rc != EXACTLY_EINVAL)
            abort();
        check_reason(reason);
        return 0;
    }
    if (!out || strlen(out) > (t == CFG_ID_TEXT ? size : 64))
        abort();
    /* The canonical form is accepted as it is, even in strict mode. */
    rc = exactly_id_decode(t, 65536, 0, out, strlen(out), &again, reason,
                           sizeof(reason));
    if (rc != EXACTLY_OK || strcmp(again, out) != 0)
        abort();
    /* Strict mode accepts exactly the canonical spellings. */
    if (!accept && (strlen(out) != size || memcmp(out, data, size) != 0))
        abort();
    free(again);
    free(out);
    return 0;
}
