#include "hosts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ledger_check.h"
#include "testkit.h"

void host_init(host *h, const char *dir, const char *id)
{
    memset(h, 0, sizeof *h);
    snprintf(h->id, sizeof h->id, "%s", id);
    snprintf(h->lock_dir, sizeof h->lock_dir, "%s/%s-run", dir, id);
    snprintf(h->log, sizeof h->log, "%s/%s.log", dir, id);
    TK_CHECK(mkdir(h->lock_dir, 0700) == 0, "mkdir %s", h->lock_dir);
}

void host_start(host *h, const char *config)
{
    char env_id[64], env_lock[640];
    /* env(1) sets the host's variables for it alone: the test process has
     * threads, and setenv() among them is not safe. */
    char *argv[] = {"env", env_id, env_lock, (char *)ledger_exactly_bin(),
                    "run", "-c", (char *)config, NULL};

    snprintf(env_id, sizeof env_id, "EXACTLY_HOST_ID=%s", h->id);
    snprintf(env_lock, sizeof env_lock, "EXACTLY_LOCK_DIR=%s", h->lock_dir);
    h->pid = tk_spawn(argv, h->log);
}

int64_t host_sessions(PGconn *db, const host *h)
{
    const char *params[1];
    char like[64];
    PGresult *res;
    int64_t n;

    snprintf(like, sizeof like, "%s:%%", h->id);
    params[0] = like;
    res = PQexecParams(db, "SELECT count(*) FROM pg_stat_activity"
                           " WHERE datname = current_database()"
                           " AND application_name LIKE $1",
                       1, NULL, params, NULL, NULL, 0);
    TK_CHECK(PQresultStatus(res) == PGRES_TUPLES_OK, "pg_stat_activity: %s",
             PQerrorMessage(db));
    n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return n;
}

int host_owns(const host *h, const char *owner)
{
    size_t n = strlen(h->id);
    const char *p;
    char *end;

    if (strncmp(owner, h->id, n) != 0 || owner[n] != ':')
        return 0;
    p = owner + n + 1;
    if (strtol(p, &end, 10) <= 0 || *end != ':')
        return 0;
    p = end + 1;
    strtol(p, &end, 10);
    return end != p && *end == '\0';
}
