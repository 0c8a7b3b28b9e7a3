/*
 * Every line of the log is one valid record, whatever the messages and
 * the server put in it (defects 14 and 27).
 *
 * A pipeline with text IDs (the built-in upsert, lookup by table with
 * on_missing: dead_letter) consumes IDs that hold '"', '=', '\\', a
 * newline, a carriage return, a tab, ESC sequences, DEL, a C1 control
 * (U+009B) and a forged log line ("\nts=... level=error ... msg=\"FORGED
 * ...\""), each in three forms:
 *
 *   A:<id>  has a source row that a trigger on the target refuses with
 *           RAISE EXCEPTION (SQLSTATE 23514) whose message quotes the ID
 *           and holds quotes, '=', a newline and a forged line: the record
 *           is isolated, logged and dead-lettered with that text;
 *   N:<id>  has a row the trigger lets through after a RAISE NOTICE with
 *           the same kind of text (libpq's notice processor routes it
 *           into the log);
 *   B:<id>  has no source row: dead-lettered, "lookup found no row".
 *
 * librdkafka's own lines (debug: cgrp) quote group names with '"'.
 *
 * The run is made once with log.format logfmt and once with json, with
 * `exactly run --log-file`, so the file holds the log alone. Then:
 *
 *   logfmt  every line parses with the strict parser below: key=value
 *           pairs separated by one space, keys [A-Za-z0-9_.-]+, unique,
 *           values bare (printable ASCII without '"', '=' or '\\') or
 *           double-quoted with only \" \\ \n \r \t \uXXXX and \xNN (a byte
 *           that is not UTF-8) as escapes, no raw control byte (C0, DEL,
 *           C1) anywhere; ts, level, comp and msg present, ts first;
 *   json    every line is one JSON object (jansson, duplicate keys
 *           refused), no raw control byte, ts/level/comp/msg strings,
 *           sqlstate always a string;
 *   both    no msg contains "FORGED" (a forged line would carry it
 *           there); each A:<id> is logged with field id equal to the
 *           exact ID and field error equal to the exact server message;
 *           each N:<id> notice arrives whole in a field; a sqlstate
 *           "23514" is logged.
 *
 * And `exactly dlq list` and `exactly dlq show` on those dead letters
 * print no control byte but the line ends, show ESC as the text \x1b,
 * and no ID starts a line of its own.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ledger_check.h"
#include "testkit.h"

#define TOPIC "log-format"
#define N_PARTITIONS 2
#define N_FINE 20
#define WORKER_TIMEOUT_MS 120000
#define CMD_TIMEOUT_MS 60000
#define MAX_PAIRS 64
#define MAX_SHOWN 6 /* printed problems of each kind */

/* The hostile parts of IDs; "A:", "N:" and "B:" are put in front. */
static const char *const hostile[] = {
    "quote\"d",
    "eq=ual",
    "back\\slash\\\"",
    "new\nline",
    "cr\rret",
    "tab\there",
    "esc\x1b[31mred\x1b[0m",
    "x\nts=2024-01-01T00:00:00.000Z level=error comp=cycle pid=1 "
    "msg=\"FORGED by id\" id=x",
    "{\"msg\":\"FORGED json\",\"level\":\"error\"}",
    " lead and trail ",
    "uni\xc3\xa9\xe2\x80\x8b", /* e acute, a zero-width space */
    "c1\xc2\x9b" "31m",        /* U+009B, CSI of 8-bit terminals */
    "del\x7f",
};
#define N_HOSTILE (sizeof hostile / sizeof hostile[0])

#define TRIGGER_SQL                                                           \
    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $f$\n"      \
    "BEGIN\n"                                                                 \
    "  IF NEW.v = 'note' THEN\n"                                              \
    "    RAISE NOTICE E'notice for \"%\" = v\\nlevel=error "                  \
    "msg=\"FORGED by notice\"', NEW.id;\n"                                    \
    "  END IF;\n"                                                             \
    "  IF NEW.v = 'boom' THEN\n"                                              \
    "    RAISE EXCEPTION E'row % refused: a \"quoted\" = value\\nsecond "     \
    "line level=error msg=\"FORGED by server\"', NEW.id\n"                    \
    "      USING ERRCODE = '23514', DETAIL = E'detail \\x1b[31m';\n"          \
    "  END IF;\n"                                                             \
    "  RETURN NEW;\n"                                                         \
    "END $f$;\n"                                                              \
    "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON dst\n"                  \
    "  FOR EACH ROW EXECUTE FUNCTION refuse();\n"

