/*
 * A batch run while its own partition's previous batch is still held
 * (engine.h, pipelining: sent, its answers not read yet). The flush sizes
 * it from the front of the partition's buffer, the held messages
 * included; once the held batch is settled (its messages committed,
 * dropped from the buffer and freed), what runs is only what follows it,
 * up to that batch's end: no message of the held batch is read again or
 * applied twice, and every message is applied in the transaction that
 * moves its partition's stored offset over it.
 *
 * How a flush gets there: one worker, two partitions, batches of 10. The
 * handler takes 300 ms over every batch and asks, once each, to retry
 * three batches of B, the partition claimed second (a flush's passes take
 * the partitions in the order they were claimed). B then backs off for
 * 100 to 200 ms; a flush that starts meanwhile holds a batch of A, skips
 * B (not due when the flush began), finds B due once the 300 ms are over
 * and makes another pass, which reaches A while A's batch is held. The
 * backlog is produced once both partitions are claimed, in rounds that
 * reach the worker interleaved, A with twice B's messages, so that A has
 * a full batch at each of B's retries.
 *
 * Asserted: the worker does not die, and its log holds no sanitizer
 * report (a message of the held batch read after it was freed is a
 * heap-use-after-free there); every ledger row was written by a
 * transaction that moved its partition's stored offset from at most its
 * offset to beyond it (triggers note both per transaction); the
 * exactly-once check (one ledger row per offset, counters exact, stored
 * offsets at the partition ends, nothing dead-lettered: an offset applied
 * twice is refused by the ledger and ends there); SIGTERM then stops the
 * worker with 0; three batches rolled back, the handler's three retries,
 * and no other.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "held-same-partition"
#define PARTITIONS 2
#define BATCH 10
#define LONG_RUN 120 /* messages of A, the partition claimed first */
#define SHORT_RUN 60 /* messages of B */
#define MESSAGES (LONG_RUN + SHORT_RUN)
/* Rounds of a batch to A and one to B, then the rest of A. */
#define ROUNDS (SHORT_RUN / BATCH)
/* Longer than the consumer's fetch.wait.max.ms (kafka[] below). */
#define ROUND_GAP_MS 50
/* Longer than the first backoff after a retry (100 to 200 ms). */
#define STALL_MS 300
/* IDs 1..ENTITIES name the ordinary messages; the N_RETRY after them one
 * message of B each, at retry_offsets, the batch holding it retried once. */
#define ENTITIES 40
#define N_RETRY 3
#define CLAIM_TIMEOUT_MS 30000
#define APPLY_TIMEOUT_MS 60000

static const int retry_offsets[N_RETRY] = {5, 25, 45};

/* The mock answers a fetch that finds nothing after fetch.wait.max.ms
 * (500 ms by default), whatever is produced meanwhile: a short wait fetches
 * each round apart from the next. */
static const char *const kafka[] = {"fetch.wait.max.ms", "10", NULL};

/* The ID of B's message at offset o (b 1) or A's (b 0). */
static int id_at(int b, int o)
{
    int k;

    for (k = 0; b && k < N_RETRY; k++)
        if (retry_offsets[k] == o)
            return ENTITIES + 1 + k;
    return (o * PARTITIONS + b) % ENTITIES + 1;
}

/* The partition of the first `partition claimed` line of log. */
static int first_claimed(const char *log)
{
    char *text = tk_read_file(log);
    const char *at = text ? strstr(text, "msg=\"partition claimed\"") : NULL;
    const char *p = at ? strstr(at, " partition=") : NULL;
    int partition;

    TK_CHECK(p != NULL, "no partition claimed line with a partition in %s",
             log);
    partition = atoi(p + strlen(" partition="));
    free(text);
    return partition;
}

