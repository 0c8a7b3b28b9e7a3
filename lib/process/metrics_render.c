/*
 * metrics_render.c - the supervisor's reading of the shared metrics slots
 * (util/metrics.h): which slot is a partition's current owner, the
 * Prometheus text of /metrics (each series once), and readiness. Every
 * field is read with a relaxed atomic load (the latency buckets with
 * acquire: see render_latency): a slot's one writer is its worker or
 * relay process.
 */
#include "metrics_render.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

static uint64_t ld(const uint64_t *v) { return __atomic_load_n(v, __ATOMIC_RELAXED); }
static int64_t lds(const int64_t *v) { return __atomic_load_n(v, __ATOMIC_RELAXED); }

static const char *const cause_names[RETRY_N_CAUSES] = {
    "connection", "serialization", "deadlock", "timeout", "handler",
    "environment", "other"};

/* A family: HELP and TYPE once, then one sample per worker. */
#define WORKER_COUNTER(name, help, field)                                      \
    do {                                                                       \
        strbuf_printf(sb, "# HELP exactly_%s %s\n# TYPE exactly_%s counter\n", \
                      name, help, name);                                       \
        for (i = 0; i < n; i++)                                                \
            if (slots[i].pipeline[0])                                          \
                strbuf_printf(sb, "exactly_%s{pipeline=\"%s\",worker=\"%d\"} %llu\n", \
                              name, slots[i].pipeline, slots[i].worker,        \
                              (unsigned long long)ld(&slots[i].field));       \
    } while (0)

/* Appends v as a Prometheus label value (backslash, quote, newline
 * escaped). */
static void label_value(strbuf *sb, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            strbuf_printf(sb, "\\%c", *v);
        else if (*v == '\n')
            strbuf_printf(sb, "\\n");
        else
            strbuf_printf(sb, "%c", *v);
    }
}

/* Whether entry pp of slot i is its partition's current owner: the slot's
 * worker is up and has it assigned, and no other such slot of the same
 * pipeline holds it with a newer epoch (an equal epoch: the lower slot). */
int metrics_is_owner(const metrics_slot *slots, size_t n, size_t i,
                     const metrics_partition *pp)
{
    int64_t epoch = lds(&pp->epoch);
    size_t k, j;

    if (!__atomic_load_n(&slots[i].up, __ATOMIC_RELAXED) ||
        !__atomic_load_n(&pp->assigned, __ATOMIC_RELAXED))
        return 0;
    for (k = 0; k < n; k++) {
        if (k == i || !__atomic_load_n(&slots[k].up, __ATOMIC_RELAXED) ||
            strcmp(slots[k].pipeline, slots[i].pipeline) != 0)
            continue;
        for (j = 0; j < METRICS_MAX_PARTITIONS; j++) {
            const metrics_partition *o = &slots[k].parts[j];
            int64_t oe;
            if (!o->topic[0] || o->partition != pp->partition ||
                strcmp(o->topic, pp->topic) != 0 ||
                !__atomic_load_n(&o->assigned, __ATOMIC_RELAXED))
                continue;
            oe = lds(&o->epoch);
            if (oe > epoch || (oe == epoch && k < i))
                return 0;
        }
    }
    return 1;
}

/* A per-partition counter: one series per slot and partition. */
#define PARTITION_COUNTER(name, help, field)                                   \
    do {                                                                       \
        strbuf_printf(sb, "# HELP exactly_%s %s\n# TYPE exactly_%s counter\n", \
                      name, help, name);                                       \
        for (i = 0; i < n; i++)                                                \
            for (j = 0; j < METRICS_MAX_PARTITIONS && slots[i].pipeline[0]; j++) { \
                const metrics_partition *pp = &slots[i].parts[j];              \
                if (!pp->topic[0])                                             \
                    continue;                                                  \
                strbuf_printf(sb, "exactly_%s{pipeline=\"", name);             \
                label_value(sb, slots[i].pipeline);                           \
                strbuf_printf(sb, "\",worker=\"%d\",topic=\"", slots[i].worker); \
                label_value(sb, pp->topic);                                   \
                strbuf_printf(sb, "\",partition=\"%d\"} %llu\n",              \
                              (int)pp->partition,                              \
                              (unsigned long long)ld(&pp->field));             \
            }                                                                  \
    } while (0)

