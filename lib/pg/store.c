/*
 * store.c - the worker's statements on the framework tables (claim,
 * fence, crash guard, dedup, dead letters, release, dedup expiry), built
 * once per connection with the quoted schema; the migrations that create
 * those tables are in store_migrate.c.
 */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_conn.h"
#include "store_exec.h"



int exactly_store_sql_init(exactly_store_sql *s, PGconn *conn,
                           const char *schema)
{
    char *q;

    memset(s, 0, sizeof(*s));
    q = exactly_pg_ident(conn, schema);
    if (!q)
        return -1;
    s->schema_q = strdup(q);
    PQfreemem(q);
    if (!s->schema_q)
        return -1;
#ifdef EXACTLY_MUTATION_NO_FENCE
    /* Mutation: the offset moves whoever owns the row and wherever it is. */
    s->fence = store_format_schema(
        "UPDATE %1$s.offsets SET next_offset = $6, updated_at = now()"
        " WHERE pipeline = $1 AND topic = $2 AND partition = $3"
        " AND $4::bigint IS NOT NULL AND $5::bigint IS NOT NULL",
        s->schema_q);
    s->fence_group = store_format_schema(
        "UPDATE %1$s.offsets o SET next_offset = u.e_end, updated_at = now()"
        " FROM unnest($2::text[], $3::integer[], $4::bigint[], $5::bigint[],"
        " $6::bigint[]) AS u(t, p, ep, s, e_end)"
        " WHERE o.pipeline = $1 AND o.topic = u.t AND o.partition = u.p",
        s->schema_q);
#else
    s->fence = store_format_schema("SELECT %1$s.advance($1, $2, $3, $4, $5, $6)",
                             s->schema_q);
    s->fence_group = store_format_schema(
        "SELECT %1$s.advance_group($1, $2::text[], $3::integer[],"
        " $4::bigint[], $5::bigint[], $6::bigint[])",
        s->schema_q);
#endif
    s->attempt = store_format_schema(
        "SELECT %1$s.attempt($1, $2, $3, $4, $5, $6, $7, $8)", s->schema_q);
    s->run_fence = store_format_schema(
        "SELECT %1$s.advance_run($1, $2, $3, $4, $5, $6)", s->schema_q);
    s->run_read = store_format_schema(
        "SELECT next_offset, owner_epoch FROM %1$s.reprocess_runs"
        " WHERE id = $1::bigint AND topic = $2 AND partition = $3",
        s->schema_q);
    s->dedup = store_format_schema(
        "INSERT INTO %1$s.dedup_keys (pipeline, dedup_key, topic, partition,"
        " \"offset\") SELECT $1, decode(k, 'hex'), $2, $3, o"
        " FROM unnest($4::text[], $5::bigint[]) AS u(k, o)"
        " ON CONFLICT DO NOTHING RETURNING encode(dedup_key, 'hex')",
        s->schema_q);
    s->dead_letter = store_format_schema(
        "INSERT INTO %1$s.dead_letters AS d (pipeline, topic, partition,"
        " \"offset\", message_key, message_key_length, message_key_sha256,"
        " entity_id, reason, sqlstate, trace_id)"
        " SELECT $1, $2, $3, o, decode(k, 'hex'), kl, decode(kd, 'hex'),"
        " e, r, st, tr"
        " FROM unnest($4::bigint[], $5::text[], $6::int[], $7::text[],"
        " $8::text[], $9::text[], $10::text[], $11::text[])"
        " AS u(o, k, kl, kd, e, r, st, tr)"
        " ON CONFLICT (pipeline, topic, partition, \"offset\") DO UPDATE"
        " SET attempts = d.attempts + 1, last_failed_at = now(),"
        " reason = EXCLUDED.reason, sqlstate = EXCLUDED.sqlstate,"
        " trace_id = EXCLUDED.trace_id",
        s->schema_q);
    s->release = store_format_schema(
        "UPDATE %1$s.offsets SET in_apply = false, held = false"
        " WHERE pipeline = $1 AND topic = $2 AND partition = $3"
        " AND owner_epoch = $4 AND (in_apply OR held)",
        s->schema_q);
    /* The crash guard's count (guard.c): a row still held was left
     * without a release, its owner lost (SIGKILL, a crash, a session that
     * timed out) somewhere at next_offset: one more there. A row with no
     * next_offset had no batch applied yet, so no death inside one. */
    s->claim = store_format_schema(
        "INSERT INTO %1$s.offsets AS o (pipeline, topic, partition,"
        " owner_epoch, owner, claimed_at, held)"
        " SELECT $1, t, p, 1, $4, now(), true"
        " FROM unnest($2::text[], $3::int[]) AS u(t, p)"
        " ON CONFLICT (pipeline, topic, partition) DO UPDATE"
        " SET owner_epoch = o.owner_epoch + 1, owner = EXCLUDED.owner,"
        " claimed_at = now(), held = true,"
        " unreleased = CASE WHEN NOT o.held OR o.next_offset IS NULL"
        " THEN o.unreleased WHEN o.unreleased_at = o.next_offset"
        " THEN o.unreleased + 1 ELSE 1 END,"
        " unreleased_at = CASE WHEN NOT o.held OR o.next_offset IS NULL"
        " THEN o.unreleased_at ELSE o.next_offset END"
        " RETURNING topic, partition, next_offset, owner_epoch",
        s->schema_q);
    s->set_start = store_format_schema(
        "UPDATE %1$s.offsets SET next_offset = $5, updated_at = now()"
        " WHERE pipeline = $1 AND topic = $2 AND partition = $3"
        " AND owner_epoch = $4 AND next_offset IS NULL",
        s->schema_q);
    s->read = store_format_schema(
        "SELECT next_offset, owner_epoch FROM %1$s.offsets"
        " WHERE pipeline = $1 AND topic = $2 AND partition = $3",
        s->schema_q);
    s->recheck = store_format_schema(
        "SELECT next_offset, owner_epoch,"
        " (extract(epoch FROM updated_at) * 1000000)::bigint,"
        " (extract(epoch FROM now() - updated_at) * 1000)::bigint"
        " FROM %1$s.offsets"
        " WHERE pipeline = $1 AND topic = $2 AND partition = $3",
        s->schema_q);
    /* Primary-key lookups only; a moved row is rare, so the answer is
     * usually empty. */
    s->watch = store_format_schema(
        "SELECT u.t, u.p, o.next_offset, o.owner_epoch"
        " FROM unnest($2::text[], $3::integer[], $4::bigint[],"
        " $5::bigint[]) AS u(t, p, n, ep)"
        " LEFT JOIN %1$s.offsets o ON o.pipeline = $1 AND o.topic = u.t"
        " AND o.partition = u.p"
        " WHERE o.next_offset IS DISTINCT FROM u.n"
        " OR o.owner_epoch IS DISTINCT FROM u.ep",
        s->schema_q);
    s->reclaim = store_format_schema(
        "UPDATE %1$s.offsets SET owner_epoch = $5, owner = $6,"
        " claimed_at = now(), held = true"
        " WHERE pipeline = $1 AND topic = $2 AND partition = $3"
        " AND owner_epoch = $4 RETURNING next_offset",
        s->schema_q);
    /* One slice of expired keys: short, and concurrent expirers of one
     * pipeline take disjoint rows instead of waiting for each other. */
    s->dedup_expire = store_format_schema(
        "DELETE FROM %1$s.dedup_keys WHERE ctid = ANY (ARRAY("
        " SELECT ctid FROM %1$s.dedup_keys WHERE pipeline = $1"
        " AND created_at < now() - make_interval(secs => $2::double precision)"
        " LIMIT $3::int FOR UPDATE SKIP LOCKED))",
        s->schema_q);
    s->emit = store_format_schema(
        "INSERT INTO %1$s.outbox (topic, key, value, headers)"
        " VALUES ($1, decode($2, 'hex'), decode($3, 'hex'), $4::jsonb)",
        s->schema_q);
    if (!s->emit) {
        exactly_store_sql_free(s);
        return -1;
    }
    if (!s->fence || !s->fence_group || !s->attempt || !s->run_fence || !s->run_read || !s->dedup || !s->dead_letter || !s->claim ||
        !s->set_start || !s->read || !s->recheck || !s->watch || !s->reclaim ||
        !s->dedup_expire ||
        !s->release) {
        exactly_store_sql_free(s);
        return -1;
    }
    return 0;
}

void exactly_store_sql_free(exactly_store_sql *s)
{
    if (!s)
        return;
    free(s->schema_q);
    free(s->fence);
    free(s->fence_group);
    free(s->attempt);
    free(s->run_fence);
    free(s->run_read);
    free(s->dedup);
    free(s->dead_letter);
    free(s->claim);
    free(s->set_start);
    free(s->read);
    free(s->recheck);
    free(s->watch);
    free(s->reclaim);
    free(s->dedup_expire);
    free(s->release);
    free(s->emit);
    memset(s, 0, sizeof(*s));
}