static int n_problems;

/* s as the test prints it: control bytes and non-ASCII as \xNN. */
static char *shown(const char *s, size_t n)
{
    char *out = malloc(n * 4 + 1);
    size_t o = 0, i;

    TK_CHECK(out != NULL, "out of memory");
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '\\')
            o += (size_t)sprintf(out + o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    out[o] = '\0';
    return out;
}

/* Counts a violation; the first few of each kind (what) are printed with
 * the line. */
static void problem(const char *what, const char *line, size_t n,
                    const char *fmt, ...) TK_PRINTF(4, 5);
static void problem(const char *what, const char *line, size_t n,
                    const char *fmt, ...)
{
    static const char *kinds[16];
    static int counts[16];
    char why[512];
    va_list ap;
    int k;

    n_problems++;
    for (k = 0; k < 15 && kinds[k] && strcmp(kinds[k], what) != 0; k++)
        ;
    kinds[k] = what;
    if (++counts[k] > MAX_SHOWN)
        return;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    {
        char *s = line ? shown(line, n < 600 ? n : 600) : NULL;
        tk_note("%s: %s%s%s", what, why, s ? ": " : "", s ? s : "");
        free(s);
    }
}

/* The whole file, with its length (it may hold NUL bytes). */
static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0, got;

    TK_CHECK(f != NULL, "cannot open %s", path);
    do {
        if (n + 65536 > cap) {
            cap = cap ? cap * 2 : 1 << 20;
            buf = realloc(buf, cap + 1);
            TK_CHECK(buf != NULL, "out of memory");
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* ---- a strict logfmt parser ------------------------------------------- */

typedef struct pair {
    char key[64];
    char *value; /* decoded, malloc'd; may hold any byte but NUL */
    size_t len;
    int quoted;
} pair;

typedef struct record {
    pair v[MAX_PAIRS];
    int n;
} record;

static void record_free(record *r)
{
    int i;

    for (i = 0; i < r->n; i++)
        free(r->v[i].value);
    r->n = 0;
}

static const pair *field(const record *r, const char *key)
{
    int i;

    for (i = 0; i < r->n; i++)
        if (strcmp(r->v[i].key, key) == 0)
            return &r->v[i];
    return NULL;
}

static int hexdigit(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Length of the valid UTF-8 sequence at p (n bytes left) that is neither
 * a C1 control nor a surrogate, else 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    uint32_t cp;
    size_t len, k;

    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xe0) == 0xc0) {
        len = 2;
        cp = p[0] & 0x1f;
    } else if ((p[0] & 0xf0) == 0xe0) {
        len = 3;
        cp = p[0] & 0x0f;
    } else if ((p[0] & 0xf8) == 0xf0) {
        len = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (k = 1; k < len; k++) {
        if ((p[k] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[k] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
        return 0;
    return len;
}

/* Appends code point cp as UTF-8. */
static size_t put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    out[0] = (char)(0xe0 | cp >> 12);
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
}

/* Parses one line (without its '\n') into r. NULL when it is valid
 * logfmt as the header of this file defines it, else why not. */
static const char *parse_logfmt(const char *line, size_t n, record *r)
{
    static char why[160];
    size_t i = 0;

    r->n = 0;
    if (n == 0)
        return "empty line";
    while (i < n) {
        pair *p;
        size_t k = i, o = 0;
        int j;

        if (r->n > 0) {
            if (line[i] != ' ')
                return "pairs not separated by one space";
            k = ++i;
        }
        while (i < n && (line[i] == '_' || line[i] == '.' || line[i] == '-' ||
                         (line[i] >= 'a' && line[i] <= 'z') ||
                         (line[i] >= 'A' && line[i] <= 'Z') ||
                         (line[i] >= '0' && line[i] <= '9')))
            i++;
        if (i == k)
            return "a key is empty or has a character outside [A-Za-z0-9_.-]";
        if (i >= n || line[i] != '=')
            return "a key is not followed by '='";
        if (r->n == MAX_PAIRS || i - k >= sizeof p->key)
            return "too many pairs or a key too long";
        p = &r->v[r->n++];
        memcpy(p->key, line + k, i - k);
        p->key[i - k] = '\0';
        p->value = malloc(n + 1);
        TK_CHECK(p->value != NULL, "out of memory");
        p->quoted = 0;
        for (j = 0; j < r->n - 1; j++)
            if (strcmp(r->v[j].key, p->key) == 0) {
                snprintf(why, sizeof why, "duplicate key '%s'", p->key);
                return why;
            }
        i++; /* '=' */
        if (i < n && line[i] == '"') {
            p->quoted = 1;
            i++;
            for (;;) {
                unsigned char c;
                size_t ul;
                if (i >= n)
                    return "unterminated quoted value";
                c = (unsigned char)line[i];
                if (c == '"') {
                    i++;
                    break;
                }
                if (c == '\\') {
                    char e = i + 1 < n ? line[i + 1] : '\0';
                    if (e == '"' || e == '\\') {
                        p->value[o++] = e;
                        i += 2;
                    } else if (e == 'n' || e == 'r' || e == 't') {
                        p->value[o++] = e == 'n' ? '\n' : e == 'r' ? '\r' : '\t';
                        i += 2;
                    } else if (e == 'u' && i + 5 < n &&
                               hexdigit(line[i + 2]) >= 0 &&
                               hexdigit(line[i + 3]) >= 0 &&
                               hexdigit(line[i + 4]) >= 0 &&
                               hexdigit(line[i + 5]) >= 0) {
                        uint32_t cp = (uint32_t)(hexdigit(line[i + 2]) << 12 |
                                                 hexdigit(line[i + 3]) << 8 |
                                                 hexdigit(line[i + 4]) << 4 |
                                                 hexdigit(line[i + 5]));
                        if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff))
                            return "\\u escape of NUL or a surrogate";
                        o += put_utf8(p->value + o, cp);
                        i += 6;
                    } else if (e == 'x' && i + 3 < n &&
                               hexdigit(line[i + 2]) >= 0 &&
                               hexdigit(line[i + 3]) >= 0) {
                        int b = hexdigit(line[i + 2]) << 4 | hexdigit(line[i + 3]);
                        if (b < 0x80)
                            return "\\x escape of an ASCII byte";
                        p->value[o++] = (char)b;
                        i += 4;
                    } else {
                        return "unknown escape in a quoted value";
                    }
                    continue;
                }
                if (c < 0x20 || c == 0x7f)
                    return "raw control byte in a quoted value";
                ul = utf8_len((const unsigned char *)line + i, n - i);
                if (ul == 0)
                    return "raw byte that is not UTF-8 (or a C1 control)";
                memcpy(p->value + o, line + i, ul);
                o += ul;
                i += ul;
            }
        } else {
            while (i < n && line[i] != ' ') {
                unsigned char c = (unsigned char)line[i];
                if (c <= 0x20 || c >= 0x7f || c == '"' || c == '=' || c == '\\')
                    return "bare value with a byte that needs quoting";
                p->value[o++] = (char)c;
                i++;
            }
            if (o == 0)
                return "empty bare value";
        }
        p->value[o] = '\0';
        p->len = o;
    }
    if (strcmp(r->v[0].key, "ts") != 0)
        return "first key is not ts";
    if (!field(r, "level") || !field(r, "comp") || !field(r, "msg"))
        return "level, comp or msg missing";
    return NULL;
}

/* ---- what both formats must carry -------------------------------------- */

typedef struct expect {
    char id[N_HOSTILE][256];       /* A:<hostile> */
    char error[N_HOSTILE][512];    /* the server's message for it */
    char notice[N_HOSTILE][256];   /* part of the notice for N:<hostile> */
    int id_seen[N_HOSTILE];
    int error_seen[N_HOSTILE];
    int notice_seen[N_HOSTILE];
    int sqlstate_23514;
    int kafka_quote; /* a librdkafka line carrying '"' */
    int lines;
} expect;

static void expect_init(expect *e)
{
    size_t i;

    memset(e, 0, sizeof *e);
    for (i = 0; i < N_HOSTILE; i++) {
        snprintf(e->id[i], sizeof e->id[i], "A:%s", hostile[i]);
        snprintf(e->error[i], sizeof e->error[i],
                 "row A:%s refused: a \"quoted\" = value\nsecond line "
                 "level=error msg=\"FORGED by server\"",
                 hostile[i]);
        snprintf(e->notice[i], sizeof e->notice[i],
                 "notice for \"N:%s\" = v\nlevel=error msg=\"FORGED by "
                 "notice\"",
                 hostile[i]);
    }
}

/* One decoded field of a line, whatever the format. */
static void expect_field(expect *e, const char *comp, const char *key,
                         const char *v, size_t len, const char *line,
                         size_t n)
{
    size_t i;

    if (strcmp(key, "msg") == 0 && memmem(v, len, "FORGED", 6))
        problem("forged", line, n, "msg carries FORGED");
    if (strcmp(key, "level") == 0 && strcmp(v, "error") && strcmp(v, "warn") &&
        strcmp(v, "info") && strcmp(v, "debug"))
        problem("level", line, n, "level '%s'", v);
    if (strcmp(key, "sqlstate") == 0 && strcmp(v, "23514") == 0)
        e->sqlstate_23514 = 1;
    if (comp && strcmp(comp, "kafka") == 0 && strcmp(key, "msg") != 0 &&
        memchr(v, '"', len))
        e->kafka_quote = 1;
    for (i = 0; i < N_HOSTILE; i++) {
        if (strcmp(key, "id") == 0 && strlen(e->id[i]) == len &&
            memcmp(v, e->id[i], len) == 0)
            e->id_seen[i] = 1;
        if (strcmp(key, "error") == 0 && strlen(e->error[i]) == len &&
            memcmp(v, e->error[i], len) == 0)
            e->error_seen[i] = 1;
        if (memmem(v, len, e->notice[i], strlen(e->notice[i])))
            e->notice_seen[i] = 1;
    }
}

static void expect_done(const expect *e, const char *format)
{
    size_t i;

    if (e->lines < 20)
        problem(format, NULL, 0, "only %d log lines", e->lines);
    for (i = 0; i < N_HOSTILE; i++) {
        char *s = shown(hostile[i], strlen(hostile[i]));
        if (!e->id_seen[i])
            problem(format, NULL, 0, "no line has id equal to A:%s", s);
        if (!e->error_seen[i])
            problem(format, NULL, 0,
                    "no line has error equal to the server's message for A:%s",
                    s);
        if (!e->notice_seen[i])
            problem(format, NULL, 0, "the notice for N:%s is not logged whole",
                    s);
        free(s);
    }
    if (!e->sqlstate_23514)
        problem(format, NULL, 0, "no line has sqlstate 23514 (as a string)");
    if (!e->kafka_quote)
        problem(format, NULL, 0, "no librdkafka line carries a '\"'");
}

/* A raw control byte (C0 but the line's end, DEL, C1) in text. */
static const char *control_in(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return s + i;
        if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
            (unsigned char)s[i + 1] <= 0x9f)
            return s + i;
    }
    return NULL;
}

