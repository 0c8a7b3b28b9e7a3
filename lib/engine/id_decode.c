#include "id_decode.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A reason quotes at most this many bytes of the input, escaped, so a log
 * line or dead-letter reason can never carry a large or binary payload. */
#define QUOTE_MAX 32

static void quote_prefix(const unsigned char *p, size_t len, char *out,
                         size_t out_size)
{
    size_t o = 0;
    size_t i;

    for (i = 0; i < len && i < QUOTE_MAX && o + 5 < out_size; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\' && p[i] != '\'')
            out[o++] = (char)p[i];
        else
            o += (size_t)snprintf(out + o, out_size - o, "\\x%02x", p[i]);
    }
    if (i < len && o + 4 < out_size) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o < out_size ? o : out_size - 1] = '\0';
}

static exactly_err fail(char *reason, size_t reason_size, const char *what,
                        const void *data, size_t len)
{
    char q[QUOTE_MAX * 4 + 8];

    if (data && len > 0) {
        quote_prefix(data, len, q, sizeof(q));
        snprintf(reason, reason_size, "%s: '%s'", what, q);
    } else {
        snprintf(reason, reason_size, "%s", what);
    }
    return EXACTLY_EINVAL;
}

/* Writes v (negative when neg) as decimal into out; returns its length. */
static size_t put_decimal(uint64_t v, int neg, char *out)
{
    char tmp[24];
    size_t n = 0, o = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (neg)
        out[o++] = '-';
    while (n)
        out[o++] = tmp[--n];
    out[o] = '\0';
    return o;
}

/* Decodes an int8 written as digits with an optional sign ('-', or '+'
 * which only a non-canonical spelling has) into its canonical text in out
 * (at least 21 bytes). */
