/*
 * http_page.c - the status page (/): the JSON of http_status.c rendered
 * as one HTML page that refreshes itself, every text escaped, each cell
 * with a class a test (or a person) can find it by.
 */
#include "http.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_internal.h"
#include "strbuf.h"

static const char page_head[] =
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta http-equiv=\"refresh\" content=\"5\">\n"
    "<title>exactly status</title>\n<style>\n"
    "body{font:14px/1.4 sans-serif;margin:1em 2em;color:#222;background:#fafafa}\n"
    "h1{font-size:1.4em}h2{font-size:1.2em;margin-top:1.5em;border-bottom:1px solid #ccc}\n"
    "h3{font-size:1em;margin-bottom:.3em}\n"
    "table{border-collapse:collapse;margin-bottom:1em}\n"
    "th,td{border:1px solid #ccc;padding:2px 8px;text-align:left}\n"
    "th{background:#eee}td.num,td.stored,td.lso,td.lag,td.rate,td.pid,td.restarts,td.count{text-align:right}\n"
    ".state-running{color:#070}.state-halted,.state-fenced,.state-breaker.open{color:#b00;font-weight:bold}\n"
    "tr.bad td{background:#fee}.note{color:#666}pre{white-space:pre-wrap;margin:0;font-size:12px}\n"
    "</style></head><body>\n";

static void html_text(strbuf *sb, const char *s)
{
    for (; s && *s; s++)
        switch (*s) {
        case '&': strbuf_puts(sb, "&amp;"); break;
        case '<': strbuf_puts(sb, "&lt;"); break;
        case '>': strbuf_puts(sb, "&gt;"); break;
        case '"': strbuf_puts(sb, "&quot;"); break;
        case '\'': strbuf_puts(sb, "&#39;"); break;
        default: strbuf_append(sb, s, 1);
        }
}

/* A cell with a JSON value: text escaped, numbers as they are, null as a
 * dash. cls: the cell's class (also the test's handle on it). */
