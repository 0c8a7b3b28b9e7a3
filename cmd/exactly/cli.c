#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* vasprintf */
#endif

#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "escape.h"
#include "log.h"
#include "strbuf.h"

void cli_line(FILE *out, const char *fmt, ...)
{
    char *text = NULL;
    strbuf sb = {0};
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0) {
        fputs("(out of memory)\n", out);
        return;
    }
    exactly_escape_printable(&sb, text, (size_t)n);
    strbuf_append(&sb, "\n", 1);
    if (sb.oom)
        fputs("(out of memory)\n", out);
    else
        fwrite(sb.data, 1, sb.len, out);
    strbuf_free(&sb);
    free(text);
}

static int level_from_flag;

void cli_set_log_level(int level)
{
    level_from_flag = 1;
    exactly_log_set_level((exactly_log_level)level);
}

exactly_config *cli_load_config(const char *path)
{
    exactly_config *cfg = NULL;
    char err[2048];

    if (!path) {
        fprintf(stderr, "exactly: missing -c FILE\n");
        return NULL;
    }
    if (exactly_config_load(path, &cfg, err, sizeof(err)) != EXACTLY_OK) {
        cli_line(stderr, "exactly: %s", err);
        return NULL;
    }
    exactly_log_set_json(cfg->log.format == CFG_LOG_JSON);
    if (!level_from_flag)
        exactly_log_set_level((exactly_log_level)cfg->log.level);
    return cfg;
}

const cfg_pipeline *cli_pick_pipeline(const exactly_config *cfg,
                                      const char *name)
{
    const cfg_pipeline *p;
    size_t i;

    if (name) {
        p = exactly_config_pipeline(cfg, name);
        if (!p) {
            fprintf(stderr, "exactly: %s: no pipeline '%s' (have:", cfg->path,
                    name);
            for (i = 0; i < cfg->n_pipelines; i++)
                fprintf(stderr, " %s", cfg->pipelines[i].name);
            fprintf(stderr, ")\n");
        }
        return p;
    }
    if (cfg->n_pipelines == 1)
        return &cfg->pipelines[0];
    cli_line(stderr, "exactly: %s has %zu pipelines; choose one with --pipeline NAME",
             cfg->path, cfg->n_pipelines);
    return NULL;
}

static volatile sig_atomic_t *stop_flag;

static void on_stop_signal(int sig)
{
    if (*stop_flag) {
        signal(sig, SIG_DFL);
        raise(sig);
    }
    *stop_flag = 1;
}

void cli_stop_on_signals(volatile sig_atomic_t *flag)
{
    struct sigaction sa;

    stop_flag = flag;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int cli_parse_int64(const char *cmd, const char *opt, const char *value,
                    int64_t min, int64_t max, int64_t *out)
{
    char *end;
    long long n;

    errno = 0;
    n = strtoll(value, &end, 10);
    if (errno || end == value || *end || n < min || n > max) {
        fprintf(stderr,
                "exactly %s: %s takes a whole number from %" PRId64 " to %" PRId64
                ", got '%s'\n",
                cmd, opt, min, max, value);
        return -1;
    }
    *out = n;
    return 0;
}
