/*
 * fuzz_conninfo.c - libFuzzer target: conninfo checks, merging, redaction
 * and scrubbing.
 *
 * The input is a conninfo, optionally followed by a NUL byte and a message
 * to scrub. Every function must return without crashing, a merge must
 * always name the session, and whenever libpq itself reads a password of
 * 4 bytes or more out of the conninfo, a scrubbed message that quotes
 * that password must no longer hold it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "conninfo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* libpq's own reading of the password, or NULL. malloc'd. */
static char *libpq_password(const char *conninfo)
{
    PQconninfoOption *opts, *o;
    char *errmsg = NULL, *pw = NULL;

    if (!strstr(conninfo, "://") && !strchr(conninfo, '='))
        return NULL;
    opts = PQconninfoParse(conninfo, &errmsg);
    if (errmsg)
        PQfreemem(errmsg);
    for (o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val)
            pw = strdup(o->val);
    PQconninfoFree(opts);
    return pw;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const exactly_conn_settings ours = {"fuzz:1:0", "10",
                                        "-c statement_timeout=1"};
    char *conninfo = malloc(size + 1), *msg, *pw, *quoted;
    const char *nul;
    char out[4096], why[300];
    exactly_conn_params params;

    if (!conninfo)
        return 0;
    memcpy(conninfo, data, size);
    conninfo[size] = '\0';
    nul = memchr(data, '\0', size);
    msg = nul ? conninfo + (nul - (const char *)data) + 1 : "";

    (void)exactly_conninfo_problem(conninfo);
    if (!exactly_conninfo_problem(conninfo))
        (void)exactly_conninfo_conflict(conninfo, size & 1, why, sizeof(why));
    if (exactly_conninfo_params(conninfo, &ours, &params) == EXACTLY_OK &&
        !exactly_conninfo_param(&params, "application_name"))
        abort();
    exactly_conninfo_params_free(&params);
    exactly_config_redact_conninfo(conninfo, out, sizeof(out));
    exactly_conninfo_scrub(conninfo, msg, out, sizeof(out));

    pw = libpq_password(conninfo);
    if (pw && strlen(pw) >= 4 && strlen(pw) < 1000 && !strchr(pw, '*')) {
        quoted = malloc(strlen(pw) + 32);
        if (quoted) {
            strcpy(quoted, "failed for \"");
            strcat(quoted, pw);
            strcat(quoted, "\"");
            exactly_conninfo_scrub(conninfo, quoted, out, sizeof(out));
            if (strstr(out, pw))
                abort();
            free(quoted);
        }
    }
    free(pw);
    free(conninfo);
    return 0;
}
