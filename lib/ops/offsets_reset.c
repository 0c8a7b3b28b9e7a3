/*
 * offsets_reset.c - `exactly offsets reset`: the plan, the guard and the
 * apply of offsets.h.
 */
#include "ops/offsets.h"

#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "err.h"
#include "kafka/admin.h"
#include "pg_conn.h"
#include "pg_open.h"
#include "pg_xact.h"
#include "store_exec.h"
#include "store_offsets.h"
#include "store_version.h"

static exactly_err oom(char *err, size_t errsz)
{
    snprintf(err, errsz, "%s", exactly_strerror(EXACTLY_ENOMEM));
    return EXACTLY_ENOMEM;
}

/* "user@host" of whoever runs this process, for audit rows. */
static void requested_by(char *out, size_t out_size)
{
    char host[256];
    const char *user = getenv("USER");
    char pwbuf[1024];
    struct passwd pw, *pwp = NULL;
    char login[256];

    /* getlogin() names the person at the terminal even under sudo; a cron
     * job or a container has none, then USER, then the effective user. */
    if (getlogin_r(login, sizeof(login)) == 0 && login[0])
        user = login;
    else if (!user || !*user) {
        if (getpwuid_r(geteuid(), &pw, pwbuf, sizeof(pwbuf), &pwp) == 0 && pwp)
            user = pwp->pw_name;
        else
            user = "unknown";
    }
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "unknown");
    host[sizeof(host) - 1] = '\0';
    snprintf(out, out_size, "%s@%s", user, host);
}

/* The mode as the audit row and the messages say it. */
static void describe_mode(ops_reset *r, const char *canon)
{
    char *t = r->mode_text;
    size_t n = sizeof(r->mode_text);

    switch (r->mode) {
    case OPS_RESET_EARLIEST: snprintf(t, n, "to-earliest"); break;
    case OPS_RESET_LATEST: snprintf(t, n, "to-latest"); break;
    case OPS_RESET_OFFSET: snprintf(t, n, "to-offset %" PRId64, r->arg); break;
    case OPS_RESET_TIME: snprintf(t, n, "to-time %s", canon); break;
    case OPS_RESET_SHIFT: snprintf(t, n, "shift-by %+" PRId64, r->arg); break;
    case OPS_RESET_NONE: t[0] = '\0'; break;
    }
}

