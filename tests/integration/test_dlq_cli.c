/*
 * `exactly dlq list|show|replay|discard` against a real PostgreSQL and the
 * mock cluster, with the ledger pipeline:
 *
 *   - the topic holds messages whose IDs the ledger's fail_on_ids option
 *     fails (7 and 13), one key that is no number (undecodable: no entity
 *     ID), and one ID without an `accounts` row (lookup.on_missing:
 *     dead_letter); a worker runs to the end and dead-letters exactly
 *     those;
 *   - list shows them (filters, --limit, --since), show prints one in full
 *     (key as text and hex), bad usage is refused with exit 2;
 *   - --id selects by the dead letter's own id, --entity by the entity ID
 *     (both repeatable), and --help says which is which;
 *   - replay with the unchanged config fails them again: nothing applied,
 *     attempts counted, reason kept;
 *   - with fail_on_ids removed, a replay that hits a SQL error in the
 *     handler (a ledger row planted on one of entity 13's offsets) bisects:
 *     that record's dead letters stay (attempts counted, the server's
 *     reason and SQLSTATE), its outbox events are undone with it, every
 *     other record is applied and its dead letters deleted; exit 0;
 *   - once the planted row is gone, replay --all applies the rest and
 *     deletes it; the undecodable one and the one without a row stay, and
 *     the output says why;
 *   - discard removes a selected set; after the missing account appears, a
 *     replay by ID applies the last one;
 *   - at the end the ledger holds every offset but the undecodable one
 *     exactly once, the counters equal what was produced per ID, the
 *     dead-letter table is empty, and the outbox holds one event per
 *     ledger row: the handler emits (host->emit) in the worker and in
 *     replay alike.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_kit.h"
#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "dlq-cli"
#define NP 2
#define N_IDS 25        /* messages name ids 1..N_IDS ... */
#define N_MSGS 60       /* ... message i names (i % N_IDS) + 1 */
#define NO_ROW_ID 777   /* no accounts row until the end */
#define CMD_TIMEOUT_MS 60000
#define WORKER_TIMEOUT_MS 120000

/* The pipeline; fail_on_ids only when failing. The handler emits one
 * outbox event per message it applies (host->emit), replayed ones too. */
static void write_config(cli_kit *c, int failing)
{
    tk_config cfg;
    tk_pipeline *pl = &cfg.pipelines[0];

    tk_config_init(&cfg, c->bootstraps, c->conninfo);
    cfg.kafka[0] = (tk_prop){"session.timeout.ms", "6000"};
    ledger_pipeline(pl, LEDGER_PIPELINE, TOPIC);
    pl->group = "dlq-cli";
    pl->lookup_id_column = "id";
    pl->on_missing = "dead_letter";
    pl->options[0] = (tk_prop){"emit_topic", "dlq-events"};
    if (failing)
        pl->options_yaml = "        fail_on_ids: ['7', '13']\n";
    pl->max_messages = 8;
    pl->max_wait_ms = 50;
    tk_config_write(c->cfg, &cfg);
}

/* Runs `exactly dlq ARGS... -c cfg` (ARGS NULL-terminated); exit status,
 * output in *out. */
#define dlq(c, out, ...) cli_exactly((c), (out), "dlq", __VA_ARGS__)

