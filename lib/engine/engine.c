/*
 * engine.c - the engine's state outside a batch: the partition table, the
 * calls on a partition's consumer, the crash guard's memory of attempts,
 * and the owner's callbacks (engine.h).
 */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "engine_internal.h"
#include "lookup.h"
#include "pg_open.h"
#include "source.h"

void engine_init(engine *e, const cfg_pipeline *p, const engine_ops *ops,
                 void *ops_arg)
{
    memset(e, 0, sizeof(*e));
    e->p = p;
    e->ops = ops;
    e->ops_arg = ops_arg;
}

void engine_use_offsets(engine *e)
{
    memset(&e->pos, 0, sizeof(e->pos));
    e->pos.key = e->p->name;
    e->pos.fence_sql = e->sql.fence;
    e->pos.group_fence_sql = e->sql.fence_group;
    e->pos.read_sql = e->sql.read;
    e->pos.dl_key = e->p->name;
    e->pos.crash_guard = 1;
    e->pos.dedup = e->p->dedup.enabled;
    e->pos.kafka_commit = 1;
    e->pos.reclaim = 1;
}

exactly_err engine_conn_ready(engine *e, const char *schema)
{
    if (!e->sql_ready) {
        free(e->lookup_sql);
        free(e->key_column);
        e->lookup_sql = e->key_column = NULL;
        char *unlocked = NULL;
        if (exactly_store_sql_init(&e->sql, e->conn, schema) != 0 ||
            (e->extra_writer
                 ? exactly_lookup_sql_shared(e->conn, e->p, &e->lookup_sql,
                                             &e->key_column, &unlocked)
                 : exactly_lookup_sql(e->conn, e->p, &e->lookup_sql,
                                      &e->key_column)) != EXACTLY_OK)
            return EXACTLY_ENOMEM;
        if (unlocked)
            exactly_log(EXACTLY_LOG_WARN, "engine",
                        "the lookup cannot lock the rows it reads, so it "
                        "reads them unlocked: a source row changed meanwhile "
                        "can be written from its old state",
                        LOG_STR("error", unlocked));
        free(unlocked);
        e->sql_ready = 1;
    }
    /* host->emit's outbox insert: set on every connection, since a lost
     * one clears the transaction. */
    e->txn.emit_sql = e->sql.emit;
    e->conn_serial++;
    return EXACTLY_OK;
}

exactly_err engine_connect(engine *e, const exactly_config *cfg, int attempt)
{
    exactly_err rc = exactly_pg_open_checked(cfg, e->owner, attempt, &e->conn);

    if (rc == EXACTLY_OK)
        rc = engine_conn_ready(e, cfg->postgres.schema);
    if (rc != EXACTLY_OK)
        (void)engine_conn_drop(e);
    return rc;
}

int engine_conn_drop(engine *e)
{
    if (!e->conn)
        return 0;
    exactly_txn_clear(&e->txn);
    PQfinish(e->conn);
    e->conn = NULL;
    return 1;
}

static void part_free(part *pt)
{
    if (!pt)
        return;
    engine_part_drop(pt, pt->n_buf);
    free(pt->buf);
    free(pt->topic);
    free(pt);
}

void engine_free(engine *e)
{
    while (e->n_parts > 0)
        engine_part_remove(e, e->parts[e->n_parts - 1]);
    free(e->parts);
    e->parts = NULL;
    e->cap_parts = 0;
    if (e->paused_gone)
        rd_kafka_topic_partition_list_destroy(e->paused_gone);
    e->paused_gone = NULL;
    exactly_plugin_free(e->plugin);
    e->plugin = NULL;
    batch_free(&e->bb);
    dead_letters_free(&e->dl);
    exactly_txn_clear(&e->txn);
    exactly_store_sql_free(&e->sql);
    e->sql_ready = 0;
    while (e->n_attempted > 0)
        free(e->attempted[--e->n_attempted].topic);
    free(e->attempted);
    e->attempted = NULL;
    free(e->lookup_sql);
    free(e->key_column);
    e->lookup_sql = e->key_column = NULL;
    if (e->conn)
        PQfinish(e->conn);
    e->conn = NULL;
}

