/*
 * error_value.c - the one error value of a batch (see error_value.h).
 */
#include "error_value.h"

#include <stdio.h>
#include <string.h>

#include "escape.h"

void exactly_error_clear(exactly_error *e) { memset(e, 0, sizeof(*e)); }

void exactly_error_note(exactly_error *e, const char *sqlstate,
                        const char *msg)
{
    snprintf(e->sqlstate, sizeof(e->sqlstate), "%s", sqlstate ? sqlstate : "");
    exactly_utf8_copy(e->message, sizeof(e->message),
                      msg && *msg ? msg : "unknown error");
}

void exactly_error_set_code(exactly_error *e, exactly_err code)
{
    e->code = code;
    e->retriable = code == EXACTLY_ERETRY || code == EXACTLY_EDATABASE;
    e->fatal = code == EXACTLY_EFATAL;
}

const char *exactly_error_sqlstate(const exactly_error *e)
{
    return e->sqlstate[0] ? e->sqlstate : NULL;
}

exactly_cause exactly_error_cause(const exactly_error *e)
{
    const char *st = e->sqlstate;

    /* A batch retried and committed after all went through careful mode:
     * the handler failed on a record. */
    if (e->handler_retry || e->code == EXACTLY_EHANDLER ||
        e->code == EXACTLY_OK)
        return EXACTLY_CAUSE_HANDLER;
    if (e->environment)
        return EXACTLY_CAUSE_ENVIRONMENT;
    if (!st[0] || strncmp(st, "08", 2) == 0 || strncmp(st, "57P", 3) == 0)
        return EXACTLY_CAUSE_CONNECTION;
    if (strcmp(st, "40001") == 0)
        return EXACTLY_CAUSE_SERIALIZATION;
    if (strcmp(st, "40P01") == 0)
        return EXACTLY_CAUSE_DEADLOCK;
    if (strcmp(st, "57014") == 0 || strcmp(st, "55P03") == 0 ||
        strcmp(st, "25P03") == 0)
        return EXACTLY_CAUSE_TIMEOUT;
    return EXACTLY_CAUSE_OTHER;
}
