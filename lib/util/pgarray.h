/*
 * pgarray.h - one-dimensional PostgreSQL arrays in the binary wire format
 * (what array_recv reads), built without formatting a number or escaping a
 * string: a parameter sent with format 1 and this buffer is read by the
 * server without parsing text. Elements are int8, uuid or text; the
 * statement names the type ($1::bigint[]), and the element type written
 * here must be the same, or the server refuses the parameter.
 */
#ifndef EXACTLY_PGARRAY_H
#define EXACTLY_PGARRAY_H

#include <stddef.h>
#include <stdint.h>

#define PGARRAY_INT8_OID 20u
#define PGARRAY_TEXT_OID 25u
#define PGARRAY_UUID_OID 2950u

typedef struct pgarray {
    unsigned char *data;
    size_t len;
    size_t cap;
    uint32_t n;        /* elements */
    uint32_t elem_oid;
    int has_null;
    int oom;           /* an allocation failed: finish returns NULL */
} pgarray;

/* Starts an empty array of elem_oid elements, keeping the buffer. */
void pgarray_begin(pgarray *a, uint32_t elem_oid);
void pgarray_add_int8(pgarray *a, int64_t v);
/* pgarray_add_int8() of v[0..n), the room reserved once. */
void pgarray_add_int8s(pgarray *a, const int64_t *v, size_t n);
/* The raw bytes of one element (text as is; uuid as its 16 bytes). */
void pgarray_add_raw(pgarray *a, const void *p, size_t n);
void pgarray_add_null(pgarray *a);
/*
 * Adds an element given as its canonical text (exactly's ID forms): int8
 * as decimal, uuid as 8-4-4-4-12 hex, text as is. Returns -1 (and adds
 * nothing) when the text is not of that form.
 */
int pgarray_add_text_as(pgarray *a, const char *s, size_t n);
/* Completes the header; returns the buffer and its length in *len, or
 * NULL when out of memory. Valid until the next begin or free. */
const char *pgarray_finish(pgarray *a, int *len);
void pgarray_free(pgarray *a);

/* The element OID for an ID type name ("bigint", "uuid", "text"); 0 for
 * another name. */
uint32_t pgarray_oid_of(const char *type_name);

#endif
