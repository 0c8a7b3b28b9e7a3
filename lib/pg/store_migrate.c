/*
 * store_migrate.c - the framework schema's steps: each one step of DDL,
 * what it makes never changed once released (a change is a new step).
 * store_migrate_run.c applies them.
 */
#include "store_steps.h"

#include <stddef.h>

#include "store.h"

/* Each migration is one step of DDL; %1$s is the quoted schema. They are
 * applied in order, each recorded in schema_version; what a released step
 * makes is never changed: a change is a new step. A step whose text is
 * transactional DDL runs inside the migration's transaction; a step named
 * in concurrent_steps below builds one index and nothing else. */
static const char *const migrations[] = {
    /* 1: offsets, dedup keys, dead letters, the fence function */
    "CREATE TABLE %1$s.offsets ("
    "  pipeline text NOT NULL,"
    "  topic text NOT NULL,"
    "  partition integer NOT NULL,"
    "  next_offset bigint,"
    "  owner_epoch bigint NOT NULL DEFAULT 0,"
    "  owner text,"
    "  claimed_at timestamptz,"
    "  updated_at timestamptz NOT NULL DEFAULT now(),"
    /* The crash guard: attempts of the batch starting at attempt_start,
     * counted once per process; isolation up to isolate_until. */
    "  attempt_start bigint,"
    "  attempts integer NOT NULL DEFAULT 0,"
    "  isolate_until bigint,"
    "  PRIMARY KEY (pipeline, topic, partition));"
    "CREATE TABLE %1$s.dedup_keys ("
    "  pipeline text NOT NULL,"
    "  dedup_key bytea NOT NULL,"
    "  topic text NOT NULL,"
    "  partition integer NOT NULL,"
    "  \"offset\" bigint NOT NULL,"
    "  created_at timestamptz NOT NULL DEFAULT now(),"
    "  PRIMARY KEY (pipeline, dedup_key));"
    "CREATE INDEX dedup_keys_expiry ON %1$s.dedup_keys (pipeline, created_at);"
    "CREATE TABLE %1$s.dead_letters ("
    "  id bigserial PRIMARY KEY,"
    "  pipeline text NOT NULL,"
    "  topic text NOT NULL,"
    "  partition integer NOT NULL,"
    "  \"offset\" bigint NOT NULL,"
    "  message_key bytea,"
    "  entity_id text,"
    "  reason text NOT NULL,"
    "  sqlstate text,"
    "  attempts integer NOT NULL DEFAULT 1,"
    "  first_failed_at timestamptz NOT NULL DEFAULT now(),"
    "  last_failed_at timestamptz NOT NULL DEFAULT now(),"
    "  UNIQUE (pipeline, topic, partition, \"offset\"));"
    /* The compare-and-set of DESIGN 1.3 as a function, so that a fenced
     * batch raises an error: in a pipeline that aborts every statement
     * queued after it, COMMIT included, without a round trip to check. */
    "CREATE FUNCTION %1$s.advance(p_pipeline text, p_topic text,"
    "    p_partition integer, p_epoch bigint, p_start bigint, p_end bigint)"
    "  RETURNS void LANGUAGE plpgsql AS $fn$"
    "DECLARE cur_epoch bigint; cur_next bigint;"
    "BEGIN"
    "  UPDATE %1$s.offsets SET next_offset = p_end, updated_at = now()"
    "   WHERE pipeline = p_pipeline AND topic = p_topic"
    "     AND partition = p_partition AND owner_epoch = p_epoch"
    "     AND next_offset = p_start;"
    "  IF NOT FOUND THEN"
    "    SELECT owner_epoch, next_offset INTO cur_epoch, cur_next"
    "      FROM %1$s.offsets WHERE pipeline = p_pipeline AND topic = p_topic"
    "       AND partition = p_partition;"
    "    RAISE EXCEPTION 'partition %% [%%] of pipeline %% is fenced', p_topic,"
    "        p_partition, p_pipeline"
    "      USING ERRCODE = 'EX001',"
    "      DETAIL = format('batch epoch %%s start %%s; stored epoch %%s next_offset %%s',"
    "                      p_epoch, p_start, cur_epoch, cur_next);"
    "  END IF;"
    "END $fn$;"
    /* Called, and committed on its own, before a batch is applied: when a
     * handler kills the worker, the next process knows how often the batch
     * at p_start already died. Returns 'batch', 'single' (apply the first
     * message alone), 'dead_letter' (it died alone p_max times: do not
     * apply it) or 'fenced', then ':' and the attempt number. */
    "CREATE FUNCTION %1$s.attempt(p_pipeline text, p_topic text,"
    "    p_partition integer, p_epoch bigint, p_start bigint, p_end bigint,"
    "    p_fresh integer, p_max integer)"
    "  RETURNS text LANGUAGE plpgsql AS $fn$"
    "DECLARE r record; n integer; iso bigint; mode text;"
    "BEGIN"
    "  SELECT attempt_start, attempts, isolate_until INTO r FROM %1$s.offsets"
    "   WHERE pipeline = p_pipeline AND topic = p_topic"
    "     AND partition = p_partition AND owner_epoch = p_epoch FOR UPDATE;"
    "  IF NOT FOUND THEN RETURN 'fenced:0'; END IF;"
    "  n := CASE WHEN r.attempt_start = p_start THEN r.attempts + p_fresh"
    "            ELSE 1 END;"
    "  iso := r.isolate_until;"
    "  IF iso IS NOT NULL AND p_start < iso THEN"
    "    mode := CASE WHEN n > p_max THEN 'dead_letter' ELSE 'single' END;"
    "  ELSIF n > p_max THEN"
    "    iso := p_end; n := 1; mode := 'single';"
    "  ELSE"
    "    iso := NULL; mode := 'batch';"
    "  END IF;"
    "  UPDATE %1$s.offsets SET attempt_start = p_start, attempts = n,"
    "         isolate_until = iso"
    "   WHERE pipeline = p_pipeline AND topic = p_topic"
    "     AND partition = p_partition;"
    "  RETURN mode || ':' || n;"
    "END $fn$;",

    /* Reprocess runs: a range of one partition applied again, with its own
     * position (next_offset) fenced like a pipeline's, so a run resumes
     * where it committed and applies each message once per run. */
    "CREATE TABLE %1$s.reprocess_runs ("
    "  id bigserial PRIMARY KEY,"
    "  pipeline text NOT NULL,"
    "  topic text NOT NULL,"
    "  partition integer NOT NULL,"
    "  from_offset bigint NOT NULL,"
    "  to_offset bigint NOT NULL,"      /* inclusive */
    "  next_offset bigint NOT NULL,"
    "  applied bigint NOT NULL DEFAULT 0,"
    "  status text NOT NULL DEFAULT 'running',"
    "  owner text,"
    "  owner_epoch bigint NOT NULL DEFAULT 1,"
    "  started_at timestamptz NOT NULL DEFAULT now(),"
    "  updated_at timestamptz NOT NULL DEFAULT now(),"
    "  ended_at timestamptz);"
    "CREATE FUNCTION %1$s.advance_run(p_run text, p_topic text,"
    "    p_partition integer, p_epoch bigint, p_start bigint, p_end bigint)"
    "  RETURNS void LANGUAGE plpgsql AS $fn$"
    "BEGIN"
    "  UPDATE %1$s.reprocess_runs SET next_offset = p_end, updated_at = now()"
    "   WHERE id = p_run::bigint AND topic = p_topic"
    "     AND partition = p_partition AND owner_epoch = p_epoch"
    "     AND next_offset = p_start;"
    "  IF NOT FOUND THEN"
    "    RAISE EXCEPTION 'reprocess run %% is fenced', p_run"
    "      USING ERRCODE = 'EX001';"
    "  END IF;"
    "END $fn$;",

    /* The audit trail of `exactly offsets reset`: who moved which stored
     * offset from where to where, and how it was asked for. */
    "CREATE TABLE %1$s.offset_resets ("
    "  id bigserial PRIMARY KEY,"
    "  pipeline text NOT NULL,"
    "  topic text NOT NULL,"
    "  partition integer NOT NULL,"
    "  from_offset bigint," /* NULL: the partition had no stored offset */
    "  to_offset bigint NOT NULL,"
    "  mode text NOT NULL," /* 'to-offset 42', 'shift-by -5', ... */
    "  reason text,"        /* the operator's --reason, if any */
    "  requested_by text NOT NULL," /* OS user@host */
    "  requested_at timestamptz NOT NULL DEFAULT now());"
    "CREATE INDEX offset_resets_partition ON %1$s.offset_resets"
    "  (pipeline, topic, partition, requested_at);",

    /* 4: the crash guard counts only deaths inside apply(): in_apply is
     * set, committed, before apply() runs and cleared by the batch's
     * commit (advance) or a clean release; a process that finds it set on
     * its first attempt at that offset knows its predecessor died there.
     * Dedup keys become SHA-256 digests (a fixed 32 bytes whatever the
     * header holds), and dead letters keep a bounded prefix of the message
     * key with its full length and digest. */
    "ALTER TABLE %1$s.offsets ADD COLUMN in_apply boolean NOT NULL"
    "  DEFAULT false;"
    "UPDATE %1$s.offsets SET attempts = 0;"
    "CREATE OR REPLACE FUNCTION %1$s.advance(p_pipeline text, p_topic text,"
    "    p_partition integer, p_epoch bigint, p_start bigint, p_end bigint)"
    "  RETURNS void LANGUAGE plpgsql AS $fn$"
    "DECLARE cur_epoch bigint; cur_next bigint;"
    "BEGIN"
    "  UPDATE %1$s.offsets SET next_offset = p_end, updated_at = now(),"
    "         in_apply = false"
    "   WHERE pipeline = p_pipeline AND topic = p_topic"
    "     AND partition = p_partition AND owner_epoch = p_epoch"
    "     AND next_offset = p_start;"
    "  IF NOT FOUND THEN"
    "    SELECT owner_epoch, next_offset INTO cur_epoch, cur_next"
    "      FROM %1$s.offsets WHERE pipeline = p_pipeline AND topic = p_topic"
    "       AND partition = p_partition;"
    "    RAISE EXCEPTION 'partition %% [%%] of pipeline %% is fenced', p_topic,"
    "        p_partition, p_pipeline"
    "      USING ERRCODE = 'EX001',"
    "      DETAIL = format('batch epoch %%s start %%s; stored epoch %%s next_offset %%s',"
    "                      p_epoch, p_start, cur_epoch, cur_next);"
    "  END IF;"
    "END $fn$;"
    /* attempts now counts deaths at attempt_start. p_fresh is 1 on a
     * process's first attempt at p_start: only then can in_apply be a
     * predecessor's (this process's own earlier attempts ended alive). */
    "CREATE OR REPLACE FUNCTION %1$s.attempt(p_pipeline text, p_topic text,"
    "    p_partition integer, p_epoch bigint, p_start bigint, p_end bigint,"
    "    p_fresh integer, p_max integer)"
    "  RETURNS text LANGUAGE plpgsql AS $fn$"
    "DECLARE r record; n integer; iso bigint; mode text;"
    "BEGIN"
    "  SELECT attempt_start, attempts, isolate_until, in_apply INTO r"
    "    FROM %1$s.offsets"
    "   WHERE pipeline = p_pipeline AND topic = p_topic"
    "     AND partition = p_partition AND owner_epoch = p_epoch FOR UPDATE;"
    "  IF NOT FOUND THEN RETURN 'fenced:0'; END IF;"
    "  n := CASE WHEN r.attempt_start = p_start THEN r.attempts"
    "            + CASE WHEN p_fresh = 1 AND r.in_apply THEN 1 ELSE 0 END"
    "            ELSE 0 END;"
    "  iso := r.isolate_until;"
    "  IF iso IS NOT NULL AND p_start < iso THEN"
    "    mode := CASE WHEN n >= p_max THEN 'dead_letter' ELSE 'single' END;"
    "  ELSIF n >= p_max THEN"
    "    iso := p_end; n := 0; mode := 'single';"
    "  ELSE"
    "    iso := NULL; mode := 'batch';"
    "  END IF;"
    "  UPDATE %1$s.offsets SET attempt_start = p_start, attempts = n,"
    "         isolate_until = iso, in_apply = true"
    "   WHERE pipeline = p_pipeline AND topic = p_topic"
    "     AND partition = p_partition;"
    "  RETURN mode || ':' || n;"
    "END $fn$;"
    "UPDATE %1$s.dedup_keys SET dedup_key = sha256(dedup_key);"
    "ALTER TABLE %1$s.dead_letters"
    "  ADD COLUMN message_key_length integer,"
    "  ADD COLUMN message_key_sha256 bytea;"
    "UPDATE %1$s.dead_letters SET"
    "  message_key_length = octet_length(message_key),"
    "  message_key_sha256 = sha256(message_key)"
    " WHERE message_key IS NOT NULL;",

    /* 5: the W3C trace-id of a dead-lettered message's traceparent
     * header; and reprocess runs over many partitions: one row per
     * partition, each naming the run's first row as its parent, so the
     * run resumes, and lists its dead letters, as one. */
    "ALTER TABLE %1$s.dead_letters ADD COLUMN trace_id text;"
    "ALTER TABLE %1$s.reprocess_runs ADD COLUMN parent bigint;"
    "CREATE INDEX reprocess_runs_parent ON %1$s.reprocess_runs (parent)"
    "  WHERE parent IS NOT NULL;",

    /* 6: the transactional outbox (lib/relay/). A user's transaction (or a
     * handler, through host->emit) inserts topic, key, value and headers;
     * the relay owns the rest. `created` is the inserting transaction's id:
     * the relay publishes only rows whose transaction is older than its
     * snapshot's xmin, so every transaction that could still commit a row
     * below that horizon has ended, and a row that commits late is never
     * passed over (no `id > last` cursor). A row is pending while
     * published_at and dead_reason are both NULL; the relay sets one of
     * them, or deletes the row, only after the broker acknowledged it (or
     * refused it for good). */
    "CREATE TABLE %1$s.outbox ("
    "  id bigserial PRIMARY KEY,"
    "  topic text,"               /* NULL: the relay's configured topic */
    "  key bytea,"
    "  value bytea,"
    "  headers jsonb,"            /* {"name": "text value", ...} */
    "  event_id uuid NOT NULL DEFAULT gen_random_uuid(),"
    "  created xid8 NOT NULL DEFAULT pg_current_xact_id(),"
    "  created_at timestamptz NOT NULL DEFAULT now(),"
    "  published_at timestamptz,"
    "  dead_reason text,"
    "  dead_at timestamptz);"
    "CREATE INDEX outbox_pending ON %1$s.outbox (created, id)"
    "  WHERE published_at IS NULL AND dead_reason IS NULL;"
    "CREATE INDEX outbox_published ON %1$s.outbox (published_at)"
    "  WHERE published_at IS NOT NULL;"
    /* What `exactly relay status` shows beside the pending rows: counters
     * each relay adds to in the transaction that marks its rows. */
    "CREATE TABLE %1$s.relay_state ("
    "  relay text PRIMARY KEY,"
    "  outbox text NOT NULL,"
    "  published bigint NOT NULL DEFAULT 0,"
    "  dead bigint NOT NULL DEFAULT 0,"
    "  started_at timestamptz NOT NULL DEFAULT now(),"
    "  published_since_start bigint NOT NULL DEFAULT 0,"
    "  updated_at timestamptz NOT NULL DEFAULT now());",

    /* 7: the crash guard costs no transaction of its own per batch
     * (lib/engine/guard.c has the protocol). held: a worker holds the
     * row, set by its claim, cleared when it lets go cleanly (release);
     * a claim that finds it set counts one owner lost without a release
     * at the row's next_offset (unreleased, at unreleased_at). attempt()
     * runs only on the first batch after a claim and while isolating:
     * max_crashes such losses at a batch's start isolate it; only the
     * exact count of isolation (attempts: deaths with in_apply set for
     * that one record) dead-letters. Out of isolation, the deaths step 4
     * counted at a batch's start carry over as unreleased ones, and a row
     * marked in_apply (a worker inside a batch, or dead there) is held:
     * the next claim counts it unless its owner releases it. */
    "ALTER TABLE %1$s.offsets"
    "  ADD COLUMN held boolean NOT NULL DEFAULT false,"
    "  ADD COLUMN unreleased_at bigint,"
    "  ADD COLUMN unreleased integer NOT NULL DEFAULT 0;"
    "UPDATE %1$s.offsets SET held = in_apply,"
    "       unreleased_at = attempt_start, unreleased = attempts"
    " WHERE isolate_until IS NULL OR next_offset >= isolate_until;"
    /* Returns 'batch' (no isolation: fewer than p_max unreleased owners
     * at p_start), 'single' (apply the first message alone, isolating up
     * to isolate_until), 'dead_letter' (that message died alone p_max
     * times: do not apply it) or 'fenced', then ':' and the count. Only
     * isolation writes (a committed mark before the record's apply());
     * the answer 'batch' leaves the row as it is, but for an isolation
     * that is over. */
    "CREATE OR REPLACE FUNCTION %1$s.attempt(p_pipeline text, p_topic text,"
    "    p_partition integer, p_epoch bigint, p_start bigint, p_end bigint,"
    "    p_fresh integer, p_max integer)"
    "  RETURNS text LANGUAGE plpgsql AS $fn$"
    "DECLARE r record; n integer; iso bigint; mode text;"
    "BEGIN"
    "  SELECT attempt_start, attempts, isolate_until, in_apply,"
    "         unreleased_at, unreleased INTO r"
    "    FROM %1$s.offsets"
    "   WHERE pipeline = p_pipeline AND topic = p_topic"
    "     AND partition = p_partition AND owner_epoch = p_epoch FOR UPDATE;"
    "  IF NOT FOUND THEN RETURN 'fenced:0'; END IF;"
    "  iso := r.isolate_until;"
    "  IF iso IS NOT NULL AND p_start < iso THEN"
    "    n := CASE WHEN r.attempt_start = p_start THEN r.attempts"
    "              + CASE WHEN p_fresh = 1 AND r.in_apply THEN 1 ELSE 0 END"
    "              ELSE 0 END;"
    "    mode := CASE WHEN n >= p_max THEN 'dead_letter' ELSE 'single' END;"
    "  ELSE"
    "    n := CASE WHEN r.unreleased_at = p_start THEN r.unreleased"
    "              ELSE 0 END;"
    "    IF n < p_max THEN"
    "      IF iso IS NOT NULL THEN"
    "        UPDATE %1$s.offsets SET isolate_until = NULL"
    "         WHERE pipeline = p_pipeline AND topic = p_topic"
    "           AND partition = p_partition;"
    "      END IF;"
    "      RETURN 'batch:' || n;"
    "    END IF;"
    "    iso := p_end; n := 0; mode := 'single';"
    "  END IF;"
    "  UPDATE %1$s.offsets SET attempt_start = p_start, attempts = n,"
    "         isolate_until = iso, in_apply = true, unreleased = 0"
    "   WHERE pipeline = p_pipeline AND topic = p_topic"
    "     AND partition = p_partition;"
    "  RETURN mode || ':' || n;"
    "END $fn$;",

    /* 8: one fence for the batches of several partitions that share a
     * transaction (engine_run_group): the compare-and-set of advance() on
     * every row at once, refused whole unless each matched. */
    "CREATE FUNCTION %1$s.advance_group(p_pipeline text, p_topics text[],"
    "    p_partitions integer[], p_epochs bigint[], p_starts bigint[],"
    "    p_ends bigint[])"
    "  RETURNS void LANGUAGE plpgsql AS $fn$"
    "DECLARE n integer; fenced text;"
    "BEGIN"
    "  UPDATE %1$s.offsets o SET next_offset = u.e_end, updated_at = now(),"
    "         in_apply = false"
    "    FROM unnest(p_topics, p_partitions, p_epochs, p_starts, p_ends)"
    "         AS u(t, p, ep, s, e_end)"
    "   WHERE o.pipeline = p_pipeline AND o.topic = u.t"
    "     AND o.partition = u.p AND o.owner_epoch = u.ep"
    "     AND o.next_offset = u.s;"
    "  GET DIAGNOSTICS n = ROW_COUNT;"
    "  IF n <> cardinality(p_topics) THEN"
    /* The rows that did not match: those not at their batch's end now. */
    "    SELECT string_agg(format('%%s [%%s]', u.t, u.p), ', ') INTO fenced"
    "      FROM unnest(p_topics, p_partitions, p_epochs, p_ends)"
    "           AS u(t, p, ep, e_end)"
    "     WHERE NOT EXISTS (SELECT 1 FROM %1$s.offsets o"
    "            WHERE o.pipeline = p_pipeline AND o.topic = u.t"
    "              AND o.partition = u.p AND o.owner_epoch = u.ep"
    "              AND o.next_offset = u.e_end);"
    "    RAISE EXCEPTION 'partition %% of pipeline %% is fenced (in a group of"
    " %%)', fenced, p_pipeline, cardinality(p_topics)"
    "      USING ERRCODE = 'EX001',"
    "      DETAIL = format('%%s of %%s offset rows matched their batch''s epoch"
    " and start', n, cardinality(p_topics));"
    "  END IF;"
    "END $fn$;",

    /* 9: advance_group's refusal names the rows its UPDATE did not move.
     * Step 8 named those not at their batch's end afterwards, and so
     * missed a row that stood there already (moved forward by a reset, by
     * someone else's commit): with every refused row missed, the message
     * said "partition <NULL>". */
    "CREATE OR REPLACE FUNCTION %1$s.advance_group(p_pipeline text,"
    "    p_topics text[], p_partitions integer[], p_epochs bigint[],"
    "    p_starts bigint[], p_ends bigint[])"
    "  RETURNS void LANGUAGE plpgsql AS $fn$"
    "DECLARE n integer; moved_t text[]; moved_p integer[]; fenced text;"
    "BEGIN"
    "  WITH moved AS ("
    "    UPDATE %1$s.offsets o SET next_offset = u.e_end, updated_at = now(),"
    "           in_apply = false"
    "      FROM unnest(p_topics, p_partitions, p_epochs, p_starts, p_ends)"
    "           AS u(t, p, ep, s, e_end)"
    "     WHERE o.pipeline = p_pipeline AND o.topic = u.t"
    "       AND o.partition = u.p AND o.owner_epoch = u.ep"
    "       AND o.next_offset = u.s"
    "    RETURNING o.topic, o.partition)"
    "  SELECT count(*), array_agg(topic), array_agg(partition)"
    "    INTO n, moved_t, moved_p FROM moved;"
    "  IF n <> cardinality(p_topics) THEN"
    "    SELECT string_agg(format('%%s [%%s]', u.t, u.p), ', ') INTO fenced"
    "      FROM unnest(p_topics, p_partitions) AS u(t, p)"
    "     WHERE NOT EXISTS (SELECT 1"
    "            FROM unnest(moved_t, moved_p) AS m(t, p)"
    "            WHERE m.t = u.t AND m.p = u.p);"
    "    RAISE EXCEPTION 'partition %% of pipeline %% is fenced (in a group of"
    " %%)', fenced, p_pipeline, cardinality(p_topics)"
    "      USING ERRCODE = 'EX001',"
    "      DETAIL = format('%%s of %%s offset rows matched their batch''s epoch"
    " and start', n, cardinality(p_topics));"
    "  END IF;"
    "END $fn$;",

    /* 10: a pipeline's dead letters newest first through an index: the
     * status page reads the newest few and counts the newest
     * STATUS_DEAD_LETTERS_COUNTED by reason every 2 s, at a cost that
     * stays the same however many there are. Built concurrently
     * (concurrent_steps): workers write dead letters meanwhile. */
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS dead_letters_newest"
    "  ON %1$s.dead_letters (pipeline, id)",

    /* 11: when a relay last published a row. updated_at moves with every
     * outcome recorded, a batch only dead-lettered or sent again among
     * them, so `exactly relay status` cannot tell from it how long no row
     * went out. Rows known published before: at their relay's last
     * update, the best there is. */
    "ALTER TABLE %1$s.relay_state ADD COLUMN last_published_at timestamptz;"
    "UPDATE %1$s.relay_state SET last_published_at = updated_at"
    " WHERE published > 0;",

    /* 12: commit marks. `exactly offsets reset` and `exactly dlq replay`
     * write one in their transaction, so that when the answer to their
     * COMMIT is lost a new connection can tell whether that very
     * transaction committed (pg_xact.h); deleted once known. */
    "CREATE TABLE %1$s.commit_marks ("
    "  token uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
    "  created_at timestamptz NOT NULL DEFAULT now());",
};

