/*
 * The log's key/value lines (lib/log.h) and the escaping behind them
 * (lib/escape.h), line by line and byte by byte:
 *
 *   - logfmt: msg always quoted, plain values bare, everything else
 *     quoted with \" \\ \n \r \t, \uXXXX for the other C0 controls, DEL,
 *     NUL, the C1 controls and U+2028/9, \xNN for a byte that is not
 *     UTF-8; other UTF-8 as it is; an empty string "", a NULL string no
 *     field; integers, unsigned, doubles and booleans bare;
 *   - a key already on the line (a base key such as msg, pipeline and
 *     worker once the context set them, or an earlier field) gets _2, _3;
 *     a character outside [A-Za-z0-9_.-] becomes '_';
 *   - a value past EXACTLY_LOG_VALUE_MAX bytes is cut on a character
 *     boundary and ends in "...";
 *   - exactly_log() evaluates no field when its level is off;
 *   - the context (pipeline, worker) is escaped like any value;
 *   - json: each line one object that jansson reads with duplicate keys
 *     refused, keys in order (ts, level, comp, pid, pipeline, worker,
 *     msg, fields), integers as numbers, strings (a SQLSTATE of digits
 *     included) as strings, booleans as booleans, ASCII only, no raw
 *     control byte or DEL, a byte that is not UTF-8 as the text \xNN;
 *   - a handler's printf-style message (host->log) is the msg of a line
 *     of comp "handler", escaped, its trailing newlines dropped;
 *   - exactly_printable(), what the commands print for people.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "escape.h"
#include "log.h"
#include "testkit.h"

static char g_path[] = "/tmp/exactly-test-log-XXXXXX";
static int g_fd = -1, g_saved = -1;

/* Sends stderr (the log) to a fresh temporary file. */
static void capture(void)
{
    fflush(stderr);
    if (g_fd >= 0)
        close(g_fd);
    strcpy(g_path, "/tmp/exactly-test-log-XXXXXX");
    g_fd = mkstemp(g_path);
    TK_CHECK(g_fd >= 0, "mkstemp");
    if (g_saved < 0)
        g_saved = dup(2);
    TK_CHECK(dup2(g_fd, 2) == 2, "dup2");
}

/* Restores stderr and returns what the log got (malloc'd). */
static char *captured(void)
{
    char *text;

    TK_CHECK(dup2(g_saved, 2) == 2, "dup2 back");
    text = tk_read_file(g_path);
    TK_CHECK(text != NULL, "cannot read %s", g_path);
    unlink(g_path);
    close(g_fd);
    g_fd = -1;
    return text;
}

/* The part of a logfmt line after its pid (and context): from " msg=". */
static const char *after_base(const char *line)
{
    const char *m = strstr(line, " msg=");

    TK_CHECK(m != NULL, "no msg in: %s", line);
    return m;
}

static int n_lines(const char *text)
{
    int n = 0;

    for (; *text; text++)
        n += *text == '\n';
    return n;
}

static void test_logfmt_values(void)
{
    static const char nul_in[] = {'a', '\0', 'b'};
    char *text;
    const char *want;

    exactly_log_set_json(0);
    exactly_log_set_context(NULL, -1);
    capture();
    exactly_log(EXACTLY_LOG_WARN, "cycle", "batch rolled back",
                LOG_STR("topic", "orders.v1"), LOG_INT("partition", 3),
                LOG_INT("neg", -42), LOG_UINT("big", UINT64_MAX),
                LOG_DOUBLE("rate", 2.5), LOG_BOOL("fused", 1),
                LOG_BOOL("dry", 0), LOG_STR("sqlstate", "23514"),
                LOG_STR("empty", ""), LOG_STR("none", NULL),
                LOG_STR("space", "a b"), LOG_STR("eq", "k=v"),
                LOG_STR("quote", "say \"hi\""), LOG_STR("back", "c:\\dir"),
                LOG_STR("nl", "one\ntwo\r\tthree"),
                LOG_STR("esc", "\x1b[31mred"), LOG_STR("del", "x\x7f"),
                LOG_STRN("nul", nul_in, sizeof nul_in),
                LOG_STR("c1", "\xc2\x9b" "1m"), LOG_STR("ls", "a\xe2\x80\xa8z"),
                LOG_STR("utf8", "caf\xc3\xa9"), LOG_STR("bad", "x\xff\xc3"),
                LOG_STR("forged", "x\nts=1 level=error msg=\"FORGED\""));
    text = captured();
    TK_CHECK(n_lines(text) == 1, "one line expected:\n%s", text);
    TK_CHECK(strncmp(text, "ts=", 3) == 0 && strstr(text, " level=warn comp=cycle pid="),
             "base keys: %s", text);
    want = " msg=\"batch rolled back\" topic=orders.v1 partition=3 neg=-42"
           " big=18446744073709551615 rate=2.5 fused=true dry=false"
           " sqlstate=23514 empty=\"\" space=\"a b\" eq=\"k=v\""
           " quote=\"say \\\"hi\\\"\" back=\"c:\\\\dir\""
           " nl=\"one\\ntwo\\r\\tthree\" esc=\"\\u001b[31mred\""
           " del=\"x\\u007f\" nul=\"a\\u0000b\" c1=\"\\u009b1m\""
           " ls=\"a\\u2028z\" utf8=\"caf\xc3\xa9\" bad=\"x\\xff\\xc3\""
           " forged=\"x\\nts=1 level=error msg=\\\"FORGED\\\"\"\n";
    TK_CHECK_EQ_STR(after_base(text), want, "logfmt fields");
    free(text);
}

