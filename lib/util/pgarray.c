#include "pgarray.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HEADER 20 /* ndim, has-null flag, element oid, length, lower bound */

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Room for need more bytes; NULL when out of memory. */
static unsigned char *room(pgarray *a, size_t need)
{
    size_t cap;
    unsigned char *p;

    if (a->oom)
        return NULL;
    if (a->len + need > a->cap) {
        cap = a->cap ? a->cap : 4096;
        while (cap < a->len + need)
            cap *= 2;
        p = realloc(a->data, cap);
        if (!p) {
            a->oom = 1;
            return NULL;
        }
        a->data = p;
        a->cap = cap;
    }
    p = a->data + a->len;
    a->len += need;
    return p;
}

void pgarray_begin(pgarray *a, uint32_t elem_oid)
{
    a->len = 0;
    a->n = 0;
    a->has_null = 0;
    a->oom = 0;
    a->elem_oid = elem_oid;
    (void)room(a, HEADER);
}

void pgarray_add_int8(pgarray *a, int64_t v)
{
    pgarray_add_int8s(a, &v, 1);
}

void pgarray_add_int8s(pgarray *a, const int64_t *v, size_t n)
{
    unsigned char *p;
    size_t i;

    if (n > SIZE_MAX / 12) {
        a->oom = 1;
        return;
    }
    p = room(a, 12 * n);
    if (!p)
        return;
    for (i = 0; i < n; i++, p += 12) {
        /* Each element: its length, then its value in network order. */
        uint64_t u = (uint64_t)v[i];
        put32(p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        u = __builtin_bswap64(u);
        memcpy(p + 4, &u, 8);
#else
        put32(p + 4, (uint32_t)(u >> 32));
        put32(p + 8, (uint32_t)u);
#endif
    }
    a->n += (uint32_t)n;
}

void pgarray_add_raw(pgarray *a, const void *s, size_t n)
{
    unsigned char *p;

    if (n > INT32_MAX) {
        a->oom = 1;
        return;
    }
    p = room(a, 4 + n);
    if (!p)
        return;
    put32(p, (uint32_t)n);
    memcpy(p + 4, s, n);
    a->n++;
}

void pgarray_add_null(pgarray *a)
{
    unsigned char *p = room(a, 4);

    if (!p)
        return;
    put32(p, 0xffffffffu);
    a->has_null = 1;
    a->n++;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int pgarray_add_text_as(pgarray *a, const char *s, size_t n)
{
    size_t i;

    if (a->elem_oid == PGARRAY_INT8_OID) {
        uint64_t v = 0;
        int neg = n > 0 && s[0] == '-';
        if (n == (size_t)neg || n > 20)
            return -1;
        for (i = (size_t)neg; i < n; i++) {
            if (s[i] < '0' || s[i] > '9')
                return -1;
            v = v * 10 + (uint64_t)(s[i] - '0');
        }
        /* Canonical input is within int8 (the decoder checked); wrapping
         * arithmetic gives INT64_MIN its right bits. */
        pgarray_add_int8(a, (int64_t)(neg ? 0 - v : v));
        return 0;
    }
    if (a->elem_oid == PGARRAY_UUID_OID) {
        unsigned char u[16];
        size_t k = 0;
        for (i = 0; i < n && k < 32; i++) {
            int hi;
            if (s[i] == '-')
                continue;
            hi = hexval(s[i]);
            if (hi < 0)
                return -1;
            if (k % 2 == 0)
                u[k / 2] = (unsigned char)(hi << 4);
            else
                u[k / 2] |= (unsigned char)hi;
            k++;
        }
        if (k != 32 || i != n)
            return -1;
        pgarray_add_raw(a, u, 16);
        return 0;
    }
    pgarray_add_raw(a, s, n);
    return 0;
}

const char *pgarray_finish(pgarray *a, int *len)
{
    if (a->oom || !a->data || a->len > INT32_MAX)
        return NULL;
    put32(a->data, 1);
    put32(a->data + 4, (uint32_t)a->has_null);
    put32(a->data + 8, a->elem_oid);
    put32(a->data + 12, a->n);
    put32(a->data + 16, 1);
    *len = (int)a->len;
    return (const char *)a->data;
}

void pgarray_free(pgarray *a)
{
    if (!a)
        return;
    free(a->data);
    memset(a, 0, sizeof(*a));
}

uint32_t pgarray_oid_of(const char *type_name)
{
    if (!type_name)
        return 0;
    if (strcmp(type_name, "bigint") == 0)
        return PGARRAY_INT8_OID;
    if (strcmp(type_name, "uuid") == 0)
        return PGARRAY_UUID_OID;
    if (strcmp(type_name, "text") == 0)
        return PGARRAY_TEXT_OID;
    return 0;
}