static void cell(strbuf *sb, const char *cls, const json_t *v)
{
    strbuf_printf(sb, "<td class=\"%s\">", cls);
    if (!v || json_is_null(v))
        strbuf_puts(sb, "&ndash;");
    else if (json_is_string(v))
        html_text(sb, json_string_value(v));
    else if (json_is_integer(v))
        strbuf_printf(sb, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        strbuf_printf(sb, "%.1f", json_real_value(v));
    else if (json_is_boolean(v))
        strbuf_puts(sb, json_is_true(v) ? "yes" : "no");
    strbuf_puts(sb, "</td>");
}

/* A table row of object v: cells[2i] is a cell's class, cells[2i+1] the
 * member it shows; n cells. */
static void row_cells(strbuf *sb, const json_t *v, const char *const *cells,
                      size_t n)
{
    size_t i;

    strbuf_puts(sb, "<tr>");
    for (i = 0; i < n; i++)
        cell(sb, cells[2 * i], json_object_get(v, cells[2 * i + 1]));
    strbuf_puts(sb, "</tr>\n");
}

static void html_workers(strbuf *sb, const json_t *pipe)
{
    const json_t *v;
    size_t k;

    strbuf_puts(sb, "<h3>Workers</h3>\n<table class=\"workers\"><tr><th>worker</th>"
                    "<th>pid</th><th>up</th><th>ready</th><th>restarts</th>"
                    "<th>restart in (s)</th></tr>\n");
    json_array_foreach(json_object_get(pipe, "workers"), k, v) {
        strbuf_printf(sb, "<tr class=\"%s\">", json_is_true(json_object_get(v, "up")) ? "" : "bad");
        cell(sb, "worker", json_object_get(v, "worker"));
        cell(sb, "pid", json_object_get(v, "pid"));
        cell(sb, "up", json_object_get(v, "up"));
        cell(sb, "ready", json_object_get(v, "ready"));
        cell(sb, "restarts", json_object_get(v, "restarts"));
        cell(sb, "num restart_in", json_object_get(v, "restart_in_s"));
        strbuf_puts(sb, "</tr>\n");
    }
    strbuf_puts(sb, "</table>\n");
}

static void html_partitions(strbuf *sb, const json_t *pipe)
{
    const json_t *v;
    size_t k;

    strbuf_puts(sb, "<h3>Partitions</h3>\n<table class=\"partitions\"><tr>"
                    "<th>topic</th><th>partition</th><th>stored offset</th><th>LSO</th>"
                    "<th>lag</th><th>rate (msg/s)</th><th>owner</th><th>worker</th>"
                    "<th>state</th></tr>\n");
    json_array_foreach(json_object_get(pipe, "partitions"), k, v) {
        const char *state = json_string_value(json_object_get(v, "state"));
        strbuf_puts(sb, "<tr class=\"partition-row\">");
        cell(sb, "topic", json_object_get(v, "topic"));
        cell(sb, "partition", json_object_get(v, "partition"));
        cell(sb, "stored", json_object_get(v, "stored"));
        cell(sb, "lso", json_object_get(v, "lso"));
        cell(sb, "lag", json_object_get(v, "lag"));
        cell(sb, "rate", json_object_get(v, "rate"));
        cell(sb, "owner", json_object_get(v, "owner"));
        cell(sb, "worker", json_object_get(v, "worker"));
        strbuf_puts(sb, "<td class=\"state state-");
        html_text(sb, state);
        strbuf_puts(sb, "\">");
        html_text(sb, state);
        strbuf_puts(sb, "</td></tr>\n");
    }
    strbuf_puts(sb, "</table>\n");
}

static void html_dead_letters(strbuf *sb, const json_t *dl)
{
    static const char *const reason_cells[] = {"reason", "reason",
                                               "count", "count"};
    static const char *const newest_cells[] = {
        "id", "id", "topic", "topic", "partition", "partition",
        "offset", "offset", "reason", "reason", "entity", "entity_id",
        "sqlstate", "sqlstate", "attempts", "attempts",
        "at", "last_failed_at"};
    const json_t *v;
    size_t k;

    /* Past the newest counted_max, the count is a lower bound and the
     * reasons are those of the newest: the heading says so. */
    int capped = json_is_true(json_object_get(dl, "total_at_least"));

    strbuf_puts(sb, capped ? "<h3>Dead letters: at least <span class=\"dl-total\">"
                           : "<h3>Dead letters: <span class=\"dl-total\">");
    v = json_object_get(dl, "total");
    if (json_is_integer(v))
        strbuf_printf(sb, "%lld", (long long)json_integer_value(v));
    else
        strbuf_puts(sb, "&ndash;");
    strbuf_puts(sb, "</span>");
    if (capped)
        strbuf_printf(sb, " (by reason: the newest %lld)",
                      (long long)json_integer_value(json_object_get(dl, "counted_max")));
    strbuf_puts(sb, "</h3>\n<table class=\"dead-reasons\"><tr><th>reason</th><th>count</th></tr>\n");
    json_array_foreach(json_object_get(dl, "by_reason"), k, v)
        row_cells(sb, v, reason_cells, 2);
    strbuf_puts(sb, "</table>\n<table class=\"dead-newest\"><tr><th>id</th><th>topic</th>"
                    "<th>partition</th><th>offset</th><th>reason</th><th>entity</th>"
                    "<th>SQLSTATE</th><th>attempts</th><th>last failed</th></tr>\n");
    json_array_foreach(json_object_get(dl, "newest"), k, v)
        row_cells(sb, v, newest_cells, 9);
    strbuf_puts(sb, "</table>\n");
}

/* The table of last errors of obj (a pipeline: with a worker column). */
static void html_errors(strbuf *sb, const json_t *obj, int with_worker)
{
    const json_t *v;
    size_t k;

    strbuf_puts(sb, with_worker
                        ? "<h3>Last errors</h3>\n<table class=\"errors\"><tr><th>worker</th>"
                          "<th>at</th><th>line</th></tr>\n"
                        : "<h3>Last errors</h3>\n<table class=\"errors\">"
                          "<tr><th>at</th><th>line</th></tr>\n");
    json_array_foreach(json_object_get(obj, "errors"), k, v) {
        strbuf_puts(sb, "<tr>");
        if (with_worker)
            cell(sb, "worker", json_object_get(v, "worker"));
        cell(sb, "at", json_object_get(v, "at"));
        strbuf_puts(sb, "<td class=\"line\"><pre>");
        html_text(sb, json_string_value(json_object_get(v, "line")));
        strbuf_puts(sb, "</pre></td></tr>\n");
    }
    strbuf_puts(sb, "</table>\n");
}

static void html_pipeline(strbuf *sb, const json_t *pipe)
{
    strbuf_puts(sb, "<section class=\"pipeline\" data-pipeline=\"");
    html_text(sb, json_string_value(json_object_get(pipe, "name")));
    strbuf_puts(sb, "\">\n<h2>Pipeline ");
    html_text(sb, json_string_value(json_object_get(pipe, "name")));
    strbuf_puts(sb, "</h2>\n");
    html_workers(sb, pipe);
    html_partitions(sb, pipe);
    html_dead_letters(sb, json_object_get(pipe, "dead_letters"));
    html_errors(sb, pipe, 1);
    strbuf_puts(sb, "</section>\n");
}

static void html_relay(strbuf *sb, const json_t *relay)
{
    strbuf_puts(sb, "<section class=\"relay\" data-relay=\"");
    html_text(sb, json_string_value(json_object_get(relay, "name")));
    strbuf_puts(sb, "\">\n<h2>Relay ");
    html_text(sb, json_string_value(json_object_get(relay, "name")));
    strbuf_printf(sb, "</h2>\n<table class=\"relay\"><tr><th>pid</th><th>up</th>"
                      "<th>publishing</th><th>restarts</th><th>restart in (s)</th><th>pending</th>"
                      "<th>oldest pending (s)</th><th>published</th>"
                      "<th>dead-lettered</th><th>sent again</th></tr>\n<tr class=\"%s\">",
                  json_is_true(json_object_get(relay, "up")) ? "" : "bad");
    cell(sb, "pid", json_object_get(relay, "pid"));
    cell(sb, "up", json_object_get(relay, "up"));
    cell(sb, "publishing", json_object_get(relay, "publishing"));
    cell(sb, "restarts", json_object_get(relay, "restarts"));
    cell(sb, "num restart_in", json_object_get(relay, "restart_in_s"));
    cell(sb, "num pending", json_object_get(relay, "pending"));
    cell(sb, "num oldest", json_object_get(relay, "oldest_pending_s"));
    cell(sb, "num published", json_object_get(relay, "published"));
    cell(sb, "num dead", json_object_get(relay, "dead_lettered"));
    cell(sb, "num resent", json_object_get(relay, "resent"));
    strbuf_puts(sb, "</tr>\n</table>\n");
    html_errors(sb, relay, 0);
    strbuf_puts(sb, "</section>\n");
}

char *http_status_html(const json_t *st)
{
    strbuf sb = {0};
    const json_t *v, *db = json_object_get(st, "database");
    size_t i;

    strbuf_puts(&sb, page_head);
    strbuf_puts(&sb, "<h1>exactly</h1>\n<p class=\"note\">Generated at <span id=\"generated\">");
    html_text(&sb, json_string_value(json_object_get(st, "generated_at")));
    strbuf_puts(&sb, "</span>; refreshes every 5 s. Same data: <a href=\"/status.json\">/status.json</a>, "
                     "<a href=\"/metrics\">/metrics</a>.</p>\n");
    if (!json_is_true(json_object_get(db, "ok"))) {
        strbuf_puts(&sb, "<p class=\"note\" id=\"db-error\">Database not read: ");
        html_text(&sb, json_string_value(json_object_get(db, "error")));
        strbuf_puts(&sb, " (offsets and dead letters as last read)</p>\n");
    }
    json_array_foreach(json_object_get(st, "pipelines"), i, v)
        html_pipeline(&sb, v);
    json_array_foreach(json_object_get(st, "relays"), i, v)
        html_relay(&sb, v);
    strbuf_puts(&sb, "</body></html>\n");
    if (sb.oom) {
        strbuf_free(&sb);
        return NULL;
    }
    return sb.data;
}