static void check_logfmt(const char *path)
{
    size_t len, n;
    char *text = read_all(path, &len);
    const char *line = text, *end = text + len;
    expect e;
    record r;

    expect_init(&e);
    memset(&r, 0, sizeof r);
    TK_CHECK(len > 0 && text[len - 1] == '\n', "log %s is empty or has an "
             "unterminated last line", path);
    while (line < end) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        const char *why;
        n = (size_t)(nl - line);
        e.lines++;
        why = parse_logfmt(line, n, &r);
        if (why) {
            problem("logfmt", line, n, "%s", why);
        } else {
            const pair *comp = field(&r, "comp");
            int i;
            for (i = 0; i < r.n; i++)
                expect_field(&e, comp->value, r.v[i].key, r.v[i].value,
                             r.v[i].len, line, n);
        }
        record_free(&r);
        line = nl + 1;
    }
    expect_done(&e, "logfmt");
    tk_note("logfmt: %d lines read", e.lines);
    free(text);
}

static void check_json(const char *path)
{
    size_t len, n;
    char *text = read_all(path, &len);
    const char *line = text, *end = text + len;
    expect e;

    expect_init(&e);
    TK_CHECK(len > 0 && text[len - 1] == '\n', "log %s is empty or has an "
             "unterminated last line", path);
    while (line < end) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        json_error_t jerr;
        json_t *obj;
        n = (size_t)(nl - line);
        e.lines++;
        if (control_in(line, n))
            problem("json", line, n, "raw control byte");
        obj = json_loadb(line, n, JSON_REJECT_DUPLICATES, &jerr);
        if (!obj) {
            problem("json", line, n, "not JSON: %s", jerr.text);
        } else if (!json_is_object(obj)) {
            problem("json", line, n, "not an object");
        } else {
            const char *key;
            json_t *v;
            json_t *comp = json_object_get(obj, "comp");
            static const char *const strings[] = {"ts", "level", "comp", "msg"};
            size_t k;

            for (k = 0; k < 4; k++)
                if (!json_is_string(json_object_get(obj, strings[k])))
                    problem("json", line, n, "%s missing or not a string",
                            strings[k]);
            json_object_foreach(obj, key, v)
            {
                if (strcmp(key, "sqlstate") == 0 && !json_is_string(v))
                    problem("json", line, n, "sqlstate is not a string");
                if (json_is_string(v))
                    expect_field(&e, json_is_string(comp) ? json_string_value(comp)
                                                          : NULL,
                                 key, json_string_value(v),
                                 json_string_length(v), line, n);
            }
        }
        json_decref(obj);
        line = nl + 1;
    }
    expect_done(&e, "json");
    tk_note("json: %d lines read", e.lines);
    free(text);
}

