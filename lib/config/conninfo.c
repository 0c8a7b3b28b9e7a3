#include "conninfo.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>

/* ------------------------------------------------------------------ */
/* Where the passwords are                                             */
/* ------------------------------------------------------------------ */

/* A password's bytes in the conninfo, as written. */
typedef struct secret_span {
    size_t start;
    size_t len;
    int uri;    /* percent-encoded (a URI part) */
    int quoted; /* a keyword value: may be '...' with backslash escapes */
} secret_span;

/* More password-like keys than any real conninfo holds; extra ones are
 * still redacted by a blanket rule (see find_spans). */
#define MAX_SPANS 32

typedef struct span_list {
    secret_span items[MAX_SPANS];
    size_t n;
    int overflow;
} span_list;

static void add_span(span_list *l, size_t start, size_t len, int uri,
                     int quoted)
{
    if (len == 0)
        return;
    if (l->n == MAX_SPANS) {
        l->overflow = 1;
        return;
    }
    l->items[l->n++] = (secret_span){start, len, uri, quoted};
}

static size_t uri_prefix(const char *s)
{
    if (strncmp(s, "postgresql://", 13) == 0)
        return 13;
    if (strncmp(s, "postgres://", 11) == 0)
        return 11;
    return 0;
}

/* libpq has both "password" and "sslpassword"; hide anything like them. */
static int is_password_key(const char *key, size_t len)
{
    static const char word[] = "password";
    size_t i;

    for (i = 0; i + sizeof(word) - 1 <= len; i++)
        if (strncasecmp(key + i, word, sizeof(word) - 1) == 0)
            return 1;
    return 0;
}

/*
 * Where a URI's user information ends: the '@' before it. libpq takes the
 * first '@' met before any '/'; a writer who forgot to escape '/' or '@'
 * in the password meant the last '@' before the query string. The later
 * of the two covers both readings. NULL: no user information.
 */
static const char *uri_userinfo_end(const char *auth)
{
    const char *libpq_at = NULL, *last_at = NULL, *p;
    const char *query = strchr(auth, '?');
    const char *end = query ? query : auth + strlen(auth);

    for (p = auth; *p && *p != '/'; p++) {
        if (*p == '@') {
            libpq_at = p;
            break;
        }
    }
    for (p = auth; p < end; p++)
        if (*p == '@')
            last_at = p;
    if (!last_at || (libpq_at && libpq_at > last_at))
        return libpq_at;
    return last_at;
}

static void uri_spans(const char *s, span_list *l)
{
    const char *auth = s + uri_prefix(s);
    const char *at = uri_userinfo_end(auth);
    const char *colon, *p;

    if (at) {
        colon = memchr(auth, ':', (size_t)(at - auth));
        if (colon)
            add_span(l, (size_t)(colon + 1 - s), (size_t)(at - colon - 1), 1,
                     0);
    }
    p = strchr(at ? at : auth, '?');
    while (p && *p) {
        const char *param = p + 1; /* past '?' or '&' */
        const char *amp = strchr(param, '&');
        const char *pend = amp ? amp : param + strlen(param);
        const char *eq = memchr(param, '=', (size_t)(pend - param));

        if (eq && is_password_key(param, (size_t)(eq - param)))
            add_span(l, (size_t)(eq + 1 - s), (size_t)(pend - eq - 1), 1, 0);
        p = pend;
    }
}

/* Skips one keyword=value value (quoted with '...' and backslash escapes,
 * or bare up to whitespace) and returns where it ends. */
static const char *skip_value(const char *p)
{
    if (*p != '\'') {
        while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            if (*p == '\\' && p[1])
                p++;
            p++;
        }
        return p;
    }
    for (p++; *p && *p != '\''; p++)
        if (*p == '\\' && p[1])
            p++;
    return *p ? p + 1 : p;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void keyword_spans(const char *s, span_list *l)
{
    const char *p = s;

    while (*p) {
        const char *key = p, *key_end, *eq, *value;

        while (*p && *p != '=' && !is_space(*p))
            p++;
        key_end = p;
        eq = p;
        while (*eq == ' ' || *eq == '\t')
            eq++;
        if (key_end == key || *eq != '=') {
            /* Whitespace or junk: move on by one word or byte. */
            p = key_end == key ? key + 1 : key_end;
            continue;
        }
        value = eq + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        p = skip_value(value);
        if (is_password_key(key, (size_t)(key_end - key)))
            add_span(l, (size_t)(value - s), (size_t)(p - value), 0, 1);
    }
}

static void find_spans(const char *s, span_list *l)
{
    memset(l, 0, sizeof(*l));
    if (uri_prefix(s))
        uri_spans(s, l);
    else
        keyword_spans(s, l);
}

/* ------------------------------------------------------------------ */
/* Redaction of the conninfo itself                                    */
/* ------------------------------------------------------------------ */

/* Bounded output: appends what fits and always stays NUL-terminated. */
typedef struct red_out {
    char *buf;
    size_t size;
    size_t len;
} red_out;