static void test_keys(void)
{
    char *text;

    exactly_log_set_context("orders", 2);
    capture();
    exactly_log(EXACTLY_LOG_INFO, "supervisor", "worker started",
                LOG_STR("msg", "m"), LOG_STR("topic", "a"),
                LOG_STR("topic", "b"), LOG_STR("topic", "c"),
                LOG_INT("worker", 7), LOG_STR("a b=\"", "x"),
                LOG_STR("pid", NULL), LOG_INT("pid", 9));
    text = captured();
    TK_CHECK_EQ_STR(after_base(text),
                    " msg=\"worker started\" msg_2=m topic=a topic_2=b"
                    " topic_3=c worker_2=7 a_b__=x pid_2=9\n",
                    "renamed keys");
    TK_CHECK(strstr(text, " pipeline=orders worker=2 msg="),
             "context: %s", text);
    free(text);

    /* Without a context (the supervisor) pipeline and worker are free. */
    exactly_log_set_context(NULL, -1);
    capture();
    exactly_log(EXACTLY_LOG_INFO, "supervisor", "worker finished",
                LOG_STR("pipeline", "orders"), LOG_INT("worker", 0));
    text = captured();
    TK_CHECK_EQ_STR(after_base(text),
                    " msg=\"worker finished\" pipeline=orders worker=0\n",
                    "fields named like the context");
    free(text);

    exactly_log_set_context("p \"x\"", 0);
    capture();
    exactly_log(EXACTLY_LOG_INFO, "worker", "started");
    text = captured();
    TK_CHECK(strstr(text, " pipeline=\"p \\\"x\\\"\" worker=0 msg=\"started\"\n"),
             "escaped context: %s", text);
    free(text);
    exactly_log_set_context(NULL, -1);
}

static int g_evaluated;

static int64_t costly(void)
{
    g_evaluated++;
    return 1;
}

static void test_level_check(void)
{
    char *text;

    exactly_log_set_level(EXACTLY_LOG_INFO);
    capture();
    exactly_log(EXACTLY_LOG_DEBUG, "worker", "not written",
                LOG_INT("n", costly()));
    text = captured();
    TK_CHECK(g_evaluated == 0, "a field was evaluated with its level off");
    TK_CHECK_EQ_STR(text, "", "a debug line at level info");
    free(text);

    exactly_log_set_level(EXACTLY_LOG_DEBUG);
    capture();
    exactly_log(EXACTLY_LOG_DEBUG, "worker", "written", LOG_INT("n", costly()));
    text = captured();
    TK_CHECK(g_evaluated == 1, "the field was evaluated %d times", g_evaluated);
    TK_CHECK(strstr(text, " msg=\"written\" n=1\n"), "debug line: %s", text);
    free(text);
    exactly_log_set_level(EXACTLY_LOG_INFO);
}

static void test_cut(void)
{
    size_t n = EXACTLY_LOG_VALUE_MAX + 1000, i;
    char *big = malloc(n + 1), *text;
    const char *v, *end;

    TK_CHECK(big != NULL, "out of memory");
    /* Two-byte characters, so the cut lands inside one unless it is
     * moved to a boundary. */
    big[0] = 'x'; /* so that a cut at EXACTLY_LOG_VALUE_MAX splits a pair */
    for (i = 1; i + 1 < n; i += 2) {
        big[i] = (char)0xc3;
        big[i + 1] = (char)0xa9;
    }
    big[i] = '\0';
    capture();
    exactly_log(EXACTLY_LOG_INFO, "t", "big", LOG_STR("v", big));
    text = captured();
    v = strstr(text, " v=\"");
    TK_CHECK(v != NULL, "no v: %.200s", text);
    v += 4;
    end = strstr(v, "...\"\n");
    TK_CHECK(end != NULL && end[5] == '\0', "the cut value does not end in ...");
    TK_CHECK((size_t)(end - v) <= EXACTLY_LOG_VALUE_MAX,
             "%zu bytes kept, at most %d", (size_t)(end - v),
             EXACTLY_LOG_VALUE_MAX);
    TK_CHECK(strstr(v, "\\x") == NULL, "the cut split a character");
    free(text);
    free(big);
}

