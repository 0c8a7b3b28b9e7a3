/*
 * test_grants.c - the grants' quoting answers with a code: a name the
 * quoting refuses is EXACTLY_ECONFIG (the configuration's fault, exit 2),
 * never mistaken for EXACTLY_ENOMEM, and a name it takes is quoted.
 *
 * Pure: needs no database.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/grants.h"
#include "testkit.h"
#include "upsert_sql.h"

/* role must be refused with EXACTLY_ECONFIG and a reason naming needle. */
static void check_refused(const char *role, const char *needle)
{
    char err[256] = "", *q = NULL;
    exactly_err rc = ops_grants_quote_role(role, &q, err, sizeof(err));

    TK_CHECK(rc == EXACTLY_ECONFIG && q == NULL && strstr(err, needle),
             "role '%.20s...' (%zu bytes): rc %d, quoted %s, err '%s'", role,
             strlen(role), (int)rc, q ? q : "(null)", err);
    free(q);
}

static void check_quoted(const char *role, const char *want)
{
    char err[256] = "", *q = NULL;
    exactly_err rc = ops_grants_quote_role(role, &q, err, sizeof(err));

    TK_CHECK(rc == EXACTLY_OK, "role '%s': rc %d, err '%s'", role, (int)rc,
             err);
    TK_CHECK_EQ_STR(q, want, "the quoted role");
    free(q);
}

int main(void)
{
    char name[UPSERT_SQL_MAX_IDENT + 2], want[UPSERT_SQL_MAX_IDENT + 4];

    check_quoted("exactly_worker", "\"exactly_worker\"");
    check_quoted("a\"b", "\"a\"\"b\"");
    /* A role is one identifier: a dot is part of its name. */
    check_quoted("team.worker", "\"team.worker\"");
    memset(name, 'r', UPSERT_SQL_MAX_IDENT);
    name[UPSERT_SQL_MAX_IDENT] = '\0';
    snprintf(want, sizeof(want), "\"%s\"", name);
    check_quoted(name, want);
    name[UPSERT_SQL_MAX_IDENT] = 'r';
    name[UPSERT_SQL_MAX_IDENT + 1] = '\0';
    check_refused(name, "longer than");
    check_refused("", "empty");
    tk_note("grants: quoting refusals are EXACTLY_ECONFIG");
    return 0;
}
