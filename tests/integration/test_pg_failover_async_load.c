/*
 * Failover to an asynchronous standby under steady load: the standby may
 * lack the last commits (data and offsets together). The worker applies
 * what was lost again: consumed >= produced, and more only when a
 * partition was found behind; the exactly-once check holds on the new
 * primary. Prints crash -> promoted and promoted -> first commit.
 */
#include <inttypes.h>
#include <stdio.h>

#include "failover.h"
#include "testkit.h"

int main(void)
{
    static failover f;
    int64_t consumed, promote_ms, first_ms;
    int behind;

    failover_start(&f, "failover_async_load", "async", 100, 10000);
    tk_note("logs in %s", f.dir);
    failover_under_load(&f, &behind, &consumed, &promote_ms, &first_ms);
    LEDGER_CHECK_LOG(consumed >= f.produced, f.log, "consumed %" PRId64
                     " < produced %" PRId64, consumed, f.produced);
    LEDGER_CHECK_LOG(consumed == f.produced || behind > 0, f.log,
                     "consumed %" PRId64 " > produced %" PRId64 " though no "
                     "partition was behind", consumed, f.produced);
    tk_note("failover (async, under load): crash to promoted %" PRId64
            " ms, promoted to first commit %" PRId64 " ms; %d partitions "
            "found behind, %" PRId64 " messages applied again", promote_ms,
            first_ms, behind, consumed - f.produced);
    failover_stop(&f);
    return 0;
}
