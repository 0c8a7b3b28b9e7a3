/*
 * upsert_sql.h - the SQL of the built-in upsert handler, generated without
 * any I/O so that every statement can be checked by a unit test.
 *
 * Identifiers (table, key and column names from the YAML) are always quoted
 * here: double quotes, embedded double quotes doubled. This is what libpq's
 * PQescapeIdentifier produces, done without a connection so the generator
 * stays pure. Names are therefore taken literally and case-sensitively, as
 * they appear in the catalog. Values never appear in the SQL text: they go
 * as parameters, one text array literal per parameter (upsert_array).
 *
 * Functions that return char * return a malloc'd string the caller frees, or
 * NULL after writing one lower-case sentence into errbuf (when errbuf is
 * not NULL and errbuf_size nonzero); the sentence is "out of memory" when
 * an allocation failed.
 */
#ifndef EXACTLY_UPSERT_SQL_H
#define EXACTLY_UPSERT_SQL_H

#include <stddef.h>

#include "util/strbuf.h"

/* PostgreSQL truncates longer names (NAMEDATALEN - 1); refuse them instead
 * of letting two names silently become one. */
#define UPSERT_SQL_MAX_IDENT 63

/*
 * The catalog query that learns the type of each column of a table, for the
 * unfused form. $1 is the table as upsert_sql_quote_relation() renders it,
 * so that ::regclass resolves exactly the relation the INSERT names. The
 * type is rendered without its modifier on purpose: an explicit cast to
 * varchar(5) or bit(3) truncates silently, whereas assignment to the column
 * raises an error for a value that does not fit.
 */
#define UPSERT_SQL_COLUMN_TYPES                                                \
    "SELECT a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a "     \
    "WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped"

/*
 * What to generate. All arrays are borrowed. The names are unquoted; they
 * are quoted on output.
 */
typedef struct upsert_sql_spec {
    const char *table;          /* target: "name" or "schema.name" */
    const char *const *key;     /* conflict key columns, each in columns */
    size_t n_key;
    const char *const *columns; /* target columns */
    const char *const *sources; /* source column of each target column */
    const char *const *types;   /* unfused: SQL type of each target column
                                   (format_type output); else unused */
    size_t n_columns;
    const char *lookup_table;     /* non-NULL: fused form reading this table
                                     ("name" or "schema.name") */
    const char *lookup_id_column; /* fused: the source's entity ID column */
    const char *id_type;          /* "bigint", "text" or "uuid" */
    int lock_source;              /* fused: the SELECT takes FOR SHARE OF s
                                     (an extra writer's: the source rows it
                                     read stay as read until it commits) */
} upsert_sql_spec;

/*
 * Returns name as a quoted identifier ("a""b" for a"b). Refuses an empty
 * name or one longer than UPSERT_SQL_MAX_IDENT bytes.
 */
char *upsert_sql_quote_ident(const char *name, char *errbuf,
                             size_t errbuf_size);

/*
 * Returns a relation name quoted part by part: "orders" or "sales"."orders"
 * for sales.orders. The name is split on its one dot; a name with more than
 * one dot or an empty part is refused (a dot inside a table name is not
 * supported).
 */
char *upsert_sql_quote_relation(const char *name, char *errbuf,
                                size_t errbuf_size);

/*
 * Returns 1 when type (as format_type renders it) contains only the
 * characters a type name can: letters, digits, '_', ' ', '(', ')', '[',
 * ']', ',', '.' and '"'. The type is written into SQL unquoted, so this is
 * a second line of defence behind the fact that the server produced it.
 */
int upsert_sql_type_is_safe(const char *type);