/* ---- the dead-letter commands ------------------------------------------ */

static const char *const show_labels[] = {
    "id:", "pipeline:", "topic:", "partition:", "offset:", "entity_id:",
    "key:", "key (text):", "key (hex):", "reason:", "sqlstate:", "attempts:",
    "first_failed_at:", "last_failed_at:"};

/* Runs `exactly dlq ACTION ... -c cfg` and checks its output's bytes. */
static void check_dlq(const char *dir, const char *cfg, const char *action)
{
    char *argv[] = {(char *)tk_env_required("EXACTLY_BIN"), "dlq",
                    (char *)action, "--topic", TOPIC, "--limit", "1000",
                    "-c", (char *)cfg, NULL};
    char log[512];
    size_t len, n;
    char *text;
    const char *line, *end, *bad;
    int status;

    snprintf(log, sizeof log, "%s/dlq-%s.out", dir, action);
    status = tk_wait(tk_spawn(argv, log), CMD_TIMEOUT_MS);
    text = read_all(log, &len);
    TK_CHECK(status == 0, "exactly dlq %s exited %d", action, status);
    if (!memmem(text, len, "\\x1b", 4))
        problem(action, NULL, 0, "ESC is not shown as \\x1b");
    for (line = text, end = text + len; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t k;
        int known = 0;
        n = nl ? (size_t)(nl - line) : (size_t)(end - line);
        bad = control_in(line, n);
        if (bad)
            problem(action, line, n, "control byte 0x%02x printed raw",
                    (unsigned char)*bad);
        if (n > 0 && strcmp(action, "show") == 0) {
            for (k = 0; k < sizeof show_labels / sizeof show_labels[0]; k++)
                known |= strncmp(line, show_labels[k],
                                 strlen(show_labels[k])) == 0;
            known |= line[0] >= '0' && line[0] <= '9';
        } else if (n > 0) {
            known = strncmp(line, "ID ", 3) == 0 || line[0] == ' ' ||
                    (line[0] >= '0' && line[0] <= '9');
        } else {
            known = 1;
        }
        if (!known)
            problem(action, line, n, "a line that is no row of the output");
        line = nl ? nl + 1 : end;
    }
    free(text);
}