static exactly_err decode_bigint(const unsigned char *p, size_t len,
                                 char *out, size_t *out_len, int *as_is,
                                 char *reason, size_t rsize)
{
    size_t i = 0;
    int neg = 0;
    uint64_t v = 0;
    const uint64_t limit_pos = (uint64_t)INT64_MAX;

    if (p[0] == '-' || p[0] == '+') {
        neg = p[0] == '-';
        i = 1;
    }
    if (i == len)
        return fail(reason, rsize, "not a bigint", p, len);
    /* Leading zeros change nothing ("007" is 7), so only the digits after
     * them can overflow; the loop below checks each digit. */
    while (i + 1 < len && p[i] == '0')
        i++;
    /* Up to 18 digits cannot overflow int8: no range check per digit. */
    if (len - i <= 18) {
        for (; i < len; i++) {
            if (p[i] < '0' || p[i] > '9')
                return fail(reason, rsize, "not a bigint", p, len);
            v = v * 10 + (uint64_t)(p[i] - '0');
        }
    }
    for (; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return fail(reason, rsize, "not a bigint", p, len);
        if (v > (limit_pos + (uint64_t)neg - (uint64_t)(p[i] - '0')) / 10)
            return fail(reason, rsize, "bigint out of range", p, len);
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    /* Already canonical (no '+', no leading zero, not "-0"): the input
     * is the answer, no digits to print. */
    if (p[0] != '+' && !(p[neg] == '0' && len > (size_t)neg + 1) &&
        !(neg && v == 0)) {
        memcpy(out, p, len);
        out[len] = '\0';
        *out_len = len;
        *as_is = 1;
        return EXACTLY_OK;
    }
    /* -0 is 0; INT64_MIN's magnitude fits the unsigned v. */
    *out_len = put_decimal(v, neg && v != 0, out);
    return EXACTLY_OK;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (unsigned char)tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes 8-4-4-4-12 with hyphens, or 32 bare hex digits, any case, into
 * the canonical form (the caller decides whether another spelling may
 * stand). */
static exactly_err decode_uuid(const unsigned char *p, size_t len, char *buf,
                               char *reason, size_t rsize)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;
    size_t nd;
    int hyphens = (len == 36);

    if (len != 36 && len != 32)
        return fail(reason, rsize, "not a uuid", p, len);
    for (i = 0; i < len; i++) {
        if (hyphens && (i == 8 || i == 13 || i == 18 || i == 23)) {
            if (p[i] != '-')
                return fail(reason, rsize, "not a uuid", p, len);
            continue;
        }
        if (hexval(p[i]) < 0)
            return fail(reason, rsize, "not a uuid", p, len);
    }
    /* Second pass writes the canonical form; the first only validated. */
    nd = 0;
    for (i = 0; i < len; i++) {
        int v = hexval(p[i]);
        if (v < 0)
            continue;
        if (nd == 8 || nd == 13 || nd == 18 || nd == 23)
            buf[nd++] = '-';
        buf[nd++] = hex[v];
    }
    buf[36] = '\0';
    return EXACTLY_OK;
}

/* Strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF. */
static int valid_utf8(const unsigned char *p, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned char c = p[i];
        size_t n;
        uint32_t cp;

        if (c < 0x80) {
            if (c == 0)
                return 0;
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n >= len - i)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) ||
            (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}

/* Refuses a decoded ID whose bytes are not its canonical form (out),
 * naming that form, unless accept is set. */
static exactly_err check_canonical(cfg_id_type t, int accept,
                                   const unsigned char *p, size_t len,
                                   const char *out, size_t out_len,
                                   char *reason, size_t rsize)
{
    char what[96];

    if (accept || (out_len == len && memcmp(out, p, len) == 0))
        return EXACTLY_OK;
    snprintf(what, sizeof(what), "not canonical (%s %s)",
             exactly_id_type_name(t), out);
    return fail(reason, rsize, what, p, len);
}

exactly_err exactly_id_decode_to(cfg_id_type t, size_t max_len,
                                 int accept_non_canonical, const void *data,
                                 size_t len, char *out, size_t *out_len,
                                 char *reason, size_t reason_size)
{
    const unsigned char *p = data;
    exactly_err rc;

    out[0] = '\0';
    *out_len = 0;
    if (reason_size > 0)
        reason[0] = '\0';
    if (!data || len == 0)
        return fail(reason, reason_size, "empty id", NULL, 0);
    if (len > max_len) {
        char what[96];
        snprintf(what, sizeof(what), "id too long (%zu bytes, max %zu)", len,
                 max_len);
        return fail(reason, reason_size, what, data, len);
    }
    switch (t) {
    case CFG_ID_BIGINT:
    case CFG_ID_UUID:
    {
        int as_is = 0;
        if (t == CFG_ID_BIGINT) {
            rc = decode_bigint(p, len, out, out_len, &as_is, reason,
                               reason_size);
        } else {
            rc = decode_uuid(p, len, out, reason, reason_size);
            *out_len = 36;
        }
        if (rc != EXACTLY_OK) {
            out[0] = '\0';
            *out_len = 0;
            return rc;
        }
        /* The input copied as is is its own canonical form. */
        if (as_is)
            return EXACTLY_OK;
        rc = check_canonical(t, accept_non_canonical, p, len, out, *out_len,
                             reason, reason_size);
        if (rc != EXACTLY_OK) {
            out[0] = '\0';
            *out_len = 0;
        }
        return rc;
    }
    case CFG_ID_TEXT:
        /* Every valid text is canonical: there is no other spelling. */
        if (!valid_utf8(p, len))
            return fail(reason, reason_size,
                        "not valid UTF-8 text (or contains NUL)", data, len);
        memcpy(out, p, len);
        out[len] = '\0';
        *out_len = len;
        return EXACTLY_OK;
    }
    return fail(reason, reason_size, "unknown id type", NULL, 0);
}

exactly_err exactly_id_decode(cfg_id_type t, size_t max_len,
                              int accept_non_canonical, const void *data,
                              size_t len, char **out, char *reason,
                              size_t reason_size)
{
    char *buf;
    size_t n;
    exactly_err rc;

    *out = NULL;
    if (reason_size > 0)
        reason[0] = '\0';
    /* The length check comes first, so a huge input allocates nothing. */
    if (data && len > max_len)
        return exactly_id_decode_to(t, max_len, accept_non_canonical, data,
                                    len, (char[1]){0}, &n, reason,
                                    reason_size);
    buf = malloc(exactly_id_decode_room(len));
    if (!buf)
        return EXACTLY_ENOMEM;
    rc = exactly_id_decode_to(t, max_len, accept_non_canonical, data, len, buf,
                              &n, reason, reason_size);
    if (rc != EXACTLY_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    return EXACTLY_OK;
}