static void test_json(void)
{
    static const char *const order[] = {"ts",     "level", "comp", "pid",
                                        "pipeline", "worker", "msg", "partition",
                                        "sqlstate", "fused", "rate", "id",
                                        "bad",    "msg_2"};
    json_error_t jerr;
    json_t *o;
    const char *key;
    json_t *v;
    char *text;
    size_t k = 0, i;

    exactly_log_set_json(1);
    exactly_log_set_context("orders", 1);
    capture();
    exactly_log(EXACTLY_LOG_ERROR, "cycle", "record dead-lettered",
                LOG_INT("partition", 4), LOG_STR("sqlstate", "23514"),
                LOG_BOOL("fused", 0), LOG_DOUBLE("rate", 0.5),
                LOG_STR("id", "a\"b\nc\x1b\x7f\xc2\x9b\xc3\xa9"),
                LOG_STR("bad", "\xff"), LOG_STR("msg", "x"),
                LOG_STR("none", NULL));
    exactly_log_handler(EXACTLY_LOG_WARN, "handler says %s\n\n", "hi\n\"there\"");
    text = captured();
    exactly_log_set_json(0);
    exactly_log_set_context(NULL, -1);
    TK_CHECK(n_lines(text) == 2, "two lines expected:\n%s", text);
    for (i = 0; text[i]; i++)
        TK_CHECK(text[i] == '\n' ||
                     ((unsigned char)text[i] >= 0x20 && (unsigned char)text[i] < 0x7f),
                 "byte 0x%02x in a JSON line", (unsigned char)text[i]);
    o = json_loadb(text, (size_t)(strchr(text, '\n') - text),
                   JSON_REJECT_DUPLICATES, &jerr);
    TK_CHECK(o && json_is_object(o), "not a JSON object (%s): %s", jerr.text, text);
    json_object_foreach(o, key, v)
    {
        TK_CHECK(k < sizeof order / sizeof order[0], "extra key %s", key);
        TK_CHECK_EQ_STR(key, order[k], "key order");
        k++;
    }
    TK_CHECK(k == sizeof order / sizeof order[0], "%zu keys", k);
    TK_CHECK(json_is_integer(json_object_get(o, "pid")) &&
                 json_integer_value(json_object_get(o, "worker")) == 1 &&
                 json_integer_value(json_object_get(o, "partition")) == 4,
             "integers: %s", text);
    TK_CHECK_EQ_STR(json_string_value(json_object_get(o, "sqlstate")), "23514",
                    "sqlstate as a string");
    TK_CHECK(json_is_false(json_object_get(o, "fused")) &&
                 json_real_value(json_object_get(o, "rate")) == 0.5,
             "bool and double: %s", text);
    TK_CHECK_EQ_STR(json_string_value(json_object_get(o, "id")),
                    "a\"b\nc\x1b\x7f\xc2\x9b\xc3\xa9", "id, exactly");
    TK_CHECK_EQ_STR(json_string_value(json_object_get(o, "bad")), "\\xff",
                    "a byte that is not UTF-8");
    TK_CHECK_EQ_STR(json_string_value(json_object_get(o, "level")), "error", "level");
    json_decref(o);

    o = json_loads(strchr(text, '\n') + 1, JSON_REJECT_DUPLICATES, &jerr);
    TK_CHECK(o != NULL, "handler line (%s): %s", jerr.text, text);
    TK_CHECK_EQ_STR(json_string_value(json_object_get(o, "comp")), "handler", "comp");
    TK_CHECK_EQ_STR(json_string_value(json_object_get(o, "msg")),
                    "handler says hi\n\"there\"", "the handler's text");
    json_decref(o);
    free(text);
}

static void test_handler_logfmt(void)
{
    char *text;

    capture();
    exactly_log_handler(EXACTLY_LOG_ERROR, "record %s failed", "1\nlevel=error msg=\"FORGED\"");
    exactly_log_handler((exactly_log_level)9, "past debug"); /* off at info */
    text = captured();
    TK_CHECK(n_lines(text) == 1, "one line expected:\n%s", text);
    TK_CHECK(strstr(text, " level=error comp=handler pid=") &&
                 strstr(text, " msg=\"record 1\\nlevel=error msg=\\\"FORGED\\\" "
                              "failed\"\n"),
             "handler line: %s", text);
    free(text);
}

static void check_printable(const char *in, const char *want)
{
    char *got = exactly_printable(in);

    TK_CHECK_EQ_STR(got, want, "exactly_printable");
    free(got);
}

static void test_printable(void)
{
    check_printable("plain text", "plain text");
    check_printable("a\nb\rc\td", "a\\nb\\rc\\td");
    check_printable("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m");
    check_printable("del\x7f", "del\\x7f");
    check_printable("csi\xc2\x9b" "31m", "csi\\xc2\\x9b31m");
    check_printable("caf\xc3\xa9 \xe2\x82\xac", "caf\xc3\xa9 \xe2\x82\xac");
    check_printable("bad\xff\xc3", "bad\\xff\\xc3");
    check_printable("back\\slash \"q\"", "back\\slash \"q\"");
    check_printable("", "");
    TK_CHECK(exactly_printable(NULL) == NULL, "NULL gives NULL");
}

int main(void)
{
    test_logfmt_values();
    test_keys();
    test_level_check();
    test_cut();
    test_json();
    test_handler_logfmt();
    test_printable();
    tk_note("log lines and escaping as documented");
    return 0;
}