/* A per-partition gauge: one series per partition, from its owner. */
#define PARTITION_GAUGE(name, help, expr)                                      \
    do {                                                                       \
        strbuf_printf(sb, "# HELP exactly_%s %s\n# TYPE exactly_%s gauge\n",   \
                      name, help, name);                                       \
        for (i = 0; i < n; i++)                                                \
            for (j = 0; j < METRICS_MAX_PARTITIONS && slots[i].pipeline[0]; j++) { \
                const metrics_partition *pp = &slots[i].parts[j];              \
                if (!pp->topic[0] || !metrics_is_owner(slots, n, i, pp))               \
                    continue;                                                  \
                strbuf_printf(sb, "exactly_%s{pipeline=\"", name);             \
                label_value(sb, slots[i].pipeline);                           \
                strbuf_printf(sb, "\",topic=\"");                               \
                label_value(sb, pp->topic);                                   \
                strbuf_printf(sb, "\",partition=\"%d\"} %lld\n",              \
                              (int)pp->partition, (long long)(expr));          \
            }                                                                  \
    } while (0)

/* A relay family: HELP and TYPE once, then one sample per relay slot for
 * which `known` holds (an expression of r and s). */
#define RELAY_FAMILY(fam, type, help, known, fmt, value)                      \
    do {                                                                       \
        strbuf_printf(sb, "# HELP exactly_relay_%s %s\n"                      \
                          "# TYPE exactly_relay_%s %s\n",                     \
                      fam, help, fam, type);                                 \
        for (i = 0; i < n; i++) {                                              \
            const metrics_slot *s = &slots[i];                                 \
            const metrics_relay *r = &s->relay;                                \
            if (!r->name[0] || !(known))                                       \
                continue;                                                      \
            strbuf_printf(sb, "exactly_relay_%s{relay=\"", fam);              \
            label_value(sb, r->name);                                          \
            strbuf_printf(sb, "\"} " fmt "\n", value);                       \
        }                                                                      \
    } while (0)

/* The relays' families, when the slots run any. The backlog gauges come
 * from the running relay only: a dead one's last reading would stand
 * still while its outbox grows (exactly_relay_up says it is down). */
static void render_relays(strbuf *sb, const metrics_slot *slots, size_t n)
{
    size_t i;
    int any = 0;

    for (i = 0; i < n; i++)
        any |= slots[i].relay.name[0] != '\0';
    if (!any)
        return;
    RELAY_FAMILY("up", "gauge", "Whether the relay process runs.", 1, "%d",
                 __atomic_load_n(&s->up, __ATOMIC_RELAXED));
    RELAY_FAMILY("publishing", "gauge",
                 "1 while the relay holds its outbox's lock and publishes; 0 "
                 "while another relay does (standby) or it is not connected.",
                 1, "%d",
                 __atomic_load_n(&s->up, __ATOMIC_RELAXED)
                     ? __atomic_load_n(&r->publishing, __ATOMIC_RELAXED)
                     : 0);
    RELAY_FAMILY("restarts_total", "counter",
                 "Times the supervisor restarted this relay.", 1, "%llu",
                 (unsigned long long)ld(&s->restarts));
    RELAY_FAMILY("rows_published_total", "counter",
                 "Outbox rows acknowledged by the broker and marked or "
                 "deleted.", 1, "%llu", (unsigned long long)ld(&r->published));
    RELAY_FAMILY("rows_dead_lettered_total", "counter",
                 "Outbox rows Kafka refused for good, kept in the outbox "
                 "with their reason.", 1, "%llu",
                 (unsigned long long)ld(&r->dead_lettered));
    RELAY_FAMILY("rows_resent_total", "counter",
                 "Records that failed for now (timeout, broker down) and "
                 "stayed pending to be sent again.", 1, "%llu",
                 (unsigned long long)ld(&r->resent));
    RELAY_FAMILY("pending_rows", "gauge",
                 "Outbox rows neither published nor dead-lettered, as the "
                 "running relay last read them.",
                 __atomic_load_n(&s->up, __ATOMIC_RELAXED) &&
                     __atomic_load_n(&r->backlog_known, __ATOMIC_RELAXED),
                 "%lld", (long long)lds(&r->pending));
    RELAY_FAMILY("oldest_pending_age_seconds", "gauge",
                 "Age of the oldest pending outbox row (0: none), as the "
                 "running relay last read it.",
                 __atomic_load_n(&s->up, __ATOMIC_RELAXED) &&
                     __atomic_load_n(&r->backlog_known, __ATOMIC_RELAXED),
                 "%.3f", (double)lds(&r->oldest_pending_ms) / 1000.0);
}