/* Fails, showing the report, when the log holds one of a sanitizer. */
static void check_no_sanitizer_report(const char *log)
{
    static const char *const marks[] = {"ERROR: AddressSanitizer",
                                        "ERROR: LeakSanitizer",
                                        "runtime error:"};
    char *text = tk_read_file(log);
    size_t i;

    TK_CHECK(text != NULL, "cannot read %s", log);
    for (i = 0; i < sizeof marks / sizeof marks[0]; i++) {
        const char *at = strstr(text, marks[i]);
        const char *end;
        int lines = 0;

        if (!at)
            continue;
        /* The report's first line and its first frames. */
        for (end = at; *end && lines < 10; end++)
            lines += *end == '\n';
        tk_fail("the worker's log holds a sanitizer report (%s):\n%.*s", log,
                (int)(end - at), at);
    }
    free(text);
}

/* Triggers that note, per transaction, the ledger rows it wrote and the
 * moves of the stored offsets it made. */
static void note_transactions(PGconn *db)
{
    tk_sql(db, "CREATE TABLE written (partition int NOT NULL, "
               "\"offset\" bigint NOT NULL, xid xid8 NOT NULL)");
    tk_sql(db, "CREATE FUNCTION note_written() RETURNS trigger LANGUAGE "
               "plpgsql AS $$ BEGIN INSERT INTO written VALUES "
               "(NEW.partition, NEW.\"offset\", pg_current_xact_id()); "
               "RETURN NEW; END $$");
    tk_sql(db, "CREATE TRIGGER note_written AFTER INSERT ON ledger "
               "FOR EACH ROW EXECUTE FUNCTION note_written()");
    tk_sql(db, "CREATE TABLE advanced (partition int NOT NULL, "
               "from_offset bigint, to_offset bigint, xid xid8 NOT NULL)");
    tk_sql(db, "CREATE FUNCTION note_advanced() RETURNS trigger LANGUAGE "
               "plpgsql AS $$ BEGIN INSERT INTO advanced VALUES "
               "(NEW.partition, OLD.next_offset, NEW.next_offset, "
               "pg_current_xact_id()); RETURN NEW; END $$");
    tk_sql(db, "CREATE TRIGGER note_advanced AFTER UPDATE ON exactly.offsets "
               "FOR EACH ROW EXECUTE FUNCTION note_advanced()");
}

/* Fails unless every ledger row was written by a transaction that moved
 * its partition's stored offset from at most its offset to beyond it. */
static void check_written_in_range(PGconn *db, const char *log)
{
    static const char *const outside =
        "FROM written w WHERE NOT EXISTS (SELECT 1 FROM advanced a "
        "WHERE a.xid = w.xid AND a.partition = w.partition "
        "AND a.from_offset <= w.\"offset\" AND w.\"offset\" < a.to_offset)";
    int64_t bad = tk_sql_int64(db, "SELECT count(*) %s", outside);
    char *which;

    if (bad == 0)
        return;
    which = tk_sql_text(
        db,
        "SELECT string_agg(format('%%s/%%s (its transaction moved the "
        "stored offset %%s)', partition, \"offset\", moved), '; ') FROM "
        "(SELECT w.partition, w.\"offset\", coalesce((SELECT "
        "string_agg(DISTINCT a.from_offset || ' to ' || a.to_offset, ', ') "
        "FROM advanced a WHERE a.xid = w.xid AND a.partition = "
        "w.partition), 'not at all') AS moved %s "
        "ORDER BY w.partition, w.\"offset\" LIMIT 5) x",
        outside);
    LEDGER_CHECK_LOG(0, log,
                     "%" PRId64 " messages were applied in a transaction "
                     "that did not move their partition's stored offset "
                     "over them; partition/offset: %s",
                     bad, which);
}

/* Produces the backlogs: ROUNDS rounds of a batch to A and one to B, each
 * round fetched on its own (the consumer asks often), so that A and B
 * reach the worker interleaved; then the rest of A. Counts the messages
 * per ID into per_entity. */
