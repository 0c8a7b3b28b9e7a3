/*
 * The operator role (docs/PRIVILEGES.md, "The operator role (optional)")
 * runs every operator command under exactly the documented grants: what
 * `exactly migrate --print-grants ROLE` prints for the configuration (the
 * worker's grants), the ledger plugin's own tables, and the operator
 * grants the document lists (OPERATOR_GRANTS below, checked against the
 * document).
 *
 *   1. the ledger pipeline with dedup, run by a worker as that role: every
 *      message applied, every dedup key stored; a commit mark older than a
 *      day planted (one a command left behind);
 *   2. as that role: `exactly offsets` shows the stored offset;
 *      `offsets reset --to-offset K --forget-dedup` moves it, writes its
 *      audit row and deletes the dedup keys from K; `dlq list` lists the
 *      planted dead letters, `dlq discard` deletes one, `dlq replay --all`
 *      applies the rest (ledger rows written, dead letters gone);
 *      `exactly reprocess` of a range writes one ledger_reprocess row per
 *      offset, and `reprocess --resume` of it, stopped halfway, the rest;
 *      neither replay nor reprocess says it reads its rows
 *      unlocked (without UPDATE on accounts, reprocess does say so); after
 *      the reset and the replay no commit mark is left, the old one
 *      included (store_marks_forget deletes marks older than a day);
 *      without DELETE on commit_marks a reset still commits, warns, and
 *      leaves its mark;
 *   3. one documented grant revoked at a time, the command that needs it
 *      fails (non-zero exit), names the privilege problem, and changes
 *      nothing: INSERT on commit_marks (reset, replay), INSERT on
 *      offset_resets (reset), DELETE on dead_letters (discard).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_kit.h"
#include "dlq_kit.h"
#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "operator-privileges"
#define OTHER "operator-letters"
#define N_MSGS 20
#define K 10
#define N_LETTERS 4
#define DENIED "permission denied"
#define UNLOCKED "cannot lock the rows it reads"

/* The operator grants of docs/PRIVILEGES.md for this configuration
 * (lookup.table: accounts); %1$s: the role. */
static const char *const OPERATOR_GRANTS[] = {
    "GRANT UPDATE ON TABLE \"accounts\" TO %1$s;",
    "GRANT INSERT ON TABLE \"exactly\".\"offset_resets\" TO %1$s;",
    "GRANT USAGE ON SEQUENCE \"exactly\".\"offset_resets_id_seq\" TO %1$s;",
    "GRANT DELETE ON TABLE \"exactly\".\"dedup_keys\" TO %1$s;",
    "GRANT DELETE ON TABLE \"exactly\".\"dead_letters\" TO %1$s;",
    "GRANT SELECT, INSERT, DELETE ON TABLE \"exactly\".\"commit_marks\" TO "
    "%1$s;",
    "GRANT SELECT, INSERT, UPDATE ON TABLE \"exactly\".\"reprocess_runs\" TO "
    "%1$s;",
    "GRANT USAGE ON SEQUENCE \"exactly\".\"reprocess_runs_id_seq\" TO %1$s;",
    "GRANT EXECUTE ON FUNCTION \"exactly\".\"advance_run\"(text, text, "
    "integer, bigint, bigint, bigint) TO %1$s;",
};
#define N_OPERATOR_GRANTS (sizeof OPERATOR_GRANTS / sizeof OPERATOR_GRANTS[0])

/* The ledger plugin's own tables (plugins/README.md), reprocess's too. */
static const char *const PLUGIN_GRANTS[] = {
    "GRANT INSERT ON TABLE \"ledger\" TO %1$s;",
    "GRANT SELECT, INSERT, UPDATE ON TABLE \"ledger_counters\" TO %1$s;",
    "GRANT INSERT ON TABLE \"ledger_reprocess\" TO %1$s;",
};
#define N_PLUGIN_GRANTS (sizeof PLUGIN_GRANTS / sizeof PLUGIN_GRANTS[0])

static void apply_grants(PGconn *db, const char *const *list, size_t n,
                         const char *role)
{
    size_t i;

    for (i = 0; i < n; i++) {
        char *g;
        TK_CHECK(asprintf(&g, list[i], role) > 0, "out of memory");
        tk_sql(db, "%s", g);
        free(g);
    }
}

/* What the commands may change, read in one go. */
typedef struct state {
    int64_t next_offset, resets, dedup_keys, letters, ledger_other, marks;
} state;