/* The families of a worker slot: one sample per worker. */
static void render_workers(strbuf *sb, const metrics_slot *slots, size_t n)
{
    size_t i;
    int c;

    WORKER_COUNTER("batches_committed_total", "Batch transactions committed.", batches_committed);
    WORKER_COUNTER("batches_rolled_back_total", "Batch transactions rolled back.", batches_rolled_back);
    WORKER_COUNTER("batches_fenced_total", "Batches refused by the fence (another owner).", batches_fenced);
    WORKER_COUNTER("worker_restarts_total", "Times the supervisor restarted this worker.", restarts);
    WORKER_COUNTER("dedup_keys_expired_total", "Dedup keys deleted after their retention.", dedup_expired);
    strbuf_printf(sb, "# HELP exactly_worker_up Whether the worker process runs.\n"
                       "# TYPE exactly_worker_up gauge\n");
    for (i = 0; i < n; i++)
        if (slots[i].pipeline[0])
            strbuf_printf(sb, "exactly_worker_up{pipeline=\"%s\",worker=\"%d\"} %d\n",
                          slots[i].pipeline, slots[i].worker,
                          __atomic_load_n(&slots[i].up, __ATOMIC_RELAXED));
    strbuf_printf(sb, "# HELP exactly_transaction_retries_total Batch retries by cause.\n"
                       "# TYPE exactly_transaction_retries_total counter\n");
    for (i = 0; i < n; i++)
        for (c = 0; c < RETRY_N_CAUSES && slots[i].pipeline[0]; c++)
            strbuf_printf(sb,
                          "exactly_transaction_retries_total{pipeline=\"%s\","
                          "worker=\"%d\",cause=\"%s\"} %llu\n",
                          slots[i].pipeline, slots[i].worker, cause_names[c],
                          (unsigned long long)ld(&slots[i].retries[c]));
}

/* The batch latency histogram of each worker: its buckets in ascending
 * order, cumulative, and +Inf the one count read, also shown as _count.
 * The buckets are loaded (acquire) before the count, which the worker
 * adds to before a bucket: the count is never below the buckets. */
static void render_latency(strbuf *sb, const metrics_slot *slots, size_t n)
{
    size_t i;
    int b;

    strbuf_printf(sb, "# HELP exactly_batch_duration_seconds Batch transaction time.\n"
                       "# TYPE exactly_batch_duration_seconds histogram\n");
    for (i = 0; i < n; i++) {
        uint64_t cum = 0, count;
        if (!slots[i].pipeline[0])
            continue;
        for (b = 0; b < METRICS_N_BUCKETS; b++) {
            cum += __atomic_load_n(&slots[i].latency_buckets[b], __ATOMIC_ACQUIRE);
            strbuf_printf(sb,
                          "exactly_batch_duration_seconds_bucket{pipeline=\"%s\","
                          "worker=\"%d\",le=\"%g\"} %llu\n",
                          slots[i].pipeline, slots[i].worker, metrics_buckets[b],
                          (unsigned long long)cum);
        }
        count = ld(&slots[i].latency_count);
        strbuf_printf(sb,
                      "exactly_batch_duration_seconds_bucket{pipeline=\"%s\","
                      "worker=\"%d\",le=\"+Inf\"} %llu\n"
                      "exactly_batch_duration_seconds_sum{pipeline=\"%s\","
                      "worker=\"%d\"} %.6f\n"
                      "exactly_batch_duration_seconds_count{pipeline=\"%s\","
                      "worker=\"%d\"} %llu\n",
                      slots[i].pipeline, slots[i].worker,
                      (unsigned long long)count,
                      slots[i].pipeline, slots[i].worker,
                      (double)ld(&slots[i].latency_sum_us) / 1e6,
                      slots[i].pipeline, slots[i].worker,
                      (unsigned long long)count);
    }
}

