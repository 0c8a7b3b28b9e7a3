/*
 * Soak: steady production through one worker for minutes; its memory must
 * stay flat once warmed up, and every message is applied exactly once.
 *
 * The test produces RATE messages a second (zero-payload, IDs of the ledger
 * fixture's accounts, round robin over the partitions) for
 * EXACTLY_SOAK_SECONDS (default 300, at least 180) to one `exactly worker`
 * running the ledger pipeline, and reads the worker's VmRSS
 * (/proc/PID/status) every SAMPLE_EVERY_MS, with the stored positions.
 *
 * The memory rule: the median of the samples of the last minute must not
 * exceed the median of the samples of the second minute by more than
 * GROWTH_PCT percent. The first minute is warm-up (librdkafka's fetch
 * buffers and queues, the allocator's arenas, libpq's buffers growing to
 * the batch size; in a sanitized build the worker gets an AddressSanitizer
 * quarantine of ASAN_QUARANTINE_MB, which fills within that minute) and is
 * left out. Medians of ~30 samples each ignore a transient peak (a batch
 * larger than usual) that a maximum would not. A leak grows linearly with
 * the run, so it shows more the longer the run: at 2,000 msg/s, 100 bytes
 * per message are about 11 MiB a minute; in the default 5 minutes the two
 * windows are 3 minutes apart, and 25% of the measured 13.4 MiB (Release)
 * or 57 MiB (sanitized) is crossed by a leak of about 10 or 40 bytes per
 * message.
 *
 * The worker must also keep up (its stored offsets advanced during each
 * window by at least half of what was produced in it), or flat memory
 * would say nothing about a worker that had stopped; at the end it must
 * catch up with everything produced, stop on SIGTERM with exit 0 and a
 * summary that counts every message, and the exactly-once check must hold.
 *
 * The mock cluster keeps only ~5 MiB per partition (DESIGN.md 7): the
 * topic gets one partition per PER_PARTITION messages the run produces
 * (at least MIN_PARTITIONS), and ledger_high_watermarks() fails if a low
 * watermark moved anyway.
 *
 * Label `soak`, not part of the default run (scripts/test.sh leaves it
 * out unless asked: `scripts/test.sh -L soak`).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "scale.h"
#include "testkit.h"

#define TOPIC "soak"
#define RATE 2000
#define DEFAULT_SECONDS 300
/* Room for a warm-up minute, a baseline minute and a last minute. */
#define MIN_SECONDS 180
#define SAMPLE_EVERY_MS 2000
#define WINDOW_MS 60000
#define GROWTH_PCT 25
/* Messages a partition may receive: ~12 bytes each on the mock, with the
 * batch headers well under 5 MiB. */
#define PER_PARTITION 150000
#define MIN_PARTITIONS 8
/* ledger_check_exactly_once() lists the partitions in one statement. */
#define MAX_PARTITIONS 200
#define SEED 4242
#define CATCH_UP_TIMEOUT_MS 120000
#define STOP_TIMEOUT_MS 30000
/* AddressSanitizer keeps freed blocks in a quarantine of 256 MiB by
 * default, which fills over minutes at this rate (measured: 400 MiB of
 * VmRSS after 130 s, flat after); a small one fills within the warm-up
 * minute and still catches a use soon after free. */
#define ASAN_QUARANTINE_MB 16
/* Besides the production time: set-up, catch-up, stop and the check. */
#define OVERHEAD_S 300

typedef struct sample {
    int64_t at_ms;    /* since production started */
    int64_t rss_kib;  /* the worker's VmRSS */
    int64_t stored;   /* sum of its stored offsets */
    int64_t produced; /* messages queued by then */
} sample;

typedef struct producer {
    rd_kafka_t *rk;
    int64_t delivered;
    int64_t failed;
    char first_error[256];
} producer;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg,
                        void *opaque)
{
    producer *p = opaque;

    (void)rk;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        p->delivered++;
        return;
    }
    if (p->failed++ == 0)
        snprintf(p->first_error, sizeof p->first_error, "partition %" PRId32
                 ": %s", msg->partition, rd_kafka_err2str(msg->err));
}

