#include "metrics.h"

#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "strbuf.h"

const double metrics_buckets[METRICS_N_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};

metrics_slot *metrics_map(size_t n)
{
    void *p = mmap(NULL, n * sizeof(metrics_slot), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void metrics_unmap(metrics_slot *slots, size_t n)
{
    if (slots)
        munmap(slots, n * sizeof(metrics_slot));
}

void metrics_add(uint64_t *counter, uint64_t n)
{
    __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

void metrics_set(int64_t *gauge, int64_t v)
{
    __atomic_store_n(gauge, v, __ATOMIC_RELAXED);
}

metrics_partition *metrics_part(metrics_slot *s, const char *topic,
                                int32_t partition)
{
    metrics_partition *free_entry = NULL;
    size_t i;

    for (i = 0; i < METRICS_MAX_PARTITIONS; i++) {
        metrics_partition *p = &s->parts[i];
        if (!p->topic[0]) {
            if (!free_entry)
                free_entry = p;
            continue;
        }
        if (p->partition == partition && strcmp(p->topic, topic) == 0)
            return p;
    }
    if (free_entry) {
        free_entry->partition = partition;
        free_entry->high_watermark = -1;
        free_entry->stored_offset = -1;
        snprintf(free_entry->topic, sizeof(free_entry->topic), "%s", topic);
    }
    return free_entry;
}

void metrics_observe_batch(metrics_slot *s, long long micros)
{
    double secs = (double)micros / 1e6;
    int i;

    for (i = 0; i < METRICS_N_BUCKETS; i++)
        if (secs <= metrics_buckets[i]) {
            metrics_add(&s->latency_buckets[i], 1);
            break;
        }
    metrics_add(&s->latency_count, 1);
    metrics_add(&s->latency_sum_us, (uint64_t)(micros > 0 ? micros : 0));
}

static uint64_t ld(const uint64_t *v) { return __atomic_load_n(v, __ATOMIC_RELAXED); }
static int64_t lds(const int64_t *v) { return __atomic_load_n(v, __ATOMIC_RELAXED); }

static const char *const cause_names[RETRY_N_CAUSES] = {
    "connection", "serialization", "deadlock", "timeout", "handler",
    "environment", "other"};

/* A family: HELP and TYPE once, then one sample per worker. */
#define WORKER_COUNTER(name, help, field)                                      \
    do {                                                                       \
        strbuf_printf(&sb, "# HELP exactly_%s %s\n# TYPE exactly_%s counter\n", \
                      name, help, name);                                       \
        for (i = 0; i < n; i++)                                                \
            if (slots[i].pipeline[0])                                          \
                strbuf_printf(&sb, "exactly_%s{pipeline=\"%s\",worker=\"%d\"} %llu\n", \
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
static int is_owner(const metrics_slot *slots, size_t n, size_t i,
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
        strbuf_printf(&sb, "# HELP exactly_%s %s\n# TYPE exactly_%s counter\n", \
                      name, help, name);                                       \
        for (i = 0; i < n; i++)                                                \
            for (j = 0; j < METRICS_MAX_PARTITIONS && slots[i].pipeline[0]; j++) { \
                const metrics_partition *pp = &slots[i].parts[j];              \
                if (!pp->topic[0])                                             \
                    continue;                                                  \
                strbuf_printf(&sb, "exactly_%s{pipeline=\"", name);             \
                label_value(&sb, slots[i].pipeline);                           \
                strbuf_printf(&sb, "\",worker=\"%d\",topic=\"", slots[i].worker); \
                label_value(&sb, pp->topic);                                   \
                strbuf_printf(&sb, "\",partition=\"%d\"} %llu\n",              \
                              (int)pp->partition,                              \
                              (unsigned long long)ld(&pp->field));             \
            }                                                                  \
    } while (0)

/* A per-partition gauge: one series per partition, from its owner. */
#define PARTITION_GAUGE(name, help, expr)                                      \
    do {                                                                       \
        strbuf_printf(&sb, "# HELP exactly_%s %s\n# TYPE exactly_%s gauge\n",   \
                      name, help, name);                                       \
        for (i = 0; i < n; i++)                                                \
            for (j = 0; j < METRICS_MAX_PARTITIONS && slots[i].pipeline[0]; j++) { \
                const metrics_partition *pp = &slots[i].parts[j];              \
                if (!pp->topic[0] || !is_owner(slots, n, i, pp))               \
                    continue;                                                  \
                strbuf_printf(&sb, "exactly_%s{pipeline=\"", name);             \
                label_value(&sb, slots[i].pipeline);                           \
                strbuf_printf(&sb, "\",topic=\"");                               \
                label_value(&sb, pp->topic);                                   \
                strbuf_printf(&sb, "\",partition=\"%d\"} %lld\n",              \
                              (int)pp->partition, (long long)(expr));          \
            }                                                                  \
    } while (0)

void metrics_slot_disown(metrics_slot *s)
{
    size_t j;

    for (j = 0; j < METRICS_MAX_PARTITIONS; j++)
        __atomic_store_n(&s->parts[j].assigned, 0, __ATOMIC_RELAXED);
}

char *metrics_render(const metrics_slot *slots, size_t n)
{
    strbuf sb = {0};
    size_t i, j;
    int b, c;

    WORKER_COUNTER("batches_committed_total", "Batch transactions committed.", batches_committed);
    WORKER_COUNTER("batches_rolled_back_total", "Batch transactions rolled back.", batches_rolled_back);
    WORKER_COUNTER("batches_fenced_total", "Batches refused by the fence (another owner).", batches_fenced);
    WORKER_COUNTER("worker_restarts_total", "Times the supervisor restarted this worker.", restarts);
    WORKER_COUNTER("dedup_keys_expired_total", "Dedup keys deleted after their retention.", dedup_expired);
    strbuf_printf(&sb, "# HELP exactly_worker_up Whether the worker process runs.\n"
                       "# TYPE exactly_worker_up gauge\n");
    for (i = 0; i < n; i++)
        if (slots[i].pipeline[0])
            strbuf_printf(&sb, "exactly_worker_up{pipeline=\"%s\",worker=\"%d\"} %d\n",
                          slots[i].pipeline, slots[i].worker,
                          __atomic_load_n(&slots[i].up, __ATOMIC_RELAXED));
    strbuf_printf(&sb, "# HELP exactly_transaction_retries_total Batch retries by cause.\n"
                       "# TYPE exactly_transaction_retries_total counter\n");
    for (i = 0; i < n; i++)
        for (c = 0; c < RETRY_N_CAUSES && slots[i].pipeline[0]; c++)
            strbuf_printf(&sb,
                          "exactly_transaction_retries_total{pipeline=\"%s\","
                          "worker=\"%d\",cause=\"%s\"} %llu\n",
                          slots[i].pipeline, slots[i].worker, cause_names[c],
                          (unsigned long long)ld(&slots[i].retries[c]));
    strbuf_printf(&sb, "# HELP exactly_batch_duration_seconds Batch transaction time.\n"
                       "# TYPE exactly_batch_duration_seconds histogram\n");
    for (i = 0; i < n; i++) {
        uint64_t cum = 0;
        if (!slots[i].pipeline[0])
            continue;
        for (b = 0; b < METRICS_N_BUCKETS; b++) {
            cum += ld(&slots[i].latency_buckets[b]);
            strbuf_printf(&sb,
                          "exactly_batch_duration_seconds_bucket{pipeline=\"%s\","
                          "worker=\"%d\",le=\"%g\"} %llu\n",
                          slots[i].pipeline, slots[i].worker, metrics_buckets[b],
                          (unsigned long long)cum);
        }
        strbuf_printf(&sb,
                      "exactly_batch_duration_seconds_bucket{pipeline=\"%s\","
                      "worker=\"%d\",le=\"+Inf\"} %llu\n"
                      "exactly_batch_duration_seconds_sum{pipeline=\"%s\","
                      "worker=\"%d\"} %.6f\n"
                      "exactly_batch_duration_seconds_count{pipeline=\"%s\","
                      "worker=\"%d\"} %llu\n",
                      slots[i].pipeline, slots[i].worker,
                      (unsigned long long)ld(&slots[i].latency_count),
                      slots[i].pipeline, slots[i].worker,
                      (double)ld(&slots[i].latency_sum_us) / 1e6,
                      slots[i].pipeline, slots[i].worker,
                      (unsigned long long)ld(&slots[i].latency_count));
    }
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
        if (!__atomic_load_n(&slots[i].up, __ATOMIC_RELAXED))
            continue;
        any = 1;
        if (!__atomic_load_n(&slots[i].ready, __ATOMIC_RELAXED))
            return 0;
    }
    return any;
}

int metrics_listen(const char *addr, char *bound, size_t bound_size,
                   char *errbuf, size_t errbuf_size)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    char host[64], ip[INET_ADDRSTRLEN];
    const char *colon = strrchr(addr, ':');
    int fd, one = 1;
    long port;
    char *end;

    if (!colon || (size_t)(colon - addr) >= sizeof(host)) {
        snprintf(errbuf, errbuf_size, "metrics address '%s' is not HOST:PORT", addr);
        return -1;
    }
    /* "127.0.0.1:" would bind a port chosen by the kernel that nobody is
     * told of; a port must be given (0 asks for any, and is logged). */
    if (colon[1] == '\0') {
        snprintf(errbuf, errbuf_size,
                 "metrics address '%s' has no port (HOST:PORT, e.g. "
                 "127.0.0.1:9464)", addr);
        return -1;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    port = strtol(colon + 1, &end, 10);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    if (*end || colon[1] < '0' || colon[1] > '9' || port < 0 || port > 65535 ||
        inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(errbuf, errbuf_size, "metrics address '%s' is not IPv4:PORT", addr);
        return -1;
    }
    /* Metrics carry topology: they stay on this host unless asked. */
    if ((ntohl(sa.sin_addr.s_addr) >> 24) != 127) {
        snprintf(errbuf, errbuf_size, "metrics address '%s' is not on loopback (127.0.0.0/8)", addr);
        return -1;
    }
    sa.sin_port = htons((uint16_t)port);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0 ||
        !inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip))) {
        snprintf(errbuf, errbuf_size, "cannot listen on %s: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    snprintf(bound, bound_size, "%s:%d", ip, (int)ntohs(sa.sin_port));
    return fd;
}

/* Whether request line req asks for GET of exactly path (a query string
 * is allowed, nothing else after the path). */
static int is_get(const char *req, const char *path)
{
    size_t n = strlen(path);

    if (strncmp(req, "GET ", 4) != 0 || strncmp(req + 4, path, n) != 0)
        return 0;
    return req[4 + n] == ' ' || req[4 + n] == '?' || req[4 + n] == '\r' ||
           req[4 + n] == '\n';
}

static void respond(int c, const char *status, const char *type, const char *body)
{
    char head[256];
    size_t len = strlen(body), off = 0;
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, type, len);

    if (write(c, head, (size_t)n) != n)
        return;
    while (off < len) {
        ssize_t w = write(c, body + off, len - off);
        if (w <= 0)
            return;
        off += (size_t)w;
    }
}

void metrics_serve(int fd, const metrics_slot *slots, size_t n)
{
    char req[1024];
    struct pollfd pfd;
    ssize_t got = 0, r;
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);

    if (c < 0)
        return;
    pfd.fd = c;
    pfd.events = POLLIN;
    /* Loopback clients send the request line at once; a slow one waits
     * no longer than this, so the supervisor's loop keeps its pace. */
    while ((size_t)got < sizeof(req) - 1 && poll(&pfd, 1, 200) > 0) {
        r = read(c, req + got, sizeof(req) - 1 - (size_t)got);
        if (r <= 0)
            break;
        got += r;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
            break;
    }
    req[got] = '\0';
    if (is_get(req, "/metrics")) {
        char *body = metrics_render(slots, n);
        respond(c, body ? "200 OK" : "500 Internal Server Error",
                "text/plain; version=0.0.4", body ? body : "out of memory\n");
        free(body);
    } else if (is_get(req, "/healthz")) {
        respond(c, "200 OK", "text/plain", "ok\n");
    } else if (is_get(req, "/readyz")) {
        int ok = metrics_ready(slots, n);
        respond(c, ok ? "200 OK" : "503 Service Unavailable", "text/plain",
                ok ? "ready\n" : "not ready\n");
    } else {
        respond(c, "404 Not Found", "text/plain", "try /metrics, /healthz or /readyz\n");
    }
    close(c);
}
