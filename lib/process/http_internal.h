/*
 * http_internal.h - what the files of the status server share: the state
 * of the server (struct exactly_http), the reader's rate entries and the
 * limits; http.c serves, http_reader.c reads PostgreSQL, http_status.c
 * builds the JSON and http_page.c the page. Private to lib/process.
 */
#ifndef EXACTLY_HTTP_INTERNAL_H
#define EXACTLY_HTTP_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <sys/types.h>

#include "http.h"

/* How often the status reader asks PostgreSQL, and how long one round may
 * take (connecting included) before it gives up on the connection. */
#define STATUS_PERIOD_MS 2000
#define STATUS_ROUND_MS 5000
/* Dead letters listed per pipeline on the page, newest first. */
#define STATUS_NEWEST 10
/* Dead letters counted (by reason) per pipeline each round, newest first:
 * a pipeline with more shows "at least" this many. The index
 * dead_letters_newest bounds the read to them. */
#define STATUS_DEAD_LETTERS_COUNTED 10000
/* Clients: idle ones are dropped after this, and each connection's
 * request may use this much memory (a longer request line is refused). */
#define HTTP_TIMEOUT_S 10
#define HTTP_MEMORY_LIMIT (16 * 1024)
#define HTTP_MAX_CONNECTIONS 4096

/* How long the supervisor's loop (a turn every 50 ms) may go without a
 * turn before /healthz says it is stuck. */
#define HTTP_SUPERVISOR_STUCK_MS 5000

/* What the supervisor tells the server process at each turn of its loop
 * (exactly_http_beat): one MAP_SHARED page, relaxed atomics, one writer. */
typedef struct http_pulse {
    long long beat_ms;        /* http_mono_ms() of the last turn */
    int stopping;
} http_pulse;

/* What the status reader knows of one partition's consumption rate. */
typedef struct rate_entry {
    size_t pipeline;
    char topic[METRICS_TOPIC_MAX];
    int32_t partition;
    uint64_t total;
    long long at_ms;
    double rate;
} rate_entry;

struct exactly_http {
    /* In the supervisor: the server process and the socket it serves. */
    pid_t parent;
    pid_t pid;                /* 0: not running */
    long long started_ms;
    int stopping;
    int fd;
    http_pulse *pulse;        /* shared with the server process */

    /* In the server process. */
    struct MHD_Daemon *daemon;
    const metrics_slot *slots;
    size_t n;

    /* Copied from the configuration: the reader never touches cfg. */
    char *conninfo;
    char *schema;
    char **pipelines;
    size_t n_pipelines;

    pthread_t reader;
    int reader_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;                 /* under mu */
    json_t *db;               /* under mu: the last database answer */
    rate_entry *rates;        /* under mu */
    size_t n_rates;
};

/* The monotonic clock, in ms. */
long long http_mono_ms(void);

/* ms since the epoch as ISO 8601 UTC with milliseconds. */
void http_iso_time(long long ms, char *buf, size_t size);

/* The wall clock, in ms since the epoch. */
long long http_wall_ms(void);

/* The status reader thread (arg: the exactly_http), until h->stop. */
void *http_reader_main(void *arg);

/* Everything the page shows (the caller decrefs). */
json_t *http_status_json(exactly_http *h);

/* The status page of st (http_status_json), malloc'd; NULL when out of
 * memory. Every text from a slot or the database is escaped. */
char *http_status_html(const json_t *st);

#endif
