/*
 * tk_http.h: the HTTP client side: a free port, one GET (or GETs until a
 * status), Prometheus sums.
 * Part of testkit (testkit.h includes every part).
 */
#ifndef EXACTLY_TK_HTTP_H
#define EXACTLY_TK_HTTP_H

#include "tk_checks.h"

/* ------------------------------------------------------------------ */
/* HTTP                                                               */
/* ------------------------------------------------------------------ */

/* A loopback TCP port nobody listens on right now. */
int tk_free_port(void);

/* GET path from 127.0.0.1:port (HTTP/1.0). Returns the status code and sets
 * *body (malloc'd, the caller frees), or -1 when nothing answers. */
int tk_http_get(int port, const char *path, char **body);

/* GETs path every 100 ms until it answers want or timeout_ms passed.
 * Returns the last status code (-1: nothing answered). */
int tk_http_wait_code(int port, const char *path, int want, int timeout_ms);

/* Sum of every sample of Prometheus metric `name` whose line contains
 * `match` (e.g. `partition="2"`; NULL: all), or -1 when there is none. */
double tk_metric_sum(const char *text, const char *name, const char *match);

/* The same sum (0 when there is none), with the number of samples added
 * in *count. */
double tk_metric_sum_n(const char *text, const char *name, const char *match,
                       int *count);

/* GET /metrics from 127.0.0.1:port: the body (malloc'd, the caller frees)
 * when it answers 200, else NULL. */
char *tk_metrics_scrape(int port);

#endif /* EXACTLY_TK_HTTP_H */