static void producer_open(producer *p, const char *bootstraps)
{
    static const char *const props[] = {
        "bootstrap.servers", NULL, "client.id", "soak-producer",
        "enable.idempotence", "true", "linger.ms", "5",
        "message.timeout.ms", "60000"};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];
    size_t i;

    memset(p, 0, sizeof *p);
    for (i = 0; i < sizeof props / sizeof props[0]; i += 2) {
        const char *v = props[i + 1] ? props[i + 1] : bootstraps;
        TK_CHECK(rd_kafka_conf_set(conf, props[i], v, errstr,
                                   sizeof errstr) == RD_KAFKA_CONF_OK,
                 "producer property %s: %s", props[i], errstr);
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    TK_CHECK(p->rk != NULL, "rd_kafka_new (producer): %s", errstr);
}

/* Queue one message; waits while librdkafka's queue is full. */
static void producer_send(producer *p, int32_t partition, const char *key)
{
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(TOPIC), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY((void *)(uintptr_t)key, strlen(key)),
            RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            return;
        TK_CHECK(err == RD_KAFKA_RESP_ERR__QUEUE_FULL, "producing: %s",
                 rd_kafka_err2str(err));
        rd_kafka_poll(p->rk, 10);
    }
}

/* Wait for every delivery report; fail unless all `sent` were delivered. */
static void producer_close(producer *p, int64_t sent)
{
    rd_kafka_resp_err_t err = rd_kafka_flush(p->rk, 60000);

    TK_CHECK(p->failed == 0, "%" PRId64 " of %" PRId64 " messages not "
             "delivered; first: %s", p->failed, sent, p->first_error);
    TK_CHECK(err == RD_KAFKA_RESP_ERR_NO_ERROR && p->delivered == sent,
             "%" PRId64 " of %" PRId64 " messages delivered within 60 s (%s)",
             p->delivered, sent, rd_kafka_err2str(err));
    rd_kafka_destroy(p->rk);
}

/* The duration: EXACTLY_SOAK_SECONDS, else DEFAULT_SECONDS. */
static int soak_seconds(void)
{
    const char *s = getenv("EXACTLY_SOAK_SECONDS");
    char *end;
    long v;

    if (s == NULL || *s == '\0')
        return DEFAULT_SECONDS;
    errno = 0;
    v = strtol(s, &end, 10);
    TK_CHECK(errno == 0 && *end == '\0' && v >= MIN_SECONDS && v <= 86400,
             "EXACTLY_SOAK_SECONDS=%s: give whole seconds from %d (a "
             "warm-up, a baseline and a last minute) to 86400",
             s, MIN_SECONDS);
    return (int)v;
}

/* Fail at once, rather than at CTest's timeout, when the run cannot end
 * within it (EXACTLY_SOAK_TIMEOUT, set by CMake from the cache variable of
 * that name). */
static void check_fits(int seconds)
{
    const char *t = getenv("EXACTLY_SOAK_TIMEOUT");
    long timeout = t && *t ? strtol(t, NULL, 10) : 0;

    TK_CHECK(timeout <= 0 || seconds + OVERHEAD_S <= timeout,
             "EXACTLY_SOAK_SECONDS=%d does not fit in the test's timeout of "
             "%ld s (it needs %d s more): configure with "
             "-DEXACTLY_SOAK_TIMEOUT=%d or more",
             seconds, timeout, OVERHEAD_S, seconds + OVERHEAD_S);
}

/* Median RSS of the samples taken in [from_ms, to_ms), and how far the
 * stored offsets and production advanced over that window. */
static int64_t window(const sample *s, size_t n, int64_t from_ms,
                      int64_t to_ms, int64_t *applied, int64_t *produced)
{
    int64_t *rss = calloc(n, sizeof *rss), median;
    size_t i, k = 0, first = n, last = 0;

    TK_CHECK(rss != NULL, "out of memory");
    for (i = 0; i < n; i++) {
        if (s[i].at_ms < from_ms || s[i].at_ms >= to_ms)
            continue;
        rss[k++] = s[i].rss_kib;
        if (first == n)
            first = i;
        last = i;
    }
    TK_CHECK(k >= 2, "only %zu samples between %" PRId64 " and %" PRId64
             " ms", k, from_ms, to_ms);
    median = scale_median(rss, k);
    *applied = s[last].stored - s[first].stored;
    *produced = s[last].produced - s[first].produced;
    free(rss);
    return median;
}

