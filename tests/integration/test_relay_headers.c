/*
 * The outbox relay sends a row's own headers as the row holds them: a
 * string as its bytes, null as a null value, and any other JSON value as
 * its JSON text, which PostgreSQL keeps exactly (jsonb: 1.10 stays 1.10,
 * a 21-digit integer stays whole). Before, the relay re-parsed the
 * headers with a double for every number: 1.10 went out as
 * "1.1000000000000001", and a row with an integer beyond 64 bits was
 * dead-lettered as "headers must be a JSON object".
 *
 * Rows (exactly.outbox, headers jsonb; jsonb orders keys by length, then
 * bytes, and prints nested values with ", " and ": "):
 *   k1: numbers, a string with a quote, null, true, a nested object
 *   k2: a decimal alone
 *   k3: a non-ASCII string (no \u escape left in jsonb's text)
 *   k4: a control character, which jsonb prints as a \u escape: the
 *       relay's other path, which parses the text itself
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_check.h"
#include "relay_kit.h"
#include "testkit.h"

#define TOPIC "relay-headers"

static const relay_rec *by_key(const relay_rec *recs, size_t n,
                               const char *key)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(recs[i].key, key) == 0)
            return &recs[i];
    tk_fail("no record with key %s on the topic", key);
    return NULL;
}

int main(void)
{
    relay_fixture f;
    relay_rec *recs;
    size_t n;
    int status;
    char *dead;

    relay_fixture_start(&f, "relay_headers", NULL);
    tk_mock_create_topic(f.mock, TOPIC, 1);
    relay_fixture_config(&f, &(relay_config){.name = "hdr", .topic = TOPIC});
    tk_sql(f.db,
           "INSERT INTO exactly.outbox (key, value, headers) VALUES "
           "(convert_to('k1', 'UTF8'), 'v', '{\"p\": 1.10, \"big\": "
           "123456789012345678901, \"s\": \"x\\\"y\", \"n\": null, "
           "\"t\": true, \"o\": {\"a\": [1, 2.50]}}'), "
           "(convert_to('k2', 'UTF8'), 'v', '{\"p\": 1.10}'), "
           "(convert_to('k3', 'UTF8'), 'v', '{\"u\": \"caf\\u00e9\"}'), "
           "(convert_to('k4', 'UTF8'), 'v', '{\"c\": \"a\\u0001b\"}')");
    status = relay_run_to_idle(f.config, 300, 60000, f.log);
    TK_CHECK_EQ_INT64(status, 0, "relay exit status");
    dead = tk_sql_text(f.db, "SELECT coalesce(string_agg(convert_from(key, "
                             "'UTF8') || ': ' || dead_reason, '; '), '') "
                             "FROM exactly.outbox WHERE dead_reason IS NOT "
                             "NULL");
    TK_CHECK(dead[0] == '\0', "rows dead-lettered for their headers: %s", dead);
    free(dead);
    TK_CHECK_EQ_INT64(tk_sql_int64(f.db, "SELECT count(*) FROM exactly.outbox "
                                         "WHERE published_at IS NULL"),
                      0, "rows still pending");

    recs = relay_read_topic(f.bootstraps, TOPIC, 1, &n);
    TK_CHECK_EQ_INT64((int64_t)n, 4, "records on the topic");
    TK_CHECK_EQ_STR(by_key(recs, n, "k2")->headers, "p=1.10;",
                    "k2: a decimal keeps its digits");
    TK_CHECK_EQ_STR(by_key(recs, n, "k1")->headers,
                    "n;o={\"a\": [1, 2.50]};p=1.10;s=x\"y;t=true;"
                    "big=123456789012345678901;",
                    "k1: every kind of value, in jsonb's key order");
    TK_CHECK_EQ_STR(by_key(recs, n, "k3")->headers, "u=caf\xc3\xa9;",
                    "k3: a non-ASCII string as its UTF-8 bytes");
    TK_CHECK_EQ_STR(by_key(recs, n, "k4")->headers, "c=a\001b;",
                    "k4: a control character as its byte");
    tk_note("4 rows, 4 records: headers as the rows hold them");
    free(recs);
    relay_fixture_stop(&f);
    return 0;
}
