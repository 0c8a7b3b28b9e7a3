/*
 * Failover to a synchronous standby (synchronous_standby_names='*') under
 * steady load: every commit the worker saw answered is on the standby, so
 * no partition is ever found behind after the promotion, nothing is
 * applied twice (consumed = produced) and the exactly-once check holds on
 * the new primary. Prints crash -> promoted and promoted -> first commit.
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

    failover_start(&f, "failover_sync", "sync", 100, 10000);
    tk_note("logs in %s", f.dir);
    failover_under_load(&f, &behind, &consumed, &promote_ms, &first_ms);
    LEDGER_CHECK_LOG(behind == 0, f.log, "a synchronous standby lacked a "
                     "commit: %d times a stored offset was behind", behind);
    LEDGER_CHECK_LOG(consumed == f.produced, f.log, "consumed %" PRId64
                     ", produced %" PRId64 ": something was applied again",
                     consumed, f.produced);
    tk_note("failover (sync, under load): crash to promoted %" PRId64
            " ms, promoted to first commit %" PRId64 " ms", promote_ms,
            first_ms);
    failover_stop(&f);
    return 0;
}