/* ---- the run ----------------------------------------------------------- */

static void setup_db(const char *conninfo)
{
    PGconn *db = tk_pg_connect(conninfo);
    char id[300];
    const char *params[2];
    size_t i;

    tk_sql(db, "CREATE TABLE src (id text PRIMARY KEY, v text NOT NULL);"
               "CREATE TABLE dst (id text PRIMARY KEY, v text NOT NULL)");
    tk_sql(db, "%s", TRIGGER_SQL);
    for (i = 0; i < N_HOSTILE + N_FINE; i++) {
        PGresult *res;
        int k;
        for (k = 0; k < 2; k++) {
            if (i < N_HOSTILE)
                snprintf(id, sizeof id, "%s%s", k ? "N:" : "A:", hostile[i]);
            else
                snprintf(id, sizeof id, "fine-%zu-%d", i, k);
            params[0] = id;
            params[1] = i >= N_HOSTILE ? "fine" : k ? "note" : "boom";
            res = PQexecParams(db, "INSERT INTO src VALUES ($1, $2)", 2, NULL,
                               params, NULL, NULL, 0);
            TK_CHECK(PQresultStatus(res) == PGRES_COMMAND_OK,
                     "insert into src: %s", PQerrorMessage(db));
            PQclear(res);
        }
    }
    PQfinish(db);
}