/* The services and the schema; the time of --to-time read by the server. */
static exactly_err open_services(ops_reset *r, int64_t *time_ms, char *canon,
                                 size_t canon_size, char *err, size_t errsz)
{
    char reset[16], why[1536];
    exactly_err rc;

    /* Its transaction's lock and statement bounds are the session's. */
    rc = exactly_pg_connect_own_session(r->cfg, "exactly-offsets-reset",
                                        &r->conn, err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    rc = store_check_version(r->conn, r->cfg, NULL, err, errsz);
    if (rc != EXACTLY_OK)
        return rc == EXACTLY_EINVAL ? EXACTLY_EDATABASE : rc;
    if (r->mode == OPS_RESET_TIME) {
        rc = pg_parse_time(r->conn, r->time_text, time_ms, canon, canon_size,
                           why, sizeof(why));
        if (rc != EXACTLY_OK) {
            snprintf(err, errsz, "--to-time: %s", why);
            return rc;
        }
    }
    describe_mode(r, canon);
    r->rk = kafka_admin_new(r->cfg, r->p, "offsets-reset", reset, err, errsz);
    return r->rk ? EXACTLY_OK : EXACTLY_ECONFIG;
}

/* Kafka's offset by time (--to-time) of every partition of the plan. */
static exactly_err read_by_time(ops_reset *r, const int32_t *parts,
                                int64_t time_ms, const char *canon, char *err,
                                size_t errsz)
{
    int64_t *by = calloc(r->n + 1, sizeof(*by));
    char why[512];
    size_t i;

    if (!by)
        return oom(err, errsz);
    if (kafka_admin_offsets_for_time(r->rk, r->topic, parts, r->n, time_ms, by,
                                     OPS_KAFKA_TIMEOUT_MS, why,
                                     sizeof(why)) != 0) {
        snprintf(err, errsz, "offsets for time %s: %s", canon, why);
        free(by);
        return EXACTLY_EKAFKA;
    }
    for (i = 0; i < r->n; i++)
        r->v[i].by_time = by[i];
    free(by);
    return EXACTLY_OK;
}

exactly_err ops_reset_plan(ops_reset *r, char *err, size_t errsz)
{
    char canon[64] = "";
    int64_t time_ms = 0;
    int32_t *parts = NULL;
    exactly_err rc;
    int n_parts;
    size_t i;

    rc = open_services(r, &time_ms, canon, sizeof(canon), err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    n_parts = kafka_admin_partition_count(r->rk, r->topic,
                                          OPS_KAFKA_TIMEOUT_MS, err, errsz);
    if (n_parts < 0)
        return EXACTLY_EKAFKA;
    if (r->partition >= n_parts) {
        snprintf(err, errsz,
                 "topic %s has %d partition(s); there is no partition %" PRId64,
                 r->topic, n_parts, r->partition);
        return EXACTLY_EINVAL;
    }
    r->n = r->partition >= 0 ? 1 : (size_t)n_parts;
    r->v = calloc(r->n + 1, sizeof(*r->v));
    parts = calloc(r->n + 1, sizeof(*parts));
    if (!r->v || !parts) {
        free(parts);
        return oom(err, errsz);
    }
    for (i = 0; i < r->n; i++) {
        ops_reset_part *x = &r->v[i];
        x->partition = parts[i] =
            r->partition >= 0 ? (int32_t)r->partition : (int32_t)i;
        if (kafka_admin_watermarks(r->rk, r->topic, x->partition, &x->low,
                                   &x->lso, OPS_KAFKA_TIMEOUT_MS, err,
                                   errsz) != 0) {
            free(parts);
            return EXACTLY_EKAFKA;
        }
    }
    if (r->mode == OPS_RESET_TIME) {
        rc = read_by_time(r, parts, time_ms, canon, err, errsz);
        if (rc != EXACTLY_OK) {
            free(parts);
            return rc;
        }
    }
    free(parts);
    return EXACTLY_OK;
}

/* Clamps x->want into [low, lso] and says so. */
static void clamp(ops_reset_part *x)
{
    x->to = x->want;
    if (x->want < x->low) {
        x->to = x->low;
        snprintf(x->note, sizeof(x->note),
                 "clamped: %" PRId64 " is below the low watermark", x->want);
    } else if (x->want > x->lso) {
        x->to = x->lso;
        snprintf(x->note, sizeof(x->note),
                 "clamped: %" PRId64 " is past the end (LSO)", x->want);
    }
}

/* Sets want/to of every partition for a mode that does not depend on the
 * stored offset, or from it for --shift-by. EXACTLY_EINVAL (err set) when
 * a partition cannot be shifted. */
static exactly_err compute(ops_reset *r, char *err, size_t errsz)
{
    size_t i;

    for (i = 0; i < r->n; i++) {
        ops_reset_part *x = &r->v[i];
        x->note[0] = '\0';
        switch (r->mode) {
        case OPS_RESET_EARLIEST: x->want = x->low; break;
        case OPS_RESET_LATEST: x->want = x->lso; break;
        case OPS_RESET_OFFSET: x->want = r->arg; break;
        case OPS_RESET_TIME:
            x->want = x->by_time >= 0 ? x->by_time : x->lso;
            break;
        case OPS_RESET_SHIFT:
            if (!x->from_set) {
                snprintf(err, errsz,
                         "partition %d has no stored offset to shift; use "
                         "--to-offset, --to-earliest, --to-latest or "
                         "--to-time",
                         (int)x->partition);
                return EXACTLY_EINVAL;
            }
            x->want = x->from + r->arg;
            break;
        case OPS_RESET_NONE: break;
        }
        clamp(x);
        if (r->mode == OPS_RESET_TIME && x->by_time < 0 && !x->note[0])
            snprintf(x->note, sizeof(x->note),
                     "no message at or after the time: the end");
    }
    return EXACTLY_OK;
}

/* The plan's partitions, stored offsets and targets as arrays. */
typedef struct columns {
    int32_t *parts;
    int *has;
    int64_t *from, *to;
} columns;

static void columns_free(columns *c)
{
    free(c->parts);
    free(c->has);
    free(c->from);
    free(c->to);
}

static exactly_err columns_new(const ops_reset *r, columns *c, char *err,
                               size_t errsz)
{
    size_t i;

    c->parts = calloc(r->n + 1, sizeof(*c->parts));
    c->has = calloc(r->n + 1, sizeof(*c->has));
    c->from = calloc(r->n + 1, sizeof(*c->from));
    c->to = calloc(r->n + 1, sizeof(*c->to));
    if (!c->parts || !c->has || !c->from || !c->to) {
        columns_free(c);
        return oom(err, errsz);
    }
    for (i = 0; i < r->n; i++)
        c->parts[i] = r->v[i].partition;
    return EXACTLY_OK;
}

/* Reads the stored offsets into the plan (FOR UPDATE with lock). */
static exactly_err read_from(ops_reset *r, columns *c, int lock, char *err,
                             size_t errsz)
{
    exactly_err rc;
    size_t i;

    rc = store_offsets_read(r->conn, r->cfg->postgres.schema, r->p->name,
                            r->topic, c->parts, r->n, lock, c->has, c->from,
                            err, errsz);
    for (i = 0; rc == EXACTLY_OK && i < r->n; i++) {
        r->v[i].from_set = c->has[i];
        r->v[i].from = c->from[i];
    }
    return rc;
}

exactly_err ops_reset_preview(ops_reset *r, char *err, size_t errsz)
{
    columns c = {0};
    exactly_err rc = columns_new(r, &c, err, errsz);

    if (rc == EXACTLY_OK)
        rc = read_from(r, &c, 0, err, errsz);
    if (rc == EXACTLY_OK)
        rc = compute(r, err, errsz);
    columns_free(&c);
    return rc;
}

exactly_err ops_reset_guard(ops_reset *r, char *err, size_t errsz)
{
    char state[64];
    exactly_err rc;
    int kres;

    kres = kafka_admin_group_members(r->rk, r->p->group, OPS_KAFKA_TIMEOUT_MS,
                                     &r->members, state, sizeof(state),
                                     r->group_err, sizeof(r->group_err));
    r->unknown = kres < 0;
    rc = store_offsets_live_owners(r->conn, r->cfg->postgres.schema,
                                   r->p->name, NULL, &r->owners, &r->n_owners,
                                   err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    if (kres != 0 || (size_t)r->members < r->n_owners)
        r->members = (int)r->n_owners;
    return EXACTLY_OK;
}

int ops_reset_blocked(const ops_reset *r)
{
    return r->members > 0 || r->unknown;
}

/* Whether x moves back: its messages from x->to on are read again. */
static int moves_back(const ops_reset_part *x)
{
    return x->from_set && x->to < x->from;
}

/* --forget-dedup, inside the transaction: the dedup keys of the
 * partitions moved back, from their new offsets. */
static exactly_err forget_dedup(ops_reset *r, char *err, size_t errsz)
{
    int32_t *parts = calloc(r->n + 1, sizeof(*parts));
    int64_t *from = calloc(r->n + 1, sizeof(*from));
    int64_t *deleted = calloc(r->n + 1, sizeof(*deleted));
    size_t i, k = 0;
    exactly_err rc = EXACTLY_OK;

    if (!parts || !from || !deleted) {
        rc = oom(err, errsz);
        goto cleanup;
    }
    for (i = 0; i < r->n; i++)
        if (moves_back(&r->v[i])) {
            parts[k] = r->v[i].partition;
            from[k++] = r->v[i].to;
        }
    if (k > 0)
        rc = store_dedup_forget(r->conn, r->cfg->postgres.schema, r->p->name,
                                r->topic, parts, from, k, deleted, err,
                                errsz);
    for (i = 0, k = 0; rc == EXACTLY_OK && i < r->n; i++)
        if (moves_back(&r->v[i]))
            r->v[i].forgotten = deleted[k++];
cleanup:
    free(parts);
    free(from);
    free(deleted);
    return rc;
}

/* Inside the transaction: lock, recompute, write the offsets, audit, and
 * with --forget-dedup the dedup keys of what is read again. */
static exactly_err write_reset(ops_reset *r, columns *c, char *err,
                               size_t errsz)
{
    char who[512];
    store_reset_audit a;
    exactly_err rc;
    size_t i;

    rc = read_from(r, c, 1, err, errsz);
    if (rc == EXACTLY_OK)
        rc = compute(r, err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    for (i = 0; i < r->n; i++)
        c->to[i] = r->v[i].to;
    rc = store_offsets_set(r->conn, r->cfg->postgres.schema, r->p->name,
                           r->topic, c->parts, c->to, r->n, err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    requested_by(who, sizeof(who));
    a.pipeline = r->p->name;
    a.topic = r->topic;
    a.mode = r->mode_text;
    a.reason = r->reason;
    a.requested_by = who;
    rc = store_offset_resets_add(r->conn, r->cfg->postgres.schema, &a,
                                 c->parts, c->has, c->from, c->to, r->n, err,
                                 errsz);
    if (rc == EXACTLY_OK && r->forget_dedup)
        rc = forget_dedup(r, err, errsz);
    return rc;
}

/* The answer to the COMMIT of the transaction that wrote xref's mark was
 * lost (fail, err): asks on a new connection what became of it (pg_xact.h:
 * its mark says). EXACTLY_OK when it committed; fail otherwise,
 * r->outcome_unknown set unless it is known not to have committed.
 * r->commit_note and err say what was found. */
static exactly_err confirm_commit(ops_reset *r, const exactly_xact_ref *xref,
                                  exactly_err fail, char *err, size_t errsz)
{
    char lost[512], why[512];
    exactly_xact_outcome out = EXACTLY_XACT_UNKNOWN;
    PGconn *conn;

    r->commit_lost = 1;
    snprintf(lost, sizeof(lost), "%.500s", err);
    conn = exactly_pg_connect(r->cfg, "exactly-offsets-reset", why,
                              sizeof(why));
    if (conn)
        out = exactly_pg_xact_outcome(conn, r->cfg, xref, why, sizeof(why));
    PQfinish(conn);
    if (out == EXACTLY_XACT_COMMITTED) {
        snprintf(r->commit_note, sizeof(r->commit_note),
                 "the answer to COMMIT was lost (%s); asked on a new "
                 "connection, the transaction committed (its mark %s is "
                 "there)",
                 lost, xref->mark);
        return EXACTLY_OK;
    }
    if (out == EXACTLY_XACT_ABORTED)
        snprintf(r->commit_note, sizeof(r->commit_note),
                 "the answer to COMMIT was lost (%s); asked on a new "
                 "connection, the transaction was rolled back (its mark %s "
                 "is not there, and nothing is writing it)",
                 lost, xref->mark);
    else
        snprintf(r->commit_note, sizeof(r->commit_note),
                 "the answer to COMMIT was lost (%s); whether the transaction "
                 "(mark %s) committed is unknown (%s)",
                 lost, xref->mark, why);
    r->outcome_unknown = out != EXACTLY_XACT_ABORTED;
    snprintf(err, errsz, "%s", r->commit_note);
    return fail;
}

exactly_err ops_reset_apply(ops_reset *r, char *err, size_t errsz)
{
    char ignore[256];
    exactly_xact_ref xref = {{0}};
    columns c = {0};
    exactly_err rc;
    int commit_sent = 0;

    /* The epoch is left alone on purpose: the worker that owns the row
     * keeps its epoch, so its next batch fails only on the moved offset,
     * or, on an idle partition, its comparison of the row sees only the
     * offset moved (worker/follow.c), and it follows the database
     * (engine/position.c, engine_follow_stored). A new epoch would read
     * to it as a takeover, and it would leave the partition idle until
     * the next rebalance. */
    rc = columns_new(r, &c, err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    rc = exactly_pg_exec(r->conn, "BEGIN", 0, NULL, NULL, err, errsz);
    if (rc == EXACTLY_OK) {
        rc = write_reset(r, &c, err, errsz);
        /* Its mark, to learn its outcome should COMMIT go unanswered. */
        if (rc == EXACTLY_OK)
            rc = exactly_pg_xact_mark(r->conn, r->cfg->postgres.schema,
                                      &xref, err, errsz);
        if (rc == EXACTLY_OK) {
            commit_sent = 1;
            rc = exactly_pg_exec(r->conn, "COMMIT", 0, NULL, NULL, err, errsz);
            if (rc == EXACTLY_OK)
                exactly_pg_xact_forget(r->conn, r->cfg->postgres.schema,
                                       &xref);
        } else {
            (void)exactly_pg_exec(r->conn, "ROLLBACK", 0, NULL, NULL, ignore,
                                  sizeof(ignore));
        }
    }
    /* An error the server answered COMMIT with means no commit; a
     * connection gone before the answer leaves it unknown (DESIGN §3). */
    if (rc != EXACTLY_OK && commit_sent && PQstatus(r->conn) != CONNECTION_OK)
        rc = confirm_commit(r, &xref, rc, err, errsz);
    columns_free(&c);
    return rc;
}

exactly_err ops_reset_commit_kafka(ops_reset *r, char *err, size_t errsz)
{
    columns c = {0};
    exactly_err rc;
    size_t i;

    rc = columns_new(r, &c, err, errsz);
    if (rc != EXACTLY_OK)
        return rc;
    for (i = 0; i < r->n; i++)
        c.to[i] = r->v[i].to;
    if (kafka_admin_commit(r->rk, r->topic, c.parts, c.to, r->n, err, errsz) !=
        0)
        rc = EXACTLY_EKAFKA;
    columns_free(&c);
    return rc;
}

void ops_reset_free(ops_reset *r)
{
    store_strings_free(r->owners, r->n_owners);
    r->owners = NULL;
    r->n_owners = 0;
    free(r->v);
    r->v = NULL;
    kafka_admin_free(r->rk);
    r->rk = NULL;
    if (r->conn)
        PQfinish(r->conn);
    r->conn = NULL;
}
