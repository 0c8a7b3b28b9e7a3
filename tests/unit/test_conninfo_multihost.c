/*
 * Multi-host conninfo (failover): host, hostaddr and port lists, in
 * keyword and URI form, with target_session_attrs, pass the conninfo
 * checks, keep every list as written when merged with exactly's settings,
 * and passwords in them are still scrubbed from messages.
 */
#include <stdio.h>
#include <string.h>

#include "config/conninfo.h"
#include "testkit.h"

typedef struct tcase {
    const char *conninfo;
    const char *host, *hostaddr, *port, *attrs, *password;
} tcase;

int main(void)
{
    static const tcase cases[] = {
        {"host=pg-a,pg-b port=5432,5433 dbname=app user=x password=s3cr3t "
         "target_session_attrs=read-write",
         "pg-a,pg-b", NULL, "5432,5433", "read-write", "s3cr3t"},
        {"host=/tmp/a,/tmp/b,pg-c port=1,2,3 target_session_attrs=primary "
         "dbname=app",
         "/tmp/a,/tmp/b,pg-c", NULL, "1,2,3", "primary", NULL},
        {"hostaddr=10.0.0.1,10.0.0.2 port=5432 target_session_attrs=any",
         NULL, "10.0.0.1,10.0.0.2", "5432", "any", NULL},
        {"postgresql://x:pw%2Fd@pg-a:5432,pg-b:5433/app?"
         "target_session_attrs=read-write",
         "pg-a,pg-b", NULL, "5432,5433", "read-write", "pw/d"},
        {"postgres://x:hunter2@[::1]:5432,pg-b/app?target_session_attrs="
         "prefer-standby",
         "::1,pg-b", NULL, "5432,", "prefer-standby", "hunter2"},
    };
    exactly_conn_settings s = {"exactly-test", "7", "-c statement_timeout=1000"};
    size_t i;

    for (i = 0; i < sizeof cases / sizeof *cases; i++) {
        const tcase *c = &cases[i];
        const char *problem = exactly_conninfo_problem(c->conninfo);
        exactly_conn_params p;
        char why[512], msg[512], out[512];

        TK_CHECK(problem == NULL, "case %zu refused: %s", i, problem);
        TK_CHECK(exactly_conninfo_conflict(c->conninfo, 1, why, sizeof why)
                     == NULL, "case %zu: conflict %s", i, why);
        memset(&p, 0, sizeof p);
        TK_CHECK(exactly_conninfo_params(c->conninfo, &s, &p) == EXACTLY_OK,
                 "case %zu: cannot merge", i);
#define SAME(key, want)                                                        \
    do {                                                                       \
        const char *got = exactly_conninfo_param(&p, key);                     \
        TK_CHECK((want) ? got && strcmp(got, (want)) == 0 : got == NULL,       \
                 "case %zu: %s is '%s', want '%s'", i, key,                    \
                 got ? got : "(none)", (want) ? (want) : "(none)");            \
    } while (0)
        SAME("host", c->host);
        SAME("hostaddr", c->hostaddr);
        SAME("port", c->port);
        SAME("target_session_attrs", c->attrs);
        SAME("application_name", "exactly-test");
        SAME("connect_timeout", "7");
        exactly_conninfo_params_free(&p);
        if (c->password) {
            snprintf(msg, sizeof msg, "connection to pg-b failed: password "
                     "%s rejected", c->password);
            exactly_conninfo_scrub(c->conninfo, msg, out, sizeof out);
            TK_CHECK(strstr(out, c->password) == NULL, "case %zu: password "
                     "left in '%s'", i, out);
            TK_CHECK(strstr(out, "****") != NULL, "case %zu: '%s'", i, out);
        }
    }
    tk_note("%zu multi-host conninfos accepted and merged", i);
    return 0;
}