exactly_err engine_db_open(engine *e)
{
    return e->ops->db_open(e->ops_arg);
}

void engine_db_lost(engine *e)
{
    e->ops->db_lost(e->ops_arg);
}

/* Whatever the connection's pipeline state: a held batch is settled
 * (rolled back) after the batch sent behind it committed or was rolled
 * back itself, which left pipeline mode. Only a connection that cannot be
 * used is lost. */
void engine_rollback(engine *e)
{
    if (!e->conn || PQstatus(e->conn) != CONNECTION_OK) {
        engine_db_lost(e);
        return;
    }
    if (exactly_txn_rollback(&e->txn) != EXACTLY_OK ||
        PQstatus(e->conn) != CONNECTION_OK)
        engine_db_lost(e);
}

/* engine_internal.h says what it does. */
void engine_stats_add(engine_stats *to, const engine_stats *a,
                      const engine_stats *b)
{
#define ADD(f) to->f += a->f - b->f
    ADD(consumed);
    ADD(applied);
    ADD(deduplicated);
    ADD(dead_lettered);
    ADD(skipped_missing);
    ADD(batches_committed);
    ADD(batches_rolled_back);
    ADD(batches_fenced);
    ADD(retries);
    ADD(handler_failures);
#undef ADD
}

void engine_publish_position(engine *e, const part *pt)
{
    if (e->ops->position)
        e->ops->position(e->ops_arg, pt);
}

/* ---- the partition table ------------------------------------------------ */

part *engine_part_find(engine *e, const char *topic, int32_t partition)
{
    size_t i;

    for (i = 0; i < e->n_parts; i++)
        if (e->parts[i]->partition == partition &&
            strcmp(e->parts[i]->topic, topic) == 0)
            return e->parts[i];
    return NULL;
}

part *engine_part_scan(engine *e, const rd_kafka_message_t *m)
{
    const char *topic;
    size_t i;

    for (i = 0; i < e->n_parts; i++)
        if (engine_part_holds(e->parts[i], m))
            goto found;
    topic = rd_kafka_topic_name(m->rkt);
    for (i = 0; i < e->n_parts; i++)
        if (e->parts[i]->partition == m->partition &&
            strcmp(e->parts[i]->topic, topic) == 0)
            goto found;
    return NULL;

found:
    e->last_part = i;
    return e->parts[i];
}

part *engine_part_add(engine *e, const char *topic, int32_t partition)
{
    part *pt = calloc(1, sizeof(*pt));

    if (!pt || !(pt->topic = strdup(topic))) {
        free(pt);
        return NULL;
    }
    pt->partition = partition;
    if (e->n_parts == e->cap_parts) {
        size_t cap = e->cap_parts ? e->cap_parts * 2 : 16;
        part **np = realloc(e->parts, cap * sizeof(*np));
        if (!np) {
            part_free(pt);
            return NULL;
        }
        e->parts = np;
        e->cap_parts = cap;
    }
    e->parts[e->n_parts++] = pt;
    return pt;
}

void engine_part_remove(engine *e, part *pt)
{
    size_t i;

    for (i = 0; i < e->n_parts; i++) {
        if (e->parts[i] == pt) {
            e->parts[i] = e->parts[--e->n_parts];
            break;
        }
    }
    if (pt->paused && e->rk) {
        if (!e->paused_gone)
            e->paused_gone = rd_kafka_topic_partition_list_new(4);
        if (!rd_kafka_topic_partition_list_find(e->paused_gone, pt->topic,
                                                pt->partition))
            rd_kafka_topic_partition_list_add(e->paused_gone, pt->topic,
                                              pt->partition);
    }
    part_free(pt);
}