static void produce(const char *bootstraps)
{
    static char keys[3 * N_HOSTILE + 2 * N_FINE][300];
    tk_msg msgs[3 * N_HOSTILE + 2 * N_FINE];
    size_t i, n = 0;

    memset(msgs, 0, sizeof msgs);
    for (i = 0; i < N_HOSTILE; i++) {
        snprintf(keys[n++], sizeof keys[0], "A:%s", hostile[i]);
        snprintf(keys[n++], sizeof keys[0], "N:%s", hostile[i]);
        snprintf(keys[n++], sizeof keys[0], "B:%s", hostile[i]);
    }
    for (i = N_HOSTILE; i < N_HOSTILE + N_FINE; i++) {
        snprintf(keys[n++], sizeof keys[0], "fine-%zu-0", i);
        snprintf(keys[n++], sizeof keys[0], "fine-%zu-1", i);
    }
    for (i = 0; i < n; i++) {
        msgs[i].partition = (int32_t)(i % N_PARTITIONS);
        msgs[i].key = keys[i];
        msgs[i].key_len = strlen(keys[i]);
    }
    tk_produce(bootstraps, TOPIC, msgs, n);
}

/* One run in format fmt; returns the path of its log in log_out. */
static void run_format(const char *dir, const char *bootstraps,
                       const char *fmt, char *cfg, size_t cfg_size,
                       char *log, size_t log_size)
{
    char conninfo[1024], out[512], prefix[32], group[64];
    tk_config config;
    tk_pipeline *pl = &config.pipelines[0];
    int status;

    snprintf(prefix, sizeof prefix, "log_format_%s", fmt);
    tk_pg_create_db(prefix, conninfo, sizeof conninfo);
    setup_db(conninfo);
    snprintf(cfg, cfg_size, "%s/%s.yaml", dir, fmt);
    snprintf(log, log_size, "%s/%s.log", dir, fmt);
    snprintf(group, sizeof group, "log-format-%s", fmt);
    memset(&config, 0, sizeof config);
    config.log_format = fmt;
    config.log_level = "debug";
    config.bootstraps = bootstraps;
    config.kafka[0] = (tk_prop){"debug", "cgrp"};
    config.conninfo = conninfo;
    pl->name = "hostile";
    pl->topics[0] = TOPIC;
    pl->group = group;
    pl->id_from = "key";
    pl->id_type = "text";
    pl->lookup_table = "src";
    pl->lookup_id_column = "id";
    pl->on_missing = "dead_letter";
    tk_upsert_handler(pl, "dst",
                      (const char *[]){"id", "v", NULL});
    pl->max_messages = 40;
    pl->max_wait_ms = 50;
    tk_config_write(cfg, &config);
    snprintf(out, sizeof out, "%s/%s-migrate.out", dir, fmt);
    status = tk_exactly(out, CMD_TIMEOUT_MS, "migrate", "-c", cfg, NULL);
    TK_CHECK(status == 0, "exactly migrate exited %d; output in %s", status,
             out);
    snprintf(out, sizeof out, "%s/%s-run.out", dir, fmt);
    status = tk_exactly(out, WORKER_TIMEOUT_MS, "run", "-c", cfg, "--log-file",
                        log, "--exit-idle", "3000", NULL);
    TK_CHECK(status == 0, "[%s] exactly run exited %d; log %s, output %s", fmt,
             status, log, out);
    {
        PGconn *db = tk_pg_connect(conninfo);
        int64_t dead = tk_sql_int64(db, "SELECT count(*) FROM exactly.dead_letters");
        int64_t applied = tk_sql_int64(db, "SELECT count(*) FROM dst");
        PQfinish(db);
        TK_CHECK_EQ_INT64(dead, 2 * N_HOSTILE, "dead letters (A: and B: IDs)");
        TK_CHECK_EQ_INT64(applied, N_HOSTILE + 2 * N_FINE,
                          "rows written (N: and fine IDs)");
    }
}

int main(void)
{
    char dir[256], cfg[512], log[512];
    tk_mock *m = tk_mock_start(1);
    const char *bootstraps = tk_mock_bootstraps(m);

    tk_tmpdir("exactly-log-format", dir, sizeof dir);
    tk_mock_create_topic(m, TOPIC, N_PARTITIONS);
    produce(bootstraps);

    run_format(dir, bootstraps, "logfmt", cfg, sizeof cfg, log, sizeof log);
    check_logfmt(log);
    check_dlq(dir, cfg, "list");
    check_dlq(dir, cfg, "show");

    run_format(dir, bootstraps, "json", cfg, sizeof cfg, log, sizeof log);
    check_json(log);

    TK_CHECK(n_problems == 0,
             "%d problem(s) in the logs and the dlq output (the first "
             "%d of each kind above); files in %s",
             n_problems, MAX_SHOWN, dir);
    tk_note("every log line parsed, in both formats; dlq output clean");
    tk_mock_stop(m);
    ledger_cleanup_dir(dir);
    return 0;
}