#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

/* The steps that build an index on a table the workers write in their
 * batches. A plain CREATE INDEX holds a SHARE lock on the table for the
 * whole build, and every writer waits that long; CREATE INDEX
 * CONCURRENTLY takes SHARE UPDATE EXCLUSIVE, which writers do not conflict
 * with, but cannot run inside a transaction. Such a step's text is that
 * one statement, with IF NOT EXISTS: a build that ended before its step
 * was recorded is kept when valid (the runner drops an invalid one first).
 * The index it makes is the same whichever way it is built. */
static const struct {
    size_t step; /* 1-based, as in schema_version */
    const char *index;
    size_t table_step; /* the step that creates the indexed table */
} concurrent_steps[] = {
    {10, "dead_letters_newest", 1},
};

int exactly_store_schema_version(void) { return (int)N_MIGRATIONS; }

size_t store_steps_count(void) { return N_MIGRATIONS; }

const char *store_step_sql(size_t i)
{
    return i < N_MIGRATIONS ? migrations[i] : NULL;
}

const char *store_step_index(size_t i)
{
    size_t k;

    for (k = 0; k < sizeof(concurrent_steps) / sizeof(concurrent_steps[0]);
         k++)
        if (concurrent_steps[k].step == i + 1)
            return concurrent_steps[k].index;
    return NULL;
}

size_t store_step_index_table(size_t i)
{
    size_t k;

    for (k = 0; k < sizeof(concurrent_steps) / sizeof(concurrent_steps[0]);
         k++)
        if (concurrent_steps[k].step == i + 1)
            return concurrent_steps[k].table_step;
    return 0;
}
