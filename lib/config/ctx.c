/*
 * ctx.c - the context of one read of YAML: the path of the key being read
 * and the one message a failure leaves (schema.h).
 */
#include "config/schema.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "config/config_env.h"

/* The configuration speaks of keys by their dotted path. */
static const cfg_voice config_voice = {
    .noun = "key",
    .subject = "'%s'",
    .who = NULL,
    .no_fields = "nothing is valid here",
    .nomem = "out of memory while reading the configuration",
    .by_key = 0,
};

const cfg_voice *exactly_cfg_voice(const cfg_ctx *c)
{
    return c->voice ? c->voice : &config_voice;
}

size_t exactly_cfg_path_push(cfg_key_path *p, const char *key)
{
    size_t saved = p->len;
    int n = snprintf(p->buf + p->len, sizeof(p->buf) - p->len, "%s%s",
                     p->len ? "." : "", key);

    if (n > 0)
        p->len += (size_t)n;
    if (p->len >= sizeof(p->buf))
        p->len = sizeof(p->buf) - 1;
    return saved;
}

size_t exactly_cfg_path_push_index(cfg_key_path *p, size_t index)
{
    size_t saved = p->len;
    int n = snprintf(p->buf + p->len, sizeof(p->buf) - p->len, "[%zu]", index);

    if (n > 0)
        p->len += (size_t)n;
    if (p->len >= sizeof(p->buf))
        p->len = sizeof(p->buf) - 1;
    return saved;
}

void exactly_cfg_path_pop(cfg_key_path *p, size_t saved)
{
    p->len = saved;
    p->buf[saved] = '\0';
}

const char *exactly_cfg_name(const cfg_ctx *c)
{
    return exactly_cfg_voice(c)->by_key && c->key ? c->key : c->path.buf;
}

const char *exactly_cfg_subject(cfg_ctx *c)
{
    snprintf(c->subject, sizeof(c->subject), exactly_cfg_voice(c)->subject,
             exactly_cfg_name(c));
    return c->subject;
}

int exactly_cfg_fail_at(cfg_ctx *c, cfg_pos pos, const char *fmt, ...)
{
    const cfg_voice *v = exactly_cfg_voice(c);
    char msg[2048];
    va_list ap;
    int n;

    if (c->rc != EXACTLY_OK)
        return -1;
    c->rc = EXACTLY_ECONFIG;
    if (c->err_size == 0)
        return -1;
    n = snprintf(msg, sizeof(msg), "%s:%d:%d: ", c->file, pos.line,
                 pos.column);
    if (v->who && n >= 0 && (size_t)n < sizeof(msg)) {
        int m = snprintf(msg + n, sizeof(msg) - (size_t)n, v->who, c->who);

        n = m < 0 ? m : n + m;
    }
    if (n >= 0 && (size_t)n < sizeof(msg)) {
        va_start(ap, fmt);
        vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
        va_end(ap);
    }
    /* Keys and values quoted from the file may hold control bytes. */
    exactly_cfg_escape(c->err, c->err_size, msg);
    return -1;
}

int exactly_cfg_fail_file(cfg_ctx *c, exactly_err rc, const char *what)
{
    char msg[2048];

    if (c->rc != EXACTLY_OK)
        return -1;
    c->rc = rc;
    snprintf(msg, sizeof(msg), "%s: %s", c->file, what);
    exactly_cfg_escape(c->err, c->err_size, msg);
    return -1;
}

int exactly_cfg_fail_nomem(cfg_ctx *c)
{
    const cfg_voice *v = exactly_cfg_voice(c);
    char msg[2048];
    int n;

    if (!v->who)
        return exactly_cfg_fail_file(c, EXACTLY_ENOMEM, v->nomem);
    /* A handler's options: the handler is named instead of the file. */
    if (c->rc != EXACTLY_OK)
        return -1;
    c->rc = EXACTLY_ENOMEM;
    n = snprintf(msg, sizeof(msg), v->who, c->who);
    if (n >= 0 && (size_t)n < sizeof(msg))
        snprintf(msg + n, sizeof(msg) - (size_t)n, "%s", v->nomem);
    exactly_cfg_escape(c->err, c->err_size, msg);
    return -1;
}

int exactly_cfg_fail_missing(cfg_ctx *c, cfg_pos at, const char *key)
{
    exactly_cfg_path_push(&c->path, key);
    c->key = key;
    return exactly_cfg_fail_at(c, at, "missing required %s '%s'",
                               exactly_cfg_voice(c)->noun,
                               exactly_cfg_name(c));
}