/* The per-partition counters (per worker) and gauges (per owner). */
static void render_partitions(strbuf *sb, const metrics_slot *slots, size_t n)
{
    size_t i, j;

    PARTITION_COUNTER("messages_consumed_total", "Messages in committed batches, by the worker that committed them.", consumed);
    PARTITION_COUNTER("messages_applied_total", "Messages handed to the handler and committed, by worker.", applied);
    PARTITION_COUNTER("messages_deduplicated_total", "Messages dropped by the dedup filter, by worker.", deduplicated);
    PARTITION_COUNTER("messages_dead_lettered_total", "Messages written to the dead-letter table, by worker.", dead_lettered);
    PARTITION_COUNTER("messages_skipped_missing_total", "Messages whose lookup found no row (on_missing: skip), by worker.", skipped_missing);
    PARTITION_GAUGE("partition_stored_offset", "Next offset stored in PostgreSQL, from the current owner.", lds(&pp->stored_offset));
    PARTITION_GAUGE("partition_high_watermark", "High watermark (last stable offset under read_committed) as last fetched by the current owner; -1 unknown.", lds(&pp->high_watermark));
    PARTITION_GAUGE("partition_halted", "1 when the partition is halted (offset out of the log, no start offset with auto.offset.reset=error, on_error: stop); the worker's log says why.", __atomic_load_n(&pp->halted, __ATOMIC_RELAXED));
    PARTITION_GAUGE("partition_lag", "High watermark minus stored offset; -1 unknown.",
                    lds(&pp->high_watermark) >= 0 && lds(&pp->stored_offset) >= 0
                        ? lds(&pp->high_watermark) - lds(&pp->stored_offset) : -1);
}

/* One series per partition and state, 1 for the one it is in. */
static void render_states(strbuf *sb, const metrics_slot *slots, size_t n)
{
    size_t i, j;
    int c;

    strbuf_printf(sb, "# HELP exactly_partition_state What the partition's current owner is doing (1 for its state, 0 for the others).\n"
                       "# TYPE exactly_partition_state gauge\n");
    for (i = 0; i < n; i++)
        for (j = 0; j < METRICS_MAX_PARTITIONS && slots[i].pipeline[0]; j++) {
            const metrics_partition *pp = &slots[i].parts[j];
            int st;
            if (!pp->topic[0] || !metrics_is_owner(slots, n, i, pp))
                continue;
            st = __atomic_load_n(&pp->state, __ATOMIC_RELAXED);
            for (c = 0; c < PART_N_STATES; c++) {
                const char *k;
                strbuf_printf(sb, "exactly_partition_state{pipeline=\"");
                label_value(sb, slots[i].pipeline);
                strbuf_printf(sb, "\",topic=\"");
                label_value(sb, pp->topic);
                strbuf_printf(sb, "\",partition=\"%d\",state=\"", (int)pp->partition);
                for (k = metrics_part_state_names[c]; *k; k++)
                    strbuf_printf(sb, "%c", *k == ' ' ? '_' : *k);
                strbuf_printf(sb, "\"} %d\n", st == c);
            }
        }
}

char *metrics_render(const metrics_slot *slots, size_t n)
{
    strbuf sb = {0};

    render_workers(&sb, slots, n);
    render_latency(&sb, slots, n);
    render_partitions(&sb, slots, n);
    render_states(&sb, slots, n);
    render_relays(&sb, slots, n);
    if (sb.oom) {
        strbuf_free(&sb);
        return NULL;
    }
    return sb.data ? sb.data : strdup("");
}

int metrics_ready(const metrics_slot *slots, size_t n)
{
    size_t i;
    int any = 0;

    for (i = 0; i < n; i++) {
        if (!__atomic_load_n(&slots[i].meant, __ATOMIC_RELAXED))
            continue;
        any = 1;
        /* A slot waiting for its restart is a worker or relay missing. */
        if (!__atomic_load_n(&slots[i].up, __ATOMIC_RELAXED) ||
            !__atomic_load_n(&slots[i].ready, __ATOMIC_RELAXED))
            return 0;
    }
    return any;
}
