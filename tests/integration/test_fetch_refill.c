/*
 * librdkafka 2.0 stops fetching while the consumer's queue holds
 * queued.min.messages messages and looks again only when a broker thread
 * wakes, up to a second later; the worker wakes the fetchers itself once
 * the full queue has half emptied (lib/kafka/refill.h). Its "stopped" log
 * line counts the wakes (fetch_wakes).
 *
 *   - a backlog of 6,000 on 2 partitions and queued.min.messages 400: the
 *     queue fills and empties many times; the fetchers are woken at least
 *     once, and every message is applied exactly once;
 *   - 600 more with the default queue (100,000): the queue never fills,
 *     and the fetchers are never woken.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger_check.h"
#include "testkit.h"

#define PARTS 2
#define N_BACKLOG 6000
#define N_MORE 600

static const char *const small_queue[] = {
    "session.timeout.ms", "3000", "heartbeat.interval.ms", "300",
    "queued.min.messages", "400", NULL};
static const char *const default_queue[] = {
    "session.timeout.ms", "3000", "heartbeat.interval.ms", "300", NULL};

/* Runs a worker to idle on f's config with the kafka properties given;
 * returns the fetch_wakes of its "stopped" line. */
static int64_t run(ledger_fixture *f, const char *const *kafka)
{
    ledger_config c;
    int st;

    memset(&c, 0, sizeof c);
    c.max_messages = 200;
    c.max_wait_ms = 50;
    c.kafka = kafka;
    ledger_fixture_config(f, &c);
    /* A fresh log per run: its last "stopped" line is this run's. */
    unlink(f->log);
    st = ledger_run_to_idle(f->config, 1500, 60000, f->log);
    LEDGER_CHECK_LOG(st == 0, f->log, "worker exited %d", st);
    LEDGER_CHECK_LOG(tk_log_count(f->log, "msg=\"stopped\"") == 1, f->log,
                     "no single \"stopped\" line in the worker's log");
    return tk_log_last_int(f->log, " fetch_wakes=");
}

int main(void)
{
    static int64_t counts[LEDGER_ACCOUNTS];
    ledger_fixture f;
    int64_t wakes;
    PGconn *db;

    ledger_fixture_start(&f, "fetch_refill", "fetch-refill", PARTS);
    db = tk_pg_connect(f.conninfo);

    ledger_produce_wave(&f, N_BACKLOG, 31, counts);
    wakes = run(&f, small_queue);
    tk_note("%d messages through a queue of 400: fetchers woken %lld times",
            N_BACKLOG, (long long)wakes);
    LEDGER_CHECK_LOG(wakes >= 1, f.log,
                 "a backlog of %d through a queue of 400 messages never woke "
                 "the fetchers (fetch_wakes %lld): every refill waited for a "
                 "broker thread to wake by itself",
                 N_BACKLOG, (long long)wakes);

    ledger_produce_wave(&f, N_MORE, 32, counts);
    wakes = run(&f, default_queue);
    LEDGER_CHECK_LOG(wakes == 0, f.log,
                 "%d messages never filled the default queue, yet the "
                 "fetchers were woken %lld times",
                 N_MORE, (long long)wakes);

    ledger_check_exactly_once(db, f.mock->bootstraps, f.topic, PARTS,
                              N_BACKLOG + N_MORE, counts, LEDGER_ACCOUNTS);
    PQfinish(db);
    ledger_fixture_stop(&f);
    return 0;
}