/*
 * Returns the INSERT for spec.
 *
 * Fused (lookup_table set), $1 = the batch's entity IDs:
 *   INSERT INTO "t" AS t ("id", "name") SELECT s."id", s."name"
 *   FROM "src" AS s WHERE s."id" = ANY($1::bigint[])
 *   ON CONFLICT ("id") DO UPDATE SET "name" = EXCLUDED."name"
 *   WHERE (t."name") IS DISTINCT FROM (EXCLUDED."name")
 * with lock_source, ORDER BY s."id" FOR SHARE OF s follows the WHERE of
 * the SELECT: the source rows are locked in the order of their IDs.
 *
 * Unfused, $n = the values of column n, one element per looked-up row:
 *   INSERT INTO "t" AS t ("id", "name")
 *   SELECT u.c1::bigint, u.c2::text FROM unnest($1::text[], $2::text[])
 *   AS u(c1, c2) ON CONFLICT ... (as above)
 *
 * When every column is a key column the conflict action is DO NOTHING. The
 * target is aliased "t" (and the source "s") so that no table name, however
 * chosen, can capture or shadow a reference.
 */
char *upsert_sql_insert(const upsert_sql_spec *spec, char *errbuf,
                        size_t errbuf_size);

/*
 * Returns the DELETE for records whose lookup found no row. The key must be
 * one column holding the entity ID; $1 = the entity IDs.
 *
 * Unfused ($1 = the IDs of the records without rows):
 *   DELETE FROM "t" AS t WHERE t."id" = ANY($1::bigint[])
 * Fused ($1 = every ID of the batch; the source decides):
 *   DELETE FROM "t" AS t WHERE t."id" = ANY($1::bigint[])
 *   AND NOT EXISTS (SELECT 1 FROM "src" AS s WHERE s."id" = t."id")
 * The fused form requires the key to be filled from lookup_id_column.
 */
char *upsert_sql_delete(const upsert_sql_spec *spec, char *errbuf,
                        size_t errbuf_size);

/*
 * Returns the statement an extra writer runs before the fused DELETE of
 * upsert_sql_delete(), with the same $1: it locks the target rows of
 * those IDs,
 *   SELECT 1 FROM "t" AS t WHERE t."id" = ANY($1::bigint[])
 *   ORDER BY t."id" FOR UPDATE OF t
 * (in the order of the IDs, as the source rows are locked) so that, from then to COMMIT, no other transaction writes them, and the
 * DELETE, a later statement with a later snapshot, reads the source as it
 * is once they are held. (In one statement a row written meanwhile would
 * be re-checked against the statement's first snapshot: a source row
 * inserted since would be missed and the new target row deleted.) The key
 * must be one column, as for the DELETE.
 */
char *upsert_sql_lock_targets(const upsert_sql_spec *spec, char *errbuf,
                              size_t errbuf_size);

/*
 * A PostgreSQL text array literal under construction, for one parameter:
 * {"1","a \"quoted\" one",NULL}. Every element is double-quoted with '"'
 * and '\' backslash-escaped, so no value can change the array's shape; a
 * NULL value becomes SQL NULL. A zeroed struct is an empty array. Memory is
 * kept across upsert_array_reset() so a handler can reuse it every batch.
 */
typedef struct upsert_array {
    strbuf sb;    /* the literal, built by util/strbuf.h's array calls */
    size_t n;     /* elements added since the last reset */
    int oom;      /* an allocation failed; the literal is unusable */
    int finished; /* the closing brace is in place */
} upsert_array;

/* Empties the array, keeping its memory. */
void upsert_array_reset(upsert_array *a);

/* Appends value (NULL: SQL NULL). Returns 0, or -1 when memory ran out (the
 * array then stays unusable until reset). Must not follow finish. */
int upsert_array_add(upsert_array *a, const char *value);

/* Closes the literal and returns it, valid until the next reset/free, or
 * NULL when memory ran out. Calling it twice returns the same text. */
const char *upsert_array_finish(upsert_array *a);

/* Frees the memory; a to zero. NULL-safe. */
void upsert_array_free(upsert_array *a);

/*
 * The insert of upsert_sql_insert() wrapped so that every row it actually
 * changed (inserted, or updated because a column IS DISTINCT FROM) also
 * writes one zero-payload event into the outbox relation outbox ("name" or
 * "schema.name"): key = the conflict key as text (one column), or the JSON
 * array of its values (several), topic = parameter $topic_param (the
 * insert's own parameters keep their numbers), value and headers NULL.
 */
char *upsert_sql_emit(const char *insert_sql, const upsert_sql_spec *spec,
                      const char *outbox, int topic_param, char *errbuf,
                      size_t errbuf_size);

#endif