static void produce(const char *bootstraps, int a, int64_t *per_entity)
{
    static int partitions[MESSAGES], ids[MESSAGES];
    int o, b, i = 0, sent = 0, r;

    for (r = 0; r <= ROUNDS; r++) {
        for (b = 0; b <= (r < ROUNDS); b++)
            for (o = r * BATCH; o < (r < ROUNDS ? (r + 1) * BATCH : LONG_RUN);
                 o++, i++) {
                partitions[i] = b ? 1 - a : a;
                ids[i] = id_at(b, o);
                per_entity[ids[i] - 1]++;
            }
        tk_produce_int_keys(bootstraps, TOPIC, partitions + sent, ids + sent,
                            (size_t)(i - sent));
        sent = i;
        if (r < ROUNDS)
            tk_sleep_ms(ROUND_GAP_MS);
    }
    TK_CHECK(sent == MESSAGES, "produced %d messages, not %d", sent, MESSAGES);
}

int main(void)
{
    int64_t per_entity[ENTITIES + N_RETRY];
    char options[256];
    ledger_fixture f;
    ledger_config c;
    tk_run_summary s;
    long long t0;
    int64_t stored;
    PGconn *db;
    pid_t pid;
    int a, status = -1, retried;

    ledger_fixture_start(&f, "held_same_partition", TOPIC, PARTITIONS);
    snprintf(options, sizeof options,
             "        stall_ms: %d\n"
             "        retry_on_ids: ['%d', '%d', '%d']\n"
             "        require_id_values: true\n",
             STALL_MS, ENTITIES + 1, ENTITIES + 2, ENTITIES + 3);
    memset(&c, 0, sizeof c);
    c.max_messages = BATCH;
    /* Batches fill from the backlog; none waits for a deadline. */
    c.max_wait_ms = 10000;
    c.handler_options_yaml = options;
    c.kafka = kafka;
    ledger_fixture_config(&f, &c);
    db = tk_pg_connect(f.conninfo);
    note_transactions(db);

    pid = tk_worker_start(f.config, 0, f.log, NULL);
    tk_wait_claims(f.log, 0, PARTITIONS, pid, CLAIM_TIMEOUT_MS);
    a = first_claimed(f.log);
    memset(per_entity, 0, sizeof per_entity);
    t0 = tk_now_ms();
    produce(f.mock->bootstraps, a, per_entity);

    for (;;) {
        stored = tk_sql_int64(db, "SELECT coalesce(sum(next_offset), 0) "
                                  "FROM exactly.offsets");
        if (stored >= MESSAGES || (status = tk_wait(pid, 0)) != -1 ||
            tk_now_ms() - t0 >= APPLY_TIMEOUT_MS)
            break;
        tk_sleep_ms(50);
    }
    if (status == -1) {
        tk_note("%" PRId64 " messages stored %lld ms after producing",
                stored, tk_now_ms() - t0);
        status = tk_worker_stop(pid, 20000);
    }
    check_no_sanitizer_report(f.log);
    LEDGER_CHECK_LOG(status == 0, f.log,
                     "the worker exited with %d (while applying the backlog "
                     "or on SIGTERM after it)",
                     status);
    LEDGER_CHECK_LOG(stored == MESSAGES, f.log,
                     "%" PRId64 " of %d messages stored within %d ms", stored,
                     MESSAGES, APPLY_TIMEOUT_MS);

    check_written_in_range(db, f.log);
    ledger_check_exactly_once(db, f.mock->bootstraps, TOPIC, PARTITIONS,
                              MESSAGES, per_entity, ENTITIES + N_RETRY);
    PQfinish(db);

    retried = tk_log_count(f.log, "the handler asked to retry it");
    LEDGER_CHECK_LOG(retried == N_RETRY, f.log,
                     "the handler asked %d times to retry a batch, not %d",
                     retried, N_RETRY);
    tk_summary_required(f.log, LEDGER_PIPELINE, &s);
    LEDGER_CHECK_LOG(s.rolled_back == N_RETRY && s.retries == N_RETRY &&
                         s.consumed == MESSAGES && s.applied == MESSAGES,
                     f.log,
                     "summary: consumed %" PRId64 ", applied %" PRId64
                     ", rolled back %" PRId64 ", retries %" PRId64
                     "; expected %d, %d, %d, %d",
                     s.consumed, s.applied, s.rolled_back, s.retries,
                     MESSAGES, MESSAGES, N_RETRY, N_RETRY);
    ledger_fixture_stop(&f);
    return 0;
}