static state read_state(cli_kit *c)
{
    state s;

    s.next_offset = tk_sql_int64(c->db, "SELECT next_offset FROM"
                                        " exactly.offsets");
    s.resets = tk_sql_int64(c->db, "SELECT count(*) FROM"
                                   " exactly.offset_resets");
    s.dedup_keys = tk_sql_int64(c->db, "SELECT count(*) FROM"
                                       " exactly.dedup_keys");
    s.letters = cli_dead_letters(c, NULL);
    s.ledger_other = tk_sql_int64(c->db, "SELECT count(*) FROM ledger WHERE"
                                         " topic = '" OTHER "'");
    s.marks = tk_sql_int64(c->db, "SELECT count(*) FROM"
                                  " exactly.commit_marks");
    return s;
}

/* With `revoke` in force, `exactly ARGS...` must fail, name the privilege
 * problem and object, and change nothing; the grant is then restored. */
#define refused(c, role, revoke, restore, object, ...)                        \
    refused_at(__LINE__, (c), (role), (revoke), (restore), (object),         \
               __VA_ARGS__)

static void refused_at(int line, cli_kit *c, const char *role,
                       const char *revoke, const char *restore,
                       const char *object, const char *a1, const char *a2,
                       const char *a3, const char *a4, const char *a5,
                       const char *a6, const char *a7, const char *a8)
{
    state before, after;
    char *out;
    int st;

    tk_sql(c->db, revoke, role);
    before = read_state(c);
    st = cli_exactly(c, &out, a1, a2, a3, a4, a5, a6, a7, a8, NULL);
    tk_note("line %d: %s %s as a role without what `%s` takes (exit %d):\n%s",
            line, a1, a2, revoke, st, out);
    TK_CHECK(st != 0, "line %d: %s %s succeeded after `%s`:\n%s", line, a1, a2,
             revoke, out);
    TK_CHECK(strstr(out, DENIED) && strstr(out, object),
             "line %d: %s %s after `%s` does not say \"" DENIED "\" naming"
             " %s:\n%s",
             line, a1, a2, revoke, object, out);
    after = read_state(c);
    TK_CHECK(memcmp(&before, &after, sizeof before) == 0,
             "line %d: %s %s refused after `%s` changed something: offset"
             " %" PRId64 "->%" PRId64 ", resets %" PRId64 "->%" PRId64
             ", dedup keys %" PRId64 "->%" PRId64 ", dead letters %" PRId64
             "->%" PRId64 ", ledger rows %" PRId64 "->%" PRId64
             ", marks %" PRId64 "->%" PRId64,
             line, a1, a2, revoke, before.next_offset, after.next_offset,
             before.resets, after.resets, before.dedup_keys,
             after.dedup_keys, before.letters, after.letters,
             before.ledger_other, after.ledger_other, before.marks,
             after.marks);
    free(out);
    tk_sql(c->db, restore, role);
}