/* Data rows of a `dlq list` table. */
static int list_rows(const char *out)
{
    const char *line = out;
    int n = 0;

    while (line && *line) {
        long long id;
        char topic[64];
        if (sscanf(line, "%lld %63s", &id, topic) == 2 &&
            strcmp(topic, TOPIC) == 0)
            n++;
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return n;
}

static char *dl_id(cli_kit *c, const char *where)
{
    return tk_sql_text(c->db, "SELECT min(id)::text FROM exactly.dead_letters"
                              " WHERE %s", where);
}

int main(void)
{
    cli_kit c;
    tk_msg msgs[2];
    char keys[2][16];
    int64_t produced[N_IDS + 1]; /* per id */
    int64_t n_fail = 0, ledger_before, dl_total;
    char *out, *id;
    int status, i;

    memset(msgs, 0, sizeof msgs);
    memset(produced, 0, sizeof produced);
    cli_kit_start(&c, "dlq_cli", TOPIC, NP, "dlq.yaml", 1);
    cli_kit_produce_ids(&c, TOPIC, N_MSGS, N_IDS, NP, produced);
    n_fail = produced[7] + produced[13];
    /* The undecodable key lands on partition 0, the missing row on 1. */
    snprintf(keys[0], sizeof keys[0], "not-a-number");
    snprintf(keys[1], sizeof keys[1], "%d", NO_ROW_ID);
    for (i = 0; i < 2; i++) {
        msgs[i].partition = i;
        msgs[i].key = keys[i];
        msgs[i].key_len = strlen(keys[i]);
    }
    tk_produce(c.bootstraps, TOPIC, msgs, 2);

    write_config(&c, 1);
    cli_kit_migrate(&c);
    cli_kit_worker_to_idle(&c, WORKER_TIMEOUT_MS);
    dl_total = n_fail + 2;
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, NULL), dl_total,
                      "dead letters after the run");
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, "entity_id IN ('7', '13') AND"
                                           " reason LIKE '%fail_on_ids%'"),
                      n_fail, "dead letters of the failing IDs");
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, "entity_id IS NULL AND"
                                           " partition = 0"),
                      1,
                      "the undecodable message");
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, "entity_id = '777' AND"
                                           " partition = 1 AND"
                                           " reason = 'lookup found no row'"),
                      1, "the message without a row");
    ledger_before = ledger_rows(c.db);
    TK_CHECK_EQ_INT64(ledger_before, N_MSGS - n_fail, "ledger rows after the run");

    /* list */
    status = dlq(&c, &out, "list", NULL);
    TK_CHECK(status == 0, "list exited %d:\n%s", status, out);
    TK_CHECK_EQ_INT64(list_rows(out), dl_total, "rows listed");
    TK_CHECK(strstr(out, "ledger: id listed in fail_on_ids") &&
                 strstr(out, "lookup found no row") &&
                 strstr(out, "LAST_FAILED") &&
                 strstr(out, "dead letter(s) of pipeline ledger"),
             "list lacks a column or a reason:\n%s", out);
    tk_note("dlq list:\n%s", out);
    free(out);
    status = dlq(&c, &out, "list", "--limit", "2", NULL);
    TK_CHECK(status == 0 && list_rows(out) == 2, "list --limit 2:\n%s", out);
    {
        char want[256];
        snprintf(want, sizeof want, "2 of %" PRId64 " dead letter(s)", dl_total);
        TK_CHECK(strstr(out, want) != NULL, "list --limit says not '%s':\n%s",
                 want, out);
    }
    free(out);
    status = dlq(&c, &out, "list", "--topic", TOPIC, "--partition", "1", NULL);
    TK_CHECK(status == 0, "list --partition exited %d:\n%s", status, out);
    TK_CHECK_EQ_INT64(list_rows(out), cli_dead_letters(&c, "partition = 1"),
                      "rows listed for partition 1");
    free(out);
    status = dlq(&c, &out, "list", "--since", "2999-01-01", NULL);
    TK_CHECK(status == 0 && list_rows(out) == 0, "list --since future:\n%s", out);
    free(out);
    status = dlq(&c, &out, "list", "--since", "not a time", NULL);
    TK_CHECK(status == 2 && strstr(out, "cannot read 'not a time' as a time"),
             "list --since garbage exited %d:\n%s", status, out);
    free(out);

    /* --entity: the entity's ID; --id: the dead letter's own id. */
    status = dlq(&c, &out, "list", "--entity", "7", NULL);
    TK_CHECK(status == 0, "list --entity exited %d:\n%s", status, out);
    TK_CHECK(cli_dead_letters(&c, "entity_id = '7'") > 0,
             "no dead letter of entity 7");
    TK_CHECK_EQ_INT64(list_rows(out), cli_dead_letters(&c, "entity_id = '7'"),
                      "rows listed for --entity 7");
    free(out);
    status = dlq(&c, &out, "list", "--entity", "7", "--entity", "777", NULL);
    TK_CHECK_EQ_INT64(list_rows(out),
                      cli_dead_letters(&c, "entity_id IN ('7', '777')"),
                      "rows listed for --entity 7 --entity 777");
    free(out);
    status = dlq(&c, &out, "show", "--entity", "777", NULL);
    TK_CHECK(status == 0 && strstr(out, "entity_id:       777\n"),
             "show --entity 777 exited %d:\n%s", status, out);
    free(out);
    id = dl_id(&c, "entity_id = '777'");
    status = dlq(&c, &out, "list", "--id", id, NULL);
    TK_CHECK(status == 0 && list_rows(out) == 1 && strstr(out, " 777 "),
             "list --id %s (the dead letter of entity 777):\n%s", id, out);
    free(out);
    free(id);
    status = dlq(&c, &out, "list", "--entity", "", NULL);
    TK_CHECK(status == 2, "list --entity '' exited %d:\n%s", status, out);
    free(out);
    /* An entity filter is a filter: discard takes it without --all. */
    status = dlq(&c, &out, "discard", "--entity", "424242", NULL);
    TK_CHECK(status == 0 && strstr(out, "discarded 0 dead letter(s)"),
             "discard --entity of no dead letter exited %d:\n%s", status, out);
    free(out);
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, NULL), dl_total,
                      "dead letters after --entity");
    {
        char *argv[] = {(char *)ledger_exactly_bin(), "dlq", "--help", NULL};
        char log[512];
        snprintf(log, sizeof log, "%s/dlq-help.log", c.dir);
        status = tk_wait(tk_spawn(argv, log), CMD_TIMEOUT_MS);
        out = tk_read_file(log);
        TK_CHECK(status == 0 && out && strstr(out, "-e, --entity ID") &&
                     strstr(out, "not an entity ID") &&
                     strstr(out, "split in halves") &&
                     strstr(out, "rolls the whole replay back"),
                 "dlq --help does not tell --id from --entity or what a "
                 "failing replay does:\n%s", out ? out : "");
        free(out);
    }

    /* show */
    id = dl_id(&c, "entity_id = '7'");
    status = dlq(&c, &out, "show", id, NULL);
    TK_CHECK(status == 0, "show exited %d:\n%s", status, out);
    TK_CHECK(strstr(out, "entity_id:       7\n") &&
                 strstr(out, "key (text):      7\n") &&
                 strstr(out, "key (hex):       37\n") &&
                 strstr(out, "reason:          ledger: id listed in "
                             "fail_on_ids\n") &&
                 strstr(out, "attempts:        1\n"),
             "show %s:\n%s", id, out);
    tk_note("dlq show %s:\n%s", id, out);
    free(out);
    free(id);
    id = dl_id(&c, "entity_id IS NULL");
    status = dlq(&c, &out, "show", "--id", id, NULL);
    TK_CHECK(status == 0 && strstr(out, "could not be decoded") &&
                 strstr(out, "key (text):      not-a-number\n") &&
                 strstr(out, "key (hex):       6e6f742d612d6e756d626572\n"),
             "show of the undecodable one:\n%s", out);
    free(out);
    free(id);
    status = dlq(&c, &out, "show", "999999", NULL);
    TK_CHECK(status == 1 && strstr(out, "no dead letter"),
             "show of a missing ID exited %d:\n%s", status, out);
    free(out);

    /* bad usage changes nothing */
    status = dlq(&c, &out, "discard", NULL);
    TK_CHECK(status == 2 && strstr(out, "or pass --all; nothing changed"),
             "discard without a filter exited %d:\n%s", status, out);
    free(out);
    status = dlq(&c, &out, "replay", NULL);
    TK_CHECK(status == 2, "replay without a filter exited %d:\n%s", status, out);
    free(out);
    status = dlq(&c, &out, "frobnicate", NULL);
    TK_CHECK(status == 2 && strstr(out, "unknown action 'frobnicate'"),
             "unknown action exited %d:\n%s", status, out);
    free(out);
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, NULL), dl_total,
                      "dead letters after refusals");

    /* Replay with fail_on_ids still set: failed again, nothing applied. */
    status = dlq(&c, &out, "replay", "--all", NULL);
    TK_CHECK(status == 0, "replay (still failing) exited %d:\n%s", status, out);
    {
        char want[256];
        snprintf(want, sizeof want,
                 "replayed 0 dead letter(s) of pipeline ledger through handler "
                 "'ledger'; %" PRId64 " left in place (1 without an entity ID, "
                 "1 without a looked-up row, %" PRId64 " failed again)",
                 dl_total, n_fail);
        TK_CHECK(strstr(out, want) != NULL, "replay did not say '%s':\n%s",
                 want, out);
    }
    free(out);
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, NULL), dl_total,
                      "dead letters after a failed replay");
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, "attempts = 2"), n_fail,
                      "attempts counted for the records that failed again");
    TK_CHECK_EQ_INT64(ledger_rows(c.db), ledger_before, "ledger after a failed replay");

    write_config(&c, 0);

    /* A SQL error in the handler fails its record only: the replay
     * bisects, keeps that record's dead letters and applies the rest. */
    {
        int64_t planted_part, k, left;
        char want[256], where[128];

        tk_sql(c.db, "INSERT INTO ledger (topic, partition, \"offset\","
                     " entity_id) SELECT topic, partition, \"offset\","
                     " entity_id FROM exactly.dead_letters WHERE entity_id ="
                     " '13' ORDER BY id LIMIT 1");
        planted_part = tk_sql_int64(c.db, "SELECT partition FROM"
                                          " exactly.dead_letters WHERE"
                                          " entity_id = '13' ORDER BY id"
                                          " LIMIT 1");
        snprintf(where, sizeof where, "entity_id = '13' AND partition = %"
                 PRId64, planted_part);
        /* one record: entity 13 on that partition */
        k = cli_dead_letters(&c, where);
        status = dlq(&c, &out, "replay", "--all", NULL);
        tk_note("replay over a planted row:\n%s", out);
        TK_CHECK(status == 0 && strstr(out, "duplicate key value"),
                 "replay over a planted row exited %d:\n%s", status, out);
        snprintf(want, sizeof want,
                 "replayed %" PRId64 " dead letter(s) of pipeline ledger "
                 "through handler 'ledger'; %" PRId64 " left in place (1 "
                 "without an entity ID, 1 without a looked-up row, %" PRId64
                 " failed again)",
                 n_fail - k, k + 2, k);
        TK_CHECK(strstr(out, want) != NULL, "replay did not say '%s':\n%s",
                 want, out);
        free(out);
        left = cli_dead_letters(&c, NULL);
        TK_CHECK_EQ_INT64(left, k + 2, "dead letters after a bisected replay");
        snprintf(where, sizeof where, "entity_id = '13' AND partition = %"
                 PRId64 " AND attempts = 3 AND sqlstate = '23505' AND reason"
                 " LIKE '%%duplicate key value%%'", planted_part);
        TK_CHECK_EQ_INT64(cli_dead_letters(&c, where), k,
                          "dead letters of the record that failed again");
        TK_CHECK_EQ_INT64(ledger_rows(c.db), ledger_before + 1 + n_fail - k,
                          "ledger after a bisected replay (the planted row and"
                          " the applied records)");
        TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM"
                                             " exactly.outbox"),
                          ledger_before + n_fail - k,
                          "outbox events after a bisected replay (none for"
                          " the planted row nor the failed record)");
        tk_sql(c.db, "DELETE FROM ledger WHERE entity_id = '13' AND"
                     " (topic, partition, \"offset\") IN (SELECT topic,"
                     " partition, \"offset\" FROM exactly.dead_letters)");
        n_fail = k; /* what the next replay applies */
    }

    /* The real replay. */
    status = dlq(&c, &out, "replay", "--all", NULL);
    TK_CHECK(status == 0, "replay exited %d:\n%s", status, out);
    {
        char want[256];
        snprintf(want, sizeof want,
                 "replayed %" PRId64 " dead letter(s) of pipeline ledger "
                 "through handler 'ledger'; 2 left in place (1 without an "
                 "entity ID, 1 without a looked-up row, 0 failed again)",
                 n_fail);
        TK_CHECK(strstr(out, want) != NULL, "replay did not say '%s':\n%s",
                 want, out);
        TK_CHECK(strstr(out, "no entity ID: cannot be replayed") &&
                     strstr(out, "lookup found no row"),
                 "replay does not list what it left:\n%s", out);
    }
    tk_note("dlq replay --all:\n%s", out);
    free(out);
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, NULL), 2,
                      "dead letters after the replay");
    TK_CHECK_EQ_INT64(ledger_rows(c.db), N_MSGS, "ledger rows after the replay");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT coalesce(sum(n), 0) FROM"
                                         " ledger_counters WHERE entity_id IN"
                                         " ('7', '13')"),
                      produced[7] + produced[13], "counters of the replayed IDs");

    /* discard one set, then replay the last one by ID once its row exists */
    status = dlq(&c, &out, "discard", "--partition", "0", NULL);
    TK_CHECK(status == 0 && strstr(out, "discarded 1 dead letter(s) of pipeline "
                                        "ledger"),
             "discard --partition 0 exited %d:\n%s", status, out);
    free(out);
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, "entity_id IS NULL"), 0,
                      "the undecodable one after discard");
    tk_sql(c.db, "INSERT INTO accounts VALUES (%d, 'late', 0)", NO_ROW_ID);
    id = dl_id(&c, "entity_id = '777'");
    status = dlq(&c, &out, "replay", id, NULL);
    TK_CHECK(status == 0 && strstr(out, "replayed 1 dead letter(s)"),
             "replay %s exited %d:\n%s", id, status, out);
    free(out);
    free(id);
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, NULL), 0,
                      "dead letters at the end");

    /* Every offset but the undecodable one, exactly once (the ledger's key
     * refuses twice), and the counters equal what was produced. */
    {
        int64_t hw[NP], e;
        int p;
        ledger_high_watermarks(c.bootstraps, TOPIC, NP, hw);
        TK_CHECK_EQ_INT64(hw[0] + hw[1], N_MSGS + 2, "messages in the topic");
        TK_CHECK_EQ_INT64(ledger_rows(c.db), N_MSGS + 1, "ledger rows at the end");
        for (p = 0; p < NP; p++)
            TK_CHECK_EQ_INT64(tk_sql_int64(c.db,
                                           "SELECT count(DISTINCT \"offset\")"
                                           " FROM ledger WHERE topic = '" TOPIC
                                           "' AND partition = %d AND \"offset\""
                                           " >= 0 AND \"offset\" < %" PRId64,
                                           p, hw[p]),
                              hw[p] - (p == 0 ? 1 : 0),
                              "distinct ledger offsets of a partition");
        for (e = 1; e <= N_IDS; e++)
            TK_CHECK_EQ_INT64(tk_sql_int64(c.db,
                                           "SELECT coalesce(sum(n), 0) FROM"
                                           " ledger_counters WHERE entity_id ="
                                           " '%" PRId64 "'",
                                           e),
                              produced[e], "an ID's counter");
        TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT n FROM ledger_counters"
                                             " WHERE entity_id = '777'"),
                          1, "the late account's counter");
        TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM"
                                             " ledger_counters"),
                          N_IDS + 1, "counters");
    }
    /* Replay runs the handler in a transaction that has the outbox: one
     * event per applied message, none for what failed or rolled back. */
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM exactly.outbox"),
                      N_MSGS + 1, "outbox events (one per ledger row)");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db,
                                   "SELECT count(*) FROM ledger l LEFT JOIN "
                                   "exactly.outbox o ON convert_from(o.key, "
                                   "'UTF8') = l.topic || '/' || l.partition "
                                   "|| '/' || l.\"offset\" WHERE o.id IS NULL"),
                      0, "ledger rows without their event");
    tk_note("dlq: list, show, replay (failing, bisected, applied), discard");

    cli_kit_stop(&c);
    return 0;
}
