/*
 * conninfo_redact.c - keeping the conninfo's passwords out of messages
 * (conninfo.h): where the passwords are in a conninfo as written, the
 * conninfo with them replaced, and any text produced while using it with
 * every spelling of them replaced.
 */
#include "config/conninfo.h"

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

size_t exactly_conninfo_uri_prefix(const char *s)
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
    const char *auth = s + exactly_conninfo_uri_prefix(s);
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
    if (exactly_conninfo_uri_prefix(s))
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
