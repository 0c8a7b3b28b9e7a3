/*
 * conninfo.c - whether libpq reads the configuration's conninfo as
 * written, and the conninfo merged with the settings exactly adds
 * (conninfo.h). Passwords are kept out of messages by conninfo_redact.c.
 */
#include "config/conninfo.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>

/* ------------------------------------------------------------------ */
/* Whether libpq reads the conninfo as written                         */
/* ------------------------------------------------------------------ */

#define PARSE_FAILS(why)                                                      \
    "cannot be parsed: " why " (libpq's own message is not shown, as it can " \
    "quote the password)"

/* libpq's parse errors, by what they are about, as fixed sentences. The
 * messages are matched in English; a translated one gets the last line. */
static const char *parse_problem(const char *libpq_message)
{
    static const struct {
        const char *has;
        const char *sentence;
    } kinds[] = {
        {"percent-encod",
         PARSE_FAILS("it has an invalid percent-escape (write '%' as '%25')")},
        {"%00", PARSE_FAILS("it has a percent-escape for a NUL byte")},
        {"IPv6",
         PARSE_FAILS("an IPv6 host address in '[...]' is unclosed or empty")},
        {"unexpected character",
         PARSE_FAILS("the URI has a character where only ':' and a port, or "
                     "'/' and a database, may follow the host")},
        {"key/value separator",
         PARSE_FAILS("a URI query parameter is not one name=value pair")},
        {"invalid URI query parameter",
         PARSE_FAILS("it names an unknown connection option")},
        {"invalid connection option",
         PARSE_FAILS("it names an unknown connection option")},
        {"missing \"=\"",
         PARSE_FAILS("a word is not followed by '=' (quote a value that "
                     "holds spaces: password='a b')")},
        {"unterminated quoted string",
         PARSE_FAILS("a quoted value is not closed")},
        {"out of memory", PARSE_FAILS("out of memory while parsing it")},
    };
    size_t i;

    for (i = 0; libpq_message && i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strstr(libpq_message, kinds[i].has))
            return kinds[i].sentence;
    return PARSE_FAILS("libpq rejects it");
}

/* A URI whose user information libpq would read differently from what the
 * text says: an '@' that is not the one libpq splits at (an unescaped '@'
 * or '/' in the user name or password). */
static int uri_is_ambiguous(const char *s)
{
    const char *auth = s + exactly_conninfo_uri_prefix(s);
    const char *p = auth, *query;

    /* libpq: the user information ends at the first '@' before any '/'. */
    while (*p && *p != '@' && *p != '/')
        p++;
    p = *p == '@' ? p + 1 : auth;
    query = strchr(p, '?');
    return memchr(p, '@', (size_t)((query ? query : p + strlen(p)) - p)) !=
           NULL;
}

const char *exactly_conninfo_problem(const char *conninfo)
{
    PQconninfoOption *opts;
    const char *why;
    char *errmsg = NULL;

    if (!conninfo)
        return "it is missing";
    if (exactly_conninfo_uri_prefix(conninfo) &&
        uri_is_ambiguous(conninfo))
        return "cannot be parsed as written: a '@' or '/' in the URI's user "
               "name or password must be percent-encoded ('%40', '%2F'), or "
               "libpq reads part of it as the host, port or database";
    if (!exactly_conninfo_uri_prefix(conninfo) && !strchr(conninfo, '=')) {
        /* libpq would send the whole text as a database name. */
        if (strpbrk(conninfo, ":/@"))
            return "cannot be parsed: it is neither keyword=value pairs "
                   "nor a postgresql:// URI (libpq would send the whole "
                   "text to the server as a database name)";
        return NULL;
    }
    opts = PQconninfoParse(conninfo, &errmsg);
    if (opts) {
        PQconninfoFree(opts);
        return NULL;
    }
    /* Never libpq's message itself: it quotes pieces of the conninfo. */
    why = parse_problem(errmsg);
    if (errmsg)
        PQfreemem(errmsg);
    return why;
}

/* ------------------------------------------------------------------ */
/* The user's settings and exactly's                                   */
/* ------------------------------------------------------------------ */

/* libpq reads a text without '=' that is no URI as a database name. */
static int is_connection_string(const char *conninfo)
{
    return exactly_conninfo_uri_prefix(conninfo) || strchr(conninfo, '=');
}

/* The parsed options of conninfo (NULL for a bare database name or one
 * that cannot be parsed). Free with PQconninfoFree(). */
static PQconninfoOption *parse(const char *conninfo)
{
    char *errmsg = NULL;
    PQconninfoOption *opts;

    if (!is_connection_string(conninfo))
        return NULL;
    opts = PQconninfoParse(conninfo, &errmsg);
    if (errmsg)
        PQfreemem(errmsg);
    return opts;
}

static const char *option_value(const PQconninfoOption *opts,
                                const char *key)
{
    for (; opts && opts->keyword; opts++)
        if (strcmp(opts->keyword, key) == 0)
            return opts->val;
    return NULL;
}

/* The server settings exactly sets through options, with the key of the
 * configuration that sets each. */
static const struct {
    const char *guc;
    const char *key;
} owned_gucs[] = {
    {"statement_timeout", "postgres.statement_timeout_ms"},
    {"lock_timeout", "postgres.lock_timeout_ms"},
    {"idle_in_transaction_session_timeout",
     "postgres.idle_in_transaction_timeout_ms"},
};

/*
 * Whether a server setting named in options (the libpq "options" value:
 * command-line switches split at unescaped whitespace, "-c name=value",
 * "-cname=value" or "--name=value", '-' in names read as '_', names in any
 * case) is one exactly sets. Returns its index in owned_gucs, or -1.
 */