int main(void)
{
    char dir[256], config[512], log[512], conninfo[1024], key[24];
    int64_t counts[LEDGER_ACCOUNTS] = {0};
    int seconds = soak_seconds();
    int64_t duration_ms = (int64_t)seconds * 1000;
    int64_t total = (int64_t)RATE * seconds, sent = 0;
    int partitions = (int)((total + PER_PARTITION - 1) / PER_PARTITION);
    size_t n_samples = 0, cap = (size_t)(duration_ms / SAMPLE_EVERY_MS) + 8;
    sample *samples = calloc(cap, sizeof *samples);
    int64_t start, next_sample, base, last, max_rss = 0, max_lag = 0;
    int64_t base_applied, base_produced, last_applied, last_produced;
    int64_t t_caught_up, peak;
    ledger_summary sum;
    ledger_config cfg;
    const char *bootstraps;
    char *curve;
    size_t i, used = 0;
    producer prod;
    int status;
    PGconn *db;
    tk_mock *m;
    pid_t pid;

    TK_CHECK(samples != NULL, "out of memory");
    check_fits(seconds);
    if (partitions < MIN_PARTITIONS)
        partitions = MIN_PARTITIONS;
    TK_CHECK(partitions <= MAX_PARTITIONS,
             "%d s at %d msg/s needs %d partitions, more than the %d the "
             "check handles", seconds, RATE, partitions, MAX_PARTITIONS);
    m = tk_mock_start(1);
    bootstraps = tk_mock_bootstraps(m);
    tk_mock_create_topic(m, TOPIC, partitions);
    tk_pg_create_db("soak", conninfo, sizeof conninfo);
    ledger_setup_db(conninfo);
    tk_tmpdir("exactly-soak", dir, sizeof dir);
    tk_note("logs in %s; %d s at %d msg/s over %d partitions (%" PRId64
            " messages)%s", dir, seconds, RATE, partitions, total,
            SCALE_SANITIZED ? "; AddressSanitizer build" : "");
    snprintf(config, sizeof config, "%s/worker.yaml", dir);
    snprintf(log, sizeof log, "%s/worker.log", dir);
    memset(&cfg, 0, sizeof cfg);
    cfg.bootstraps = bootstraps;
    cfg.conninfo = conninfo;
    cfg.topic = TOPIC;
    cfg.group = TOPIC;
    cfg.max_messages = 1000;
    cfg.max_wait_ms = 100;
    ledger_write_config(config, &cfg);
    ledger_migrate(config, log);
    db = tk_pg_connect(conninfo);

    if (SCALE_SANITIZED) {
        const char *opts = getenv("ASAN_OPTIONS");
        char buf[1024];

        /* The last setting of a flag wins. */
        snprintf(buf, sizeof buf, "%s%squarantine_size_mb=%d",
                 opts ? opts : "", opts && *opts ? ":" : "",
                 ASAN_QUARANTINE_MB);
        TK_CHECK(setenv("ASAN_OPTIONS", buf, 1) == 0, "setenv: %s",
                 strerror(errno));
    }
    pid = ledger_start_worker(config, 0, log);
    producer_open(&prod, bootstraps);
    start = tk_now_ms();
    next_sample = start + SAMPLE_EVERY_MS;
    for (;;) {
        int64_t now = tk_now_ms(), due;

        if (now - start >= duration_ms)
            break;
        /* Steady: whatever the clock says is due by now, no bursts. */
        due = (now - start) * RATE / 1000;
        for (; sent < due; sent++) {
            int64_t id = tk_id_for(SEED, (size_t)sent, LEDGER_ACCOUNTS);

            snprintf(key, sizeof key, "%" PRId64, id);
            producer_send(&prod, (int32_t)(sent % partitions), key);
            counts[id - 1]++;
        }
        rd_kafka_poll(prod.rk, 0);
        if (now >= next_sample) {
            sample *s = &samples[n_samples];

            TK_CHECK(n_samples < cap, "more samples than planned");
            s->at_ms = now - start;
            s->rss_kib = scale_proc_kib(pid, "VmRSS");
            LEDGER_CHECK_LOG(s->rss_kib > 0 && tk_wait(pid, 0) == -1, log,
                             "the worker is gone after %.1f s; log: %s",
                             (double)s->at_ms / 1000.0, log);
            s->stored = scale_stored_total(db, LEDGER_PIPELINE, TOPIC);
            s->produced = sent;
            if (s->rss_kib > max_rss)
                max_rss = s->rss_kib;
            if (sent - s->stored > max_lag)
                max_lag = sent - s->stored;
            n_samples++;
            next_sample += SAMPLE_EVERY_MS;
        }
        tk_sleep_ms(10);
    }
    producer_close(&prod, sent);
    tk_note("produced %" PRId64 " messages in %.1f s", sent,
            (double)(tk_now_ms() - start) / 1000.0);

    /* Catch up with everything, then stop cleanly. */
    scale_wait_stored(db, LEDGER_PIPELINE, TOPIC, sent, pid, log,
                      CATCH_UP_TIMEOUT_MS);
    t_caught_up = tk_now_ms() - start;
    tk_kill(pid, SIGTERM);
    status = scale_wait_rusage(pid, STOP_TIMEOUT_MS, &peak);
    if (status == -1)
        tk_terminate(pid, 5000);
    LEDGER_CHECK_LOG(status == 0, log, "worker: exit status %d after SIGTERM "
                     "(-1: still running after %d ms); log: %s", status,
                     STOP_TIMEOUT_MS, log);
    LEDGER_CHECK_LOG(ledger_read_summary(log, &sum), log,
                     "the worker printed no summary; log: %s", log);
    TK_CHECK_EQ_INT64(sum.consumed, sent, "messages the worker consumed");
    ledger_check_exactly_once(db, bootstraps, TOPIC, partitions, sent,
                              counts, LEDGER_ACCOUNTS);

    /* The memory curve, one figure every 10 s, for the record. */
    curve = calloc(n_samples + 1, 8);
    TK_CHECK(curve != NULL, "out of memory");
    for (i = 0; i < n_samples; i += 10000 / SAMPLE_EVERY_MS)
        used += (size_t)sprintf(curve + used, " %" PRId64,
                                samples[i].rss_kib / 1024);
    tk_note("worker VmRSS MiB every 10 s:%s", curve);
    free(curve);

    base = window(samples, n_samples, WINDOW_MS, 2 * WINDOW_MS,
                  &base_applied, &base_produced);
    last = window(samples, n_samples, duration_ms - WINDOW_MS,
                  duration_ms + 1, &last_applied, &last_produced);
    tk_note("VmRSS median %" PRId64 " KiB in the second minute, %" PRId64
            " KiB in the last (%+.1f%%, at most +%d%% allowed); highest "
            "sample %" PRId64 " KiB, peak (ru_maxrss) %" PRId64 " KiB; "
            "largest lag %" PRId64 " messages; caught up %.1f s after "
            "production began; batches committed %" PRId64 ", rolled back "
            "%" PRId64 ", retries %" PRId64,
            base, last, 100.0 * (double)(last - base) / (double)base,
            GROWTH_PCT, max_rss, peak, max_lag, (double)t_caught_up / 1000.0,
            sum.committed, sum.rolled_back, sum.retries);
    TK_CHECK(2 * base_applied >= base_produced &&
                 2 * last_applied >= last_produced,
             "the worker did not keep up (stalled, or a machine too loaded "
             "for a soak): it applied %" PRId64 " of %" PRId64 " messages "
             "produced in the second minute and %" PRId64 " of %" PRId64
             " in the last",
             base_applied, base_produced, last_applied, last_produced);
    TK_CHECK(last * 100 <= base * (100 + GROWTH_PCT),
             "the worker's memory grew under steady load: VmRSS median %"
             PRId64 " KiB in the last minute, %" PRId64 " KiB in the second "
             "(+%.1f%%, more than %d%%)",
             last, base, 100.0 * (double)(last - base) / (double)base,
             GROWTH_PCT);

    PQfinish(db);
    tk_mock_stop(m);
    free(samples);
    ledger_cleanup_dir(dir);
    return 0;
}
