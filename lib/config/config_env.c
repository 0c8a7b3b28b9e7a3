/*
 * config_env.c - ${VAR} and ${VAR:-default} expansion of a configuration
 * scalar (into a util/strbuf), and the strict number and boolean
 * conversions. Contract: config_env.h.
 */
#include "config_env.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/strbuf.h"

static int is_name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

/* ${A:-${B:-...}} may nest; a hostile file must not recurse without end. */
#define MAX_NESTING 8

static int expand_into(const char *text, size_t len, strbuf *b, int depth,
                       char *why, size_t why_size);

/* The '}' that closes the reference whose body starts at ref: "${" inside
 * it opens a nested reference and "$$" is a literal '$'. NULL when the
 * reference is not closed before end. */
static const char *find_close(const char *ref, const char *end)
{
    int open = 0;
    const char *p;

    for (p = ref; p < end; p++) {
        if (p[0] == '$' && p + 1 < end && (p[1] == '$' || p[1] == '{')) {
            open += p[1] == '{';
            p++;
        } else if (*p == '}') {
            if (open == 0)
                return p;
            open--;
        }
    }
    return NULL;
}

/*
 * Expands the reference that starts at ref (just past "${") and ends no
 * later than end, and returns the number of bytes it used, up to and
 * including its '}'; 0 on error with the reason in why. The default of
 * ${NAME:-default} is itself expanded, and only when it is used.
 */
static size_t expand_ref(const char *ref, const char *end, strbuf *b,
                         int depth, char *why, size_t why_size)
{
    const char *close = find_close(ref, end);
    const char *name_end = ref;
    const char *value;
    char name[256];
    size_t name_len;

    if (!close) {
        snprintf(why, why_size, "unterminated '${' (write '$$' for a literal '$')");
        return 0;
    }
    if (is_name_start(*name_end))
        while (is_name_char(*name_end))
            name_end++;
    name_len = (size_t)(name_end - ref);
    if (name_len == 0 || name_len >= sizeof(name) ||
        (name_end != close && strncmp(name_end, ":-", 2) != 0)) {
        snprintf(why, why_size,
                 "invalid reference '${%.*s}': expected ${NAME} or "
                 "${NAME:-default}",
                 (int)(close - ref), ref);
        return 0;
    }
    memcpy(name, ref, name_len);
    name[name_len] = '\0';
    value = getenv(name);

    if (name_end == close) {
        if (!value) {
            snprintf(why, why_size, "environment variable '%s' is not set",
                     name);
            return 0;
        }
        strbuf_append(b, value, strlen(value));
    } else if (value && value[0] != '\0') {
        strbuf_append(b, value, strlen(value));
    } else {
        /* As in the shell, the default also covers a variable set to "",
         * and it may hold references of its own. */
        const char *def = name_end + 2;

        if (depth >= MAX_NESTING) {
            snprintf(why, why_size, "references nested deeper than %d levels",
                     MAX_NESTING);
            return 0;
        }
        if (expand_into(def, (size_t)(close - def), b, depth + 1, why,
                        why_size))
            return 0;
    }
    return (size_t)(close - ref) + 1;
}

/* Expands len bytes of text into b. Returns 0, or -1 with why set. */
static int expand_into(const char *text, size_t len, strbuf *b, int depth,
                       char *why, size_t why_size)
{
    const char *p = text, *end = text + len;

    while (p < end) {
        const char *dollar = memchr(p, '$', (size_t)(end - p));
        size_t used;

        if (!dollar) {
            strbuf_append(b, p, (size_t)(end - p));
            break;
        }
        strbuf_append(b, p, (size_t)(dollar - p));
        if (dollar + 1 < end && dollar[1] == '$') {
            strbuf_append(b, "$", 1);
            p = dollar + 2;
        } else if (dollar + 1 < end && dollar[1] == '{') {
            used = expand_ref(dollar + 2, end, b, depth, why, why_size);
            if (used == 0)
                return -1;
            p = dollar + 2 + used;
        } else {
            strbuf_append(b, "$", 1);
            p = dollar + 1;
        }
    }
    return 0;
}

exactly_err exactly_env_expand(const char *text, char **out, int *used_env,
                               char *why, size_t why_size)
{
    strbuf b = {0};

    *out = NULL;
    *used_env = strstr(text, "${") != NULL;
    if (why_size > 0)
        why[0] = '\0';
    if (!strchr(text, '$')) {
        /* Most scalars: nothing to expand. */
        *out = strdup(text);
        return *out ? EXACTLY_OK : EXACTLY_ENOMEM;
    }
    if (expand_into(text, strlen(text), &b, 0, why, why_size)) {
        free(b.data);
        return EXACTLY_ECONFIG;
    }
    /* An empty text still yields an empty string, not NULL. */
    strbuf_append(&b, "", 0);
    if (b.oom) {
        free(b.data);
        return EXACTLY_ENOMEM;
    }
    *out = b.data;
    return EXACTLY_OK;
}

int exactly_cfg_parse_int64(const char *s, int64_t *out)
{
    const char *digits = s[0] == '-' ? s + 1 : s;
    char *end;
    long long v;

    /* strtoll alone would also take spaces, '+' and "0x". */
    if (*digits < '0' || *digits > '9')
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = (int64_t)v;
    return 0;
}

int exactly_cfg_parse_bool(const char *s, int *out)
{
    static const char *const words[][2] = {
        {"true", "false"}, {"yes", "no"}, {"on", "off"}};
    size_t i;

    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (strcasecmp(s, words[i][0]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, words[i][1]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

void exactly_cfg_escape(char *dst, size_t dst_size, const char *src)
{
    size_t o = 0;

    if (dst_size == 0)
        return;
    for (; *src; src++) {
        unsigned char c = (unsigned char)*src;
        char esc[8];
        size_t n;

        if (c == '\n')
            n = (size_t)snprintf(esc, sizeof(esc), "\\n");
        else if (c == '\r')
            n = (size_t)snprintf(esc, sizeof(esc), "\\r");
        else if (c == '\t')
            n = (size_t)snprintf(esc, sizeof(esc), "\\t");
        else if (c < 0x20 || c == 0x7f)
            n = (size_t)snprintf(esc, sizeof(esc), "\\x%02x", c);
        else
            n = (size_t)snprintf(esc, sizeof(esc), "%c", c);
        if (o + n >= dst_size)
            break;
        memcpy(dst + o, esc, n);
        o += n;
    }
    dst[o] = '\0';
}