static void red_put(red_out *o, const char *s, size_t n)
{
    size_t room;

    if (o->size == 0)
        return;
    room = o->size - 1 - o->len;
    if (n > room)
        n = room;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

void exactly_config_redact_conninfo(const char *conninfo, char *out,
                                    size_t out_size)
{
    red_out o = {out, out_size, 0};
    span_list l;
    size_t at = 0, i;

    if (out_size == 0)
        return;
    out[0] = '\0';
    if (!conninfo)
        return;
    find_spans(conninfo, &l);
    if (l.overflow) {
        red_put(&o, "****", 4);
        return;
    }
    for (i = 0; i < l.n; i++) {
        red_put(&o, conninfo + at, l.items[i].start - at);
        red_put(&o, "****", 4);
        at = l.items[i].start + l.items[i].len;
    }
    red_put(&o, conninfo + at, strlen(conninfo + at));
}

/* ------------------------------------------------------------------ */
/* Scrubbing messages                                                  */
/* ------------------------------------------------------------------ */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The span's text as libpq would use it: percent-decoded (URI) or without
 * quotes and backslash escapes (keyword value). malloc'd, or NULL. */
static char *span_decoded(const char *s, const secret_span *sp)
{
    const char *p = s + sp->start, *end = p + sp->len;
    char *out = malloc(sp->len + 1), *o = out;

    if (!out)
        return NULL;
    if (sp->quoted && p < end && *p == '\'') {
        p++;
        if (end > p && end[-1] == '\'')
            end--;
    }
    while (p < end) {
        if (sp->uri && *p == '%' && end - p >= 3 && hexval(p[1]) >= 0 &&
            hexval(p[2]) >= 0) {
            *o++ = (char)(hexval(p[1]) * 16 + hexval(p[2]));
            p += 3;
        } else if (sp->quoted && *p == '\\' && p + 1 < end) {
            *o++ = p[1];
            p += 2;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

/* The strings to hide, longest first, so that a password is replaced
 * whole before a shorter one that is a piece of it. */
typedef struct secrets {
    char *items[3 * MAX_SPANS + 4];
    size_t n;
} secrets;

static void secrets_add(secrets *sc, char *s)
{
    size_t i;

    if (!s)
        return;
    if (s[0] == '\0' || sc->n == sizeof(sc->items) / sizeof(sc->items[0])) {
        free(s);
        return;
    }
    for (i = 0; i < sc->n; i++) {
        if (strcmp(sc->items[i], s) == 0) {
            free(s);
            return;
        }
    }
    sc->items[sc->n++] = s;
}

static int longer_first(const void *a, const void *b)
{
    size_t la = strlen(*(char *const *)a), lb = strlen(*(char *const *)b);

    return la < lb ? 1 : la > lb ? -1 : 0;
}

/* Every password of conninfo, as written and as libpq would read it. */
static void collect_secrets(const char *conninfo, secrets *sc)
{
    span_list l;
    PQconninfoOption *opts, *o;
    char *errmsg = NULL;
    size_t i;

    memset(sc, 0, sizeof(*sc));
    find_spans(conninfo, &l);
    for (i = 0; i < l.n; i++) {
        secrets_add(sc, strndup(conninfo + l.items[i].start, l.items[i].len));
        secrets_add(sc, span_decoded(conninfo, &l.items[i]));
    }
    /* libpq's own reading, where it can read it at all. */
    opts = PQconninfoParse(conninfo, &errmsg);
    if (errmsg)
        PQfreemem(errmsg);
    for (o = opts; o && o->keyword; o++)
        if (o->val && is_password_key(o->keyword, strlen(o->keyword)))
            secrets_add(sc, strdup(o->val));
    PQconninfoFree(opts);
    qsort(sc->items, sc->n, sizeof(sc->items[0]), longer_first);
}

/* Replaces every occurrence of secret in *text by "****"; *text is
 * reallocated. Returns 0, or -1 when out of memory. */
static int replace_all(char **text, const char *secret)
{
    size_t sl = strlen(secret), n = 0;
    const char *p = *text;
    char *out, *o;

    while ((p = strstr(p, secret)) != NULL) {
        n++;
        p += sl;
    }
    if (n == 0)
        return 0;
    out = malloc(strlen(*text) + n * 4 + 1);
    if (!out)
        return -1;
    o = out;
    p = *text;
    for (;;) {
        const char *hit = strstr(p, secret);

        if (!hit)
            break;
        memcpy(o, p, (size_t)(hit - p));
        o += hit - p;
        memcpy(o, "****", 4);
        o += 4;
        p = hit + sl;
    }
    strcpy(o, p);
    free(*text);
    *text = out;
    return 0;
}

void exactly_conninfo_scrub(const char *conninfo, const char *msg, char *out,
                            size_t out_size)
{
    static const char withheld[] = "(message withheld: out of memory while "
                                   "hiding the password)";
    red_out o = {out, out_size, 0};
    secrets sc;
    char *text;
    size_t i;
    int failed = 0;

    if (out_size == 0)
        return;
    out[0] = '\0';
    if (!msg)
        return;
    if (!conninfo) {
        red_put(&o, msg, strlen(msg));
        return;
    }
    collect_secrets(conninfo, &sc);
    text = strdup(msg);
    failed = text == NULL;
    for (i = 0; i < sc.n; i++) {
        if (!failed && replace_all(&text, sc.items[i]) != 0)
            failed = 1;
        free(sc.items[i]);
    }
    if (failed)
        red_put(&o, withheld, sizeof(withheld) - 1);
    else
        red_put(&o, text, strlen(text));
    free(text);
}

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
    const char *auth = s + uri_prefix(s);
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
    if (uri_prefix(conninfo) && uri_is_ambiguous(conninfo))
        return "cannot be parsed as written: a '@' or '/' in the URI's user "
               "name or password must be percent-encoded ('%40', '%2F'), or "
               "libpq reads part of it as the host, port or database";
    if (!uri_prefix(conninfo) && !strchr(conninfo, '=')) {
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
    return uri_prefix(conninfo) || strchr(conninfo, '=');
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