void engine_part_drop(part *pt, size_t n)
{
    size_t i;

    if (n > pt->n_buf)
        n = pt->n_buf;
    for (i = 0; i < n; i++)
        rd_kafka_message_destroy(pt->buf[i]);
    if (pt->n_buf > n)
        memmove(pt->buf, pt->buf + n, (pt->n_buf - n) * sizeof(*pt->buf));
    pt->n_buf -= n;
    if (pt->n_buf > 0)
        pt->first_at_ms = exactly_now_ms();
}

size_t engine_part_below(const part *pt, int64_t offset)
{
    size_t lo = 0, hi = pt->n_buf;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pt->buf[mid]->offset < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const rd_kafka_message_t *engine_part_msg(const part *pt, int64_t offset)
{
    size_t i = engine_part_below(pt, offset);

    return i < pt->n_buf && pt->buf[i]->offset == offset ? pt->buf[i] : NULL;
}

/* ---- the partition on the consumer --------------------------------------- */

void engine_part_commit(engine *e, part *pt)
{
    if (!e->pos.kafka_commit)
        return; /* a reprocess is no member of the group: it commits nothing */
    exactly_kafka_commit(e->rk, pt->topic, pt->partition, pt->next_offset);
}

void engine_part_seek(engine *e, part *pt, int64_t offset)
{
    int owed = pt->seek_owed;

    /* Not made, the consumer goes on from where it was: the messages it
     * delivers from there would make the next batch store offsets it
     * never applied. They are dropped until a seek is made. */
    pt->seek_owed = exactly_kafka_seek(e->rk, pt->topic, pt->partition,
                                       offset) != EXACTLY_OK;
    pt->seek_to = offset;
    if (owed && !pt->seek_owed)
        exactly_log(EXACTLY_LOG_INFO, "kafka", "seek made", LOG_PART(pt),
                    LOG_INT("offset", offset));
}

void engine_part_seek_owed(engine *e, part *pt)
{
    if (pt->seek_owed)
        engine_part_seek(e, pt, pt->seek_to);
}

void engine_part_pause(engine *e, part *pt, int pause)
{
    if (pt->paused == pause)
        return;
    exactly_kafka_pause(e->rk, pt->topic, pt->partition, pause);
    pt->paused = pause;
}

void engine_part_pause_assigned(engine *e, part *pt, int pause)
{
    int gone_paused = e->paused_gone &&
                      rd_kafka_topic_partition_list_del(
                          e->paused_gone, pt->topic, pt->partition);

    if (pause || gone_paused)
        exactly_kafka_pause(e->rk, pt->topic, pt->partition, pause);
    pt->paused = pause;
}

int64_t engine_part_position(engine *e, part *pt)
{
    if (pt->seek_owed)
        return -1;
    return exactly_kafka_position(e->rk, pt->topic, pt->partition);
}

/* ---- the crash guard's memory -------------------------------------------- */

static struct engine_attempted *attempted_slot(engine *e, const part *pt,
                                               int add)
{
    size_t i;
    struct engine_attempted *a;

    for (i = 0; i < e->n_attempted; i++)
        if (e->attempted[i].partition == pt->partition &&
            strcmp(e->attempted[i].topic, pt->topic) == 0)
            return &e->attempted[i];
    if (!add)
        return NULL;
    a = realloc(e->attempted, (e->n_attempted + 1) * sizeof(*a));
    if (!a)
        return NULL;
    e->attempted = a;
    a = &e->attempted[e->n_attempted];
    a->topic = strdup(pt->topic);
    if (!a->topic)
        return NULL;
    a->partition = pt->partition;
    a->start = -1;
    e->n_attempted++;
    return a;
}

int engine_attempted(engine *e, const part *pt, int64_t start)
{
    struct engine_attempted *a = attempted_slot(e, pt, 0);
    return a && a->start == start;
}

void engine_set_attempted(engine *e, const part *pt, int64_t start)
{
    struct engine_attempted *a = attempted_slot(e, pt, 1);
    if (a)
        a->start = start;
}
