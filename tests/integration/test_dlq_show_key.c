/*
 * `exactly dlq show` tells a cut-off key from a whole one.
 *
 * A dead letter keeps the message key's first 1,024 bytes with its full
 * length and SHA-256 (README). Two dead letters are planted the way the
 * worker writes them: one whose key is 3,000 bytes (only the prefix kept)
 * and one whose key is 3 bytes. show must print each key's full length
 * and digest, and say of the first that the bytes shown are a prefix, not
 * the key; of the second it must not.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_kit.h"
#include "dlq_kit.h"
#include "testkit.h"

#define TOPIC "dlq-show-key"
#define PIPELINE "showkey"
#define LONG_KEY "repeat('k', 3000)"
#define SHORT_KEY "'abc'"

static void write_config(cli_kit *c)
{
    tk_config cfg;
    tk_pipeline *pl = dlq_view_pipeline(c, &cfg, PIPELINE, TOPIC, "text",
                                        (const char *[]){"id", NULL});

    pl->on_missing = "skip";
    tk_config_write(c->cfg, &cfg);
}

/* `dlq show --id id`: its output (malloc'd); fails unless it exits 0. */
static char *show(cli_kit *c, const char *id)
{
    char *out;
    int status = cli_exactly(c, &out, "dlq", "show", "--id", id, NULL);

    TK_CHECK(status == 0, "dlq show --id %s exited %d:\n%s", id, status, out);
    return out;
}

int main(void)
{
    char *long_id, *short_id, *long_sha, *short_sha, *out, want[160];
    cli_kit c;

    cli_kit_start(&c, "dlq_show_key", TOPIC, 1, "showkey.yaml", 0);
    tk_sql(c.db, "CREATE TABLE src (id text PRIMARY KEY);"
                 "CREATE TABLE view (id text PRIMARY KEY)");
    write_config(&c);
    cli_kit_migrate(&c);
    long_id = dlq_plant_key(&c, PIPELINE, TOPIC, 0, LONG_KEY);
    short_id = dlq_plant_key(&c, PIPELINE, TOPIC, 1, SHORT_KEY);
    long_sha = tk_sql_text(c.db, "SELECT encode(sha256(convert_to(" LONG_KEY
                                 ", 'UTF8')), 'hex')");
    short_sha = tk_sql_text(c.db, "SELECT encode(sha256(convert_to(" SHORT_KEY
                                  ", 'UTF8')), 'hex')");

    out = show(&c, long_id);
    tk_note("dlq show of the 3,000-byte key:\n%.600s...", out);
    snprintf(want, sizeof want, "key:             3000 bytes, SHA-256 %s",
             long_sha);
    TK_CHECK(strstr(out, want) != NULL,
             "dlq show does not give the cut key's full length and digest "
             "(want '%s'):\n%.600s", want, out);
    TK_CHECK(strstr(out, "first 1024 bytes") != NULL,
             "dlq show does not say the key shown is its first 1024 bytes "
             "only:\n%.600s", out);
    free(out);

    out = show(&c, short_id);
    tk_note("dlq show of the 3-byte key:\n%s", out);
    snprintf(want, sizeof want, "key:             3 bytes, SHA-256 %s\n",
             short_sha);
    TK_CHECK(strstr(out, want) != NULL &&
                 strstr(out, "key (text):      abc\n") &&
                 strstr(out, "key (hex):       616263\n") &&
                 !strstr(out, "first 1024"),
             "dlq show of a whole key (want '%s', no prefix note):\n%s", want,
             out);
    free(out);

    free(long_id);
    free(short_id);
    free(long_sha);
    free(short_sha);
    cli_kit_stop(&c);
    return 0;
}