static int options_owned_guc(const char *options)
{
    const char *p = options;
    int after_c = 0;

    while (*p) {
        char word[256];
        size_t n = 0, i;
        const char *arg = NULL;

        while (*p && isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        while (*p && !isspace((unsigned char)*p)) {
            if (*p == '\\' && p[1])
                p++;
            if (n + 1 < sizeof(word))
                word[n++] = *p;
            p++;
        }
        word[n] = '\0';
        if (after_c)
            arg = word;
        else if (strncmp(word, "--", 2) == 0)
            arg = word + 2;
        else if (strncmp(word, "-c", 2) == 0 && word[2])
            arg = word + 2;
        after_c = !arg && strcmp(word, "-c") == 0;
        if (!arg)
            continue;
        {
            char name[256];
            size_t k = strcspn(arg, "=");

            if (k >= sizeof(name))
                continue;
            for (i = 0; i < k; i++)
                name[i] = arg[i] == '-' ? '_'
                                        : (char)tolower((unsigned char)arg[i]);
            name[k] = '\0';
            for (i = 0; i < sizeof(owned_gucs) / sizeof(owned_gucs[0]); i++)
                if (strcmp(name, owned_gucs[i].guc) == 0)
                    return (int)i;
        }
    }
    return -1;
}

const char *exactly_conninfo_conflict(const char *conninfo,
                                      int yaml_connect_timeout, char *why,
                                      size_t why_size)
{
    PQconninfoOption *opts = parse(conninfo ? conninfo : "");
    const char *v;
    int g;

    if (why_size > 0)
        why[0] = '\0';
    if (!opts)
        return NULL;
    if (option_value(opts, "application_name")) {
        snprintf(why, why_size,
                 "'postgres.conninfo' sets application_name: exactly names "
                 "each session itself (a worker's owner, by which 'exactly "
                 "offsets reset' finds running workers); remove it");
    } else if ((v = option_value(opts, "options")) &&
               (g = options_owned_guc(v)) >= 0) {
        snprintf(why, why_size,
                 "'postgres.conninfo' sets %s in its options: set '%s' "
                 "instead",
                 owned_gucs[g].guc, owned_gucs[g].key);
    } else if (yaml_connect_timeout && option_value(opts, "connect_timeout")) {
        snprintf(why, why_size,
                 "'postgres.conninfo' sets connect_timeout and "
                 "'postgres.connect_timeout_s' is set too: keep one of "
                 "them");
    }
    PQconninfoFree(opts);
    return why_size > 0 && why[0] ? why : NULL;
}

void exactly_conninfo_params_free(exactly_conn_params *p)
{
    if (!p)
        return;
    free(p->keys);
    free(p->vals);
    PQconninfoFree(p->parsed);
    free(p->options);
    memset(p, 0, sizeof(*p));
}

const char *exactly_conninfo_param(const exactly_conn_params *p,
                                   const char *key)
{
    size_t i;

    for (i = 0; p->keys && p->keys[i]; i++)
        if (strcmp(p->keys[i], key) == 0)
            return p->vals[i];
    return NULL;
}

exactly_err exactly_conninfo_params(const char *conninfo,
                                    const exactly_conn_settings *s,
                                    exactly_conn_params *out)
{
    /* Our defaults; a value of the conninfo's own wins. */
    const char *defaults[][2] = {
        {"connect_timeout", s->connect_timeout},
        {"keepalives", "1"},
        {"keepalives_idle", "10"},
        {"keepalives_interval", "5"},
        {"keepalives_count", "3"},
    };
    const size_t n_defaults = sizeof(defaults) / sizeof(defaults[0]);
    PQconninfoOption *o;
    const char *user_options = NULL;
    size_t cap = n_defaults + 4, n = 0, i;

    memset(out, 0, sizeof(*out));
    if (is_connection_string(conninfo)) {
        out->parsed = parse(conninfo);
        if (!out->parsed)
            return EXACTLY_ECONFIG;
        for (o = out->parsed; o->keyword; o++)
            cap++;
    }
    out->keys = calloc(cap, sizeof(*out->keys));
    out->vals = calloc(cap, sizeof(*out->vals));
    if (!out->keys || !out->vals)
        goto nomem;
    if (!out->parsed) {
        out->keys[n] = "dbname";
        out->vals[n++] = conninfo;
    }
    for (o = out->parsed; o && o->keyword; o++) {
        if (!o->val || strcmp(o->keyword, "application_name") == 0)
            continue;
        if (strcmp(o->keyword, "options") == 0) {
            user_options = o->val;
            continue;
        }
        out->keys[n] = o->keyword;
        out->vals[n++] = o->val;
    }
    for (i = 0; i < n_defaults; i++) {
        if (option_value(out->parsed, defaults[i][0]) || !defaults[i][1])
            continue;
        out->keys[n] = defaults[i][0];
        out->vals[n++] = defaults[i][1];
    }
    if (user_options && user_options[0] && s->options && s->options[0]) {
        size_t len = strlen(user_options) + strlen(s->options) + 2;

        if (!(out->options = malloc(len)))
            goto nomem;
        snprintf(out->options, len, "%s %s", user_options, s->options);
    } else if (!(out->options = strdup(user_options && user_options[0]
                                           ? user_options
                                           : s->options ? s->options : ""))) {
        goto nomem;
    }
    out->keys[n] = "options";
    out->vals[n++] = out->options;
    if (s->application_name) {
        out->keys[n] = "application_name";
        out->vals[n++] = s->application_name;
    }
    out->keys[n] = NULL;
    out->vals[n] = NULL;
    return EXACTLY_OK;

nomem:
    exactly_conninfo_params_free(out);
    return EXACTLY_ENOMEM;
}