int main(void)
{
    cli_kit c;
    ledger_config lc;
    char role[64], conninfo[1200], admin_cfg[600], log[600], *out, *id;
    int st;
    size_t i;

    cli_kit_start(&c, "operator_privileges", TOPIC, 1, "operator.yaml", 1);
    cli_kit_produce_ids(&c, TOPIC, N_MSGS, N_MSGS, 1, NULL);
    ledger_create_reprocess_table(c.db);
    snprintf(role, sizeof role, "exactly_operator_%d", (int)getpid());
    tk_sql(c.db, "CREATE ROLE %s LOGIN", role);

    /* The superuser migrates (admin.yaml); the operator's file is the
     * kit's (operator.yaml), its conninfo naming the role. */
    memset(&lc, 0, sizeof lc);
    lc.bootstraps = c.bootstraps;
    lc.conninfo = c.conninfo;
    lc.topic = TOPIC;
    lc.max_messages = 10;
    lc.max_wait_ms = 50;
    lc.kafka = ledger_short_session;
    lc.pipeline_yaml = "    dedup: {from: key}\n";
    snprintf(admin_cfg, sizeof admin_cfg, "%s/admin.yaml", c.dir);
    snprintf(log, sizeof log, "%s/migrate.log", c.dir);
    ledger_write_config(admin_cfg, &lc);
    ledger_migrate(admin_cfg, log);
    snprintf(conninfo, sizeof conninfo, "%s user=%s", c.conninfo, role);
    lc.conninfo = conninfo;
    ledger_write_config(c.cfg, &lc);

    /* The worker's grants as printed, the plugin's, the operator's. */
    st = cli_exactly(&c, &out, "migrate", "--print-grants", role, NULL);
    TK_CHECK(st == 0, "migrate --print-grants exited %d:\n%s", st, out);
    tk_sql(c.db, "%s", out);
    free(out);
    apply_grants(c.db, PLUGIN_GRANTS, N_PLUGIN_GRANTS, role);
    apply_grants(c.db, OPERATOR_GRANTS, N_OPERATOR_GRANTS, role);

    /* 1. */
    cli_kit_worker_to_idle(&c, 60000);
    TK_CHECK_EQ_INT64(ledger_rows(c.db), N_MSGS, "ledger rows of the worker");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM"
                                         " exactly.dedup_keys"),
                      N_MSGS, "dedup keys stored by the worker");
    dlq_plant_series(&c, LEDGER_PIPELINE, OTHER, N_LETTERS);
    tk_sql(c.db, "INSERT INTO exactly.commit_marks (created_at) VALUES"
                 " (now() - interval '2 days')");

    /* 2. offsets, then reset back with --forget-dedup. */
    st = cli_exactly(&c, &out, "offsets", "--pipeline", LEDGER_PIPELINE,
                     NULL);
    TK_CHECK(st == 0 && strstr(out, TOPIC) && strstr(out, "20"),
             "offsets as the operator role exited %d, or does not show the"
             " stored offset " TOPIC " 20:\n%s",
             st, out);
    free(out);

    /* 3, reset: each grant it needs, revoked in turn. */
    refused(&c, role, "REVOKE INSERT ON exactly.commit_marks FROM %s",
            "GRANT INSERT ON exactly.commit_marks TO %s", "commit_marks",
            "offsets", "reset", "--pipeline", LEDGER_PIPELINE, "--topic",
            TOPIC, "--to-offset", "10");
    refused(&c, role, "REVOKE INSERT ON exactly.offset_resets FROM %s",
            "GRANT INSERT ON exactly.offset_resets TO %s", "offset_resets",
            "offsets", "reset", "--pipeline", LEDGER_PIPELINE, "--topic",
            TOPIC, "--to-offset", "10");

    st = cli_exactly(&c, &out, "offsets", "reset", "--pipeline",
                     LEDGER_PIPELINE, "--topic", TOPIC, "--to-offset", "10",
                     "--forget-dedup", NULL);
    TK_CHECK(st == 0, "offsets reset --forget-dedup as the operator role"
                      " exited %d:\n%s",
             st, out);
    free(out);
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT next_offset FROM"
                                         " exactly.offsets"),
                      K, "stored offset after the reset");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM"
                                         " exactly.offset_resets WHERE"
                                         " from_offset = %d AND to_offset ="
                                         " %d",
                                   N_MSGS, K),
                      1, "audit rows of the reset");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM"
                                         " exactly.dedup_keys"),
                      K, "dedup keys left by --forget-dedup");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM"
                                         " exactly.commit_marks"),
                      0, "commit marks after the reset (its own, and the one"
                         " older than a day)");
    /* Without DELETE on commit_marks the reset still commits (the delete
     * after COMMIT is best effort) and says its mark stays. */
    tk_sql(c.db, "REVOKE DELETE ON exactly.commit_marks FROM %s", role);
    st = cli_exactly(&c, &out, "offsets", "reset", "--pipeline",
                     LEDGER_PIPELINE, "--topic", TOPIC, "--to-offset", "10",
                     NULL);
    TK_CHECK(st == 0 && strstr(out, "cannot delete the commit mark"),
             "offsets reset without DELETE on commit_marks exited %d, or"
             " does not say its mark stays:\n%s",
             st, out);
    free(out);
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM"
                                         " exactly.commit_marks"),
                      1, "commit marks after a reset without DELETE on them");
    tk_sql(c.db, "GRANT DELETE ON exactly.commit_marks TO %s;"
                 " DELETE FROM exactly.commit_marks", role);

    /* dlq list, discard, replay. */
    st = cli_exactly(&c, &out, "dlq", "list", "--pipeline", LEDGER_PIPELINE,
                     NULL);
    TK_CHECK(st == 0 && strstr(out, OTHER),
             "dlq list as the operator role exited %d, or lists no planted"
             " letter:\n%s",
             st, out);
    free(out);
    id = tk_sql_text(c.db, "SELECT min(id)::text FROM exactly.dead_letters");
    refused(&c, role, "REVOKE DELETE ON exactly.dead_letters FROM %s",
            "GRANT DELETE ON exactly.dead_letters TO %s", "dead_letters",
            "dlq", "discard", "--pipeline", LEDGER_PIPELINE, "--id", id,
            NULL, NULL);
    st = cli_exactly(&c, &out, "dlq", "discard", "--pipeline",
                     LEDGER_PIPELINE, "--id", id, NULL);
    TK_CHECK(st == 0, "dlq discard as the operator role exited %d:\n%s", st,
             out);
    free(out);
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, NULL), N_LETTERS - 1,
                      "dead letters after discarding one");
    free(id);

    refused(&c, role, "REVOKE INSERT ON exactly.commit_marks FROM %s",
            "GRANT INSERT ON exactly.commit_marks TO %s", "commit_marks",
            "dlq", "replay", "--pipeline", LEDGER_PIPELINE, "--all", NULL,
            NULL, NULL);
    st = cli_exactly(&c, &out, "dlq", "replay", "--pipeline", LEDGER_PIPELINE,
                     "--all", NULL);
    TK_CHECK(st == 0, "dlq replay as the operator role exited %d:\n%s", st,
             out);
    TK_CHECK(strstr(out, UNLOCKED) == NULL,
             "dlq replay as the operator role read its rows unlocked:\n%s",
             out);
    free(out);
    TK_CHECK_EQ_INT64(cli_dead_letters(&c, NULL), 0,
                      "dead letters after the replay");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM ledger WHERE"
                                         " topic = '" OTHER "'"),
                      N_LETTERS - 1, "ledger rows the replay wrote");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM"
                                         " exactly.commit_marks"),
                      0, "commit marks after the replay");

    /* reprocess of 0..4. */
    st = cli_exactly(&c, &out, "reprocess", "--pipeline", LEDGER_PIPELINE,
                     "--topic", TOPIC, "--partition", "0", "--from", "0",
                     "--to", "4", "-q", NULL);
    TK_CHECK(st == 0, "reprocess as the operator role exited %d:\n%s", st,
             out);
    TK_CHECK(strstr(out, UNLOCKED) == NULL,
             "reprocess as the operator role read its rows unlocked:\n%s",
             out);
    free(out);
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(DISTINCT \"offset\")"
                                         " FROM ledger_reprocess WHERE"
                                         " \"offset\" BETWEEN 0 AND 4"),
                      5, "offsets the reprocess applied");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM"
                                         " exactly.reprocess_runs"),
                      1, "reprocess runs");
    /* --resume of that run, as if it had stopped after offset 2. */
    tk_sql(c.db, "UPDATE exactly.reprocess_runs SET status = 'interrupted',"
                 " next_offset = 3; DELETE FROM ledger_reprocess WHERE"
                 " \"offset\" >= 3");
    id = tk_sql_text(c.db, "SELECT id::text FROM exactly.reprocess_runs");
    st = cli_exactly(&c, &out, "reprocess", "--pipeline", LEDGER_PIPELINE,
                     "--resume", id, "-q", NULL);
    TK_CHECK(st == 0, "reprocess --resume as the operator role exited"
                      " %d:\n%s",
             st, out);
    free(out);
    free(id);
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(DISTINCT \"offset\")"
                                         " FROM ledger_reprocess WHERE"
                                         " \"offset\" BETWEEN 0 AND 4"),
                      5, "offsets applied once the run was resumed");
    TK_CHECK_EQ_INT64(tk_sql_int64(c.db, "SELECT count(*) FROM"
                                         " exactly.reprocess_runs WHERE"
                                         " status = 'done'"),
                      1, "the resumed run done");
    /* Without UPDATE on the lookup's table the lookup cannot lock what it
     * reads: reprocess still applies, and says it reads unlocked. */
    tk_sql(c.db, "REVOKE UPDATE ON accounts FROM %s", role);
    st = cli_exactly(&c, &out, "reprocess", "--pipeline", LEDGER_PIPELINE,
                     "--topic", TOPIC, "--partition", "0", "--from", "5",
                     "--to", "6", "-q", NULL);
    TK_CHECK(st == 0 && strstr(out, UNLOCKED),
             "reprocess without UPDATE on accounts exited %d, or does not say"
             " \"" UNLOCKED "\":\n%s",
             st, out);
    free(out);
    tk_sql(c.db, "GRANT UPDATE ON accounts TO %s", role);

    /* The document lists what this test granted. */
    {
        char path[1024], *doc;
        snprintf(path, sizeof path, "%s/docs/PRIVILEGES.md",
                 tk_env_required("EXACTLY_SOURCE_DIR"));
        doc = tk_read_file(path);
        TK_CHECK(doc != NULL, "cannot read %s", path);
        for (i = 0; i < N_OPERATOR_GRANTS; i++) {
            char *g;
            TK_CHECK(asprintf(&g, OPERATOR_GRANTS[i], "exactly_operator") > 0,
                     "out of memory");
            TK_CHECK(strstr(doc, g) != NULL, "%s lacks \"%s\"", path, g);
            free(g);
        }
        free(doc);
    }

    tk_sql(c.db, "DROP OWNED BY %s CASCADE; DROP ROLE %s", role, role);
    cli_kit_stop(&c);
    return 0;
}
