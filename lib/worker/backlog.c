/* backlog.c - a partition's backlog and its tail (see backlog.h). */
#include "backlog.h"

int worker_backlog_after(int backlog, size_t n, size_t max, size_t n_buf,
                         int64_t beyond)
{
    if (n < max)
        return beyond >= 0 && (int64_t)(n_buf - n) + beyond > 0 ? backlog : 0;
    if (backlog)
        return 1;
    return (int64_t)(n_buf - n) + (beyond > 0 ? beyond : 0) >= (int64_t)max;
}

int worker_backlog_tail(int backlog, size_t n_buf, int64_t beyond)
{
    return backlog && n_buf > 0 && beyond == 0;
}
