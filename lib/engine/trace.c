#include "trace.h"

#include <string.h>

static int lower_hex(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static int all_zero(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (s[i] != '0')
            return 0;
    return 1;
}

int exactly_trace_parse(const void *v, size_t len,
                        char out[EXACTLY_TRACE_ID_SIZE])
{
    const char *s = v;

    out[0] = '\0';
    /* 2 version, '-', 32 trace-id, '-', 16 parent-id, '-', 2 flags */
    if (!s || len < 55)
        return -1;
    if (!lower_hex(s, 2) || memcmp(s, "ff", 2) == 0 || s[2] != '-' ||
        !lower_hex(s + 3, 32) || all_zero(s + 3, 32) || s[35] != '-' ||
        !lower_hex(s + 36, 16) || all_zero(s + 36, 16) || s[52] != '-' ||
        !lower_hex(s + 53, 2))
        return -1;
    if (memcmp(s, "00", 2) == 0 ? len != 55 : len > 55 && s[55] != '-')
        return -1;
    memcpy(out, s + 3, 32);
    out[32] = '\0';
    return 0;
}

int exactly_trace_of_message(const rd_kafka_message_t *m,
                             char out[EXACTLY_TRACE_ID_SIZE])
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL, *v2 = NULL;
    size_t len = 0, len2 = 0;

    out[0] = '\0';
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR || !h)
        return -1;
    if (rd_kafka_header_get(h, 0, "traceparent", &v, &len) !=
        RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    /* Two traceparents contradict each other: neither is believed. */
    if (rd_kafka_header_get(h, 1, "traceparent", &v2, &len2) ==
        RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    return exactly_trace_parse(v, len, out);
}
