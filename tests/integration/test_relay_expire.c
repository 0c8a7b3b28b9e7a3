/*
 * cleanup: mark keeps published rows for `retention`, then deletes them
 * (relay_expire). The expiry must keep up with what was published, not
 * delete a fixed slice a minute (10,000 rows: above ~167 rows/s sustained
 * the published rows would pile up without bound):
 *   - a relay with retention: 1s publishes ROWS rows and idles out;
 *   - past the retention a relay starts again: its first cycle finds
 *     nothing to send and expires what is past the retention;
 *   - once it idled out (well within a minute, so within one expiry), no
 *     published row older than the retention is left.
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

#define TOPIC "relay-expire"
#define ROWS 30000

int main(void)
{
    relay_fixture f;
    PGconn *q;
    FILE *cfg;
    int64_t t0, left;
    int status;

    relay_fixture_start(&f, "relay_expire", NULL);
    q = f.db;
    tk_mock_create_topic(f.mock, TOPIC, 1);
    relay_fixture_config(&f, &(relay_config){.name = "expire",
                                             .topic = TOPIC,
                                             .batch_size = 5000,
                                             .kafka = "linger.ms: 5"});
    /* The relay's section is the file's last: one more of its keys. */
    cfg = fopen(f.config, "a");
    TK_CHECK(cfg != NULL, "cannot append to %s", f.config);
    fputs("    retention: 1s\n", cfg);
    TK_CHECK(fclose(cfg) == 0, "cannot write %s", f.config);

    tk_sql(q, "INSERT INTO exactly.outbox (key, value) SELECT "
              "convert_to(g::text, 'UTF8'), 'v' FROM generate_series(1, %d) g",
           ROWS);
    status = relay_run_to_idle(f.config, 500, 180000, f.log);
    LEDGER_CHECK_LOG(status == 0, f.log, "relay exit status %d", status);
    TK_CHECK_EQ_INT64(tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox "
                                      "WHERE published_at IS NULL"),
                      0, "rows left pending");

    tk_sleep_ms(1500); /* past the retention */
    t0 = tk_now_ms();
    status = relay_run_to_idle(f.config, 1000, 55000, f.log2);
    LEDGER_CHECK_LOG(status == 0, f.log2, "relay exit status %d", status);
    left = tk_sql_int64(q, "SELECT count(*) FROM exactly.outbox WHERE "
                           "published_at < now() - interval '1 second'");
    LEDGER_CHECK_LOG(left == 0, f.log2,
                     "%lld of the %d published rows past the retention "
                     "left after the relay's expiry (%lld ms)",
                     (long long)left, ROWS, (long long)(tk_now_ms() - t0));
    tk_note("the %d published rows past the retention expired in %lld ms",
            ROWS, (long long)(tk_now_ms() - t0));
    relay_fixture_stop(&f);
    return 0;
}
