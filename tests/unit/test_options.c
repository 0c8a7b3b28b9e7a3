/*
 * test_options.c - handler options: a YAML `options:` mapping (read by the
 * real config loader, so positions are real) checked against declared
 * options, the typed getters, their misuse, and bad declarations.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "options.h"

static int failures;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "FAIL: %s:%d: ", __FILE__, __LINE__);              \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            failures++;                                                        \
        }                                                                      \
    } while (0)

#define CHECK_STR(actual, expected)                                            \
    do {                                                                       \
        const char *a_ = (actual), *e_ = (expected);                           \
        CHECK((a_ == NULL && e_ == NULL) ||                                    \
                  (a_ && e_ && strcmp(a_, e_) == 0),                           \
              "%s: expected \"%s\", got \"%s\"", #actual, e_ ? e_ : "(null)",  \
              a_ ? a_ : "(null)");                                             \
    } while (0)

#define CHECK_INT(actual, expected)                                            \
    do {                                                                       \
        long long a_ = (long long)(actual), e_ = (long long)(expected);        \
        CHECK(a_ == e_, "%s: expected %lld, got %lld", #actual, e_, a_);       \
    } while (0)

/* What an upsert-like handler declares. */
static const exactly_option_decl decls[] = {
    {"table", EXACTLY_OPT_STRING, NULL, "the target table"},
    {"key", EXACTLY_OPT_LIST, NULL, "its conflict key"},
    {"columns", EXACTLY_OPT_MAP, NULL, "looked-up column to target column"},
    {"batch", EXACTLY_OPT_INT, "500", "rows per statement"},
    {"dry_run", EXACTLY_OPT_BOOL, "false", "write nothing"},
    {"prefix", EXACTLY_OPT_STRING, "pre", "a string with a default"},
};
#define N_DECLS (sizeof(decls) / sizeof(decls[0]))

/* Options lines start on line 12, keys at column 9. */
#define HEAD                                                                   \
    "kafka:\n"                                                                 \
    "  bootstrap.servers: b\n"                                                 \
    "postgres:\n"                                                              \
    "  conninfo: x\n"                                                          \
    "pipelines:\n"                                                             \
    "  p:\n"                                                                   \
    "    topics: t\n"                                                          \
    "    lookup: {table: t}\n"                                                 \
    "    handler:\n"                                                           \
    "      builtin: upsert\n"
#define OPTIONS HEAD "      options:\n"

/* Loads doc as worker.yaml and returns its only pipeline's config; the
 * caller frees it. Exits on failure: every document here is valid YAML. */
static exactly_config *load(const char *doc)
{
    char err[1024];
    exactly_config *cfg = NULL;
    FILE *f = fopen("worker.yaml", "w");

    if (!f || fputs(doc, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "FAIL: cannot write worker.yaml\n");
        exit(1);
    }
    if (exactly_config_load("worker.yaml", &cfg, err, sizeof(err)) !=
        EXACTLY_OK) {
        fprintf(stderr, "FAIL: %s:%d: cannot load test document: %s\n",
                __FILE__, __LINE__, err);
        exit(1);
    }
    return cfg;
}

/* Builds the options of doc's pipeline with decls; *err gets the message. */
static exactly_err build(const char *doc, const exactly_option_decl *d,
                         size_t n, exactly_options **out, char *err,
                         size_t err_size)
{
    exactly_config *cfg = load(doc);
    exactly_err rc = exactly_options_build(cfg->path, "upsert",
                                           &cfg->pipelines[0].handler.options,
                                           d, n, out, err, err_size);

    /* Options must not borrow from the config. */
    exactly_config_free(cfg);
    return rc;
}

static void test_valid(void)
{
    exactly_options *o = NULL;
    const char *const *items = NULL, *const *keys = NULL, *const *values = NULL;
    char err[1024] = "";
    exactly_err rc;

    rc = build(OPTIONS "        table: account_view\n"
                       "        key: [id, region]\n"
                       "        columns:\n"
                       "          id: id\n"
                       "          name: full_name\n"
                       "        batch: -7\n"
                       "        dry_run: on\n"
                       "        prefix: ''\n",
               decls, N_DECLS, &o, err, sizeof(err));
    CHECK(rc == EXACTLY_OK, "valid: rc %d: %s", (int)rc, err);
    if (!o)
        return;
    CHECK_STR(exactly_options_string(o, "table"), "account_view");
    CHECK_STR(exactly_options_string(o, "prefix"), "");
    CHECK_INT(exactly_options_int(o, "batch"), -7);
    CHECK_INT(exactly_options_bool(o, "dry_run"), 1);
    CHECK_INT(exactly_options_list(o, "key", &items), 2);
    if (items) {
        CHECK_STR(items[0], "id");
        CHECK_STR(items[1], "region");
    }
    CHECK_INT(exactly_options_map(o, "columns", &keys, &values), 2);
    if (keys && values) {
        CHECK_STR(keys[0], "id");
        CHECK_STR(values[0], "id");
        CHECK_STR(keys[1], "name");
        CHECK_STR(values[1], "full_name");
    }
    /* Callers may ask only for the length. */
    CHECK_INT(exactly_options_list(o, "key", NULL), 2);
    CHECK_INT(exactly_options_map(o, "columns", NULL, NULL), 2);
    exactly_options_free(o);
}

static void test_defaults(void)
{
    exactly_options *o = NULL;
    const char *const *items = NULL, *const *keys = NULL, *const *values = NULL;
    char err[1024] = "";
    exactly_err rc;

    /* A single scalar is a one-item list; "key:" alone would be empty. */
    rc = build(OPTIONS "        table: t\n"
                       "        key: id\n"
                       "        columns:\n",
               decls, N_DECLS, &o, err, sizeof(err));
    CHECK(rc == EXACTLY_OK, "defaults: rc %d: %s", (int)rc, err);
    if (!o)
        return;
    CHECK_INT(exactly_options_int(o, "batch"), 500);
    CHECK_INT(exactly_options_bool(o, "dry_run"), 0);
    CHECK_STR(exactly_options_string(o, "prefix"), "pre");
    CHECK_INT(exactly_options_list(o, "key", &items), 1);
    if (items)
        CHECK_STR(items[0], "id");
    CHECK_INT(exactly_options_map(o, "columns", &keys, &values), 0);
    exactly_options_free(o);

    /* Lists and maps that are not given are empty. */
    rc = build(OPTIONS "        table: t\n", decls, N_DECLS, &o, err,
               sizeof(err));
    CHECK(rc == EXACTLY_OK, "defaults 2: rc %d: %s", (int)rc, err);
    CHECK_INT(exactly_options_list(o, "key", &items), 0);
    CHECK_INT(exactly_options_map(o, "columns", &keys, &values), 0);
    exactly_options_free(o);

    /* No options written and none declared. */
    rc = build(HEAD, NULL, 0, &o, err, sizeof(err));
    CHECK(rc == EXACTLY_OK, "no options: rc %d: %s", (int)rc, err);
    CHECK(o != NULL, "no options: NULL result");
    exactly_options_free(o);
}

typedef struct bad_case {
    const char *name;
    const char *doc;
    const char *message;
} bad_case;

static const bad_case bad_cases[] = {
    {"unknown option", OPTIONS "        tabel: x\n",
     "worker.yaml:12:9: handler 'upsert': unknown option 'tabel' (valid: "
     "table, key, columns, batch, dry_run, prefix)"},
    {"not an integer", OPTIONS "        table: t\n        batch: x\n",
     "worker.yaml:13:16: handler 'upsert': option 'batch' must be an "
     "integer, got 'x'"},
    {"not an integer either", OPTIONS "        table: t\n        batch: 5.5\n",
     "worker.yaml:13:16: handler 'upsert': option 'batch' must be an "
     "integer, got '5.5'"},
    {"integer overflow",
     OPTIONS "        table: t\n        batch: 9223372036854775808\n",
     "worker.yaml:13:16: handler 'upsert': option 'batch' must be an "
     "integer, got '9223372036854775808'"},
    {"integer given a list", OPTIONS "        table: t\n        batch: [1]\n",
     "worker.yaml:13:16: handler 'upsert': option 'batch' must be an "
     "integer, got a list"},
    {"not a bool", OPTIONS "        table: t\n        dry_run: maybe\n",
     "worker.yaml:13:18: handler 'upsert': option 'dry_run' must be true or "
     "false, got 'maybe'"},
    {"string given a list", OPTIONS "        table: [a]\n",
     "worker.yaml:12:16: handler 'upsert': option 'table' must be a string, "
     "got a list"},
    {"list given a mapping", OPTIONS "        table: t\n        key: {a: b}\n",
     "worker.yaml:13:14: handler 'upsert': option 'key' must be a list of "
     "strings, got a mapping"},
    {"list item not a scalar",
     OPTIONS "        table: t\n        key: [a, [b]]\n",
     "worker.yaml:13:18: handler 'upsert': option 'key' must be a list of "
     "strings, item 2 is a list"},
    {"map given a list", OPTIONS "        table: t\n        columns: [a]\n",
     "worker.yaml:13:18: handler 'upsert': option 'columns' must be a "
     "mapping, got a list"},
    {"map value not a scalar",
     OPTIONS "        table: t\n        columns: {a: [b]}\n",
     "worker.yaml:13:22: handler 'upsert': option 'columns' must map strings "
     "to strings, 'a' holds a list"},
    /* A message is one line: control bytes of the file are escaped. */
    {"newline in a bad value",
     OPTIONS "        table: t\n        batch: \"1\\n2\\t3\\x01\"\n",
     "worker.yaml:13:16: handler 'upsert': option 'batch' must be an "
     "integer, got '1\\n2\\t3\\x01'"},
    {"newline in an unknown option", OPTIONS "        \"ta\\nble\": x\n",
     "worker.yaml:12:9: handler 'upsert': unknown option 'ta\\nble' (valid: "
     "table, key, columns, batch, dry_run, prefix)"},
    {"missing required option", OPTIONS "        key: [id]\n",
     "worker.yaml:11:7: handler 'upsert': missing required option 'table'"},
    {"missing required option, no options", HEAD,
     "worker.yaml:9:5: handler 'upsert': missing required option 'table'"},
};

static void test_bad_options(void)
{
    size_t i;

    for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const bad_case *bc = &bad_cases[i];
        exactly_options *o = (exactly_options *)&failures; /* must be NULLed */
        char err[1024];
        exactly_err rc = build(bc->doc, decls, N_DECLS, &o, err, sizeof(err));

        CHECK(rc == EXACTLY_ECONFIG, "%s: expected EXACTLY_ECONFIG, got %d",
              bc->name, (int)rc);
        CHECK(o == NULL, "%s: *out not NULL on failure", bc->name);
        CHECK(strcmp(err, bc->message) == 0,
              "%s:\n  expected: %s\n  got:      %s", bc->name, bc->message,
              err);
        if (rc == EXACTLY_OK)
            exactly_options_free(o);
    }
}

/* A key longer than any path the configuration's messages hold is still
 * quoted whole: an option is named by its key, not by a dotted path. */
static void test_long_key(void)
{
    char doc[2048], key[701], want[1024], err[1024];
    exactly_options *o = NULL;
    exactly_err rc;

    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    snprintf(doc, sizeof(doc), OPTIONS "        %s: x\n", key);
    snprintf(want, sizeof(want),
             "worker.yaml:12:9: handler 'upsert': unknown option '%s' "
             "(valid: table, key, columns, batch, dry_run, prefix)",
             key);
    rc = build(doc, decls, N_DECLS, &o, err, sizeof(err));
    CHECK(rc == EXACTLY_ECONFIG, "long key: rc %d", (int)rc);
    CHECK(strcmp(err, want) == 0, "long key:\n  expected: %s\n  got:      %s",
          want, err);
    exactly_options_free(o);
}

/* A handler that declares nothing, given options anyway; a secret from the
 * environment in a bad value; options that are not a mapping at all. */
static void test_other_refusals(void)
{
    exactly_options *o = NULL;
    cfg_value seq = {.kind = CFG_SEQ, .pos = {4, 2}};
    char err[1024];
    exactly_err rc;

    rc = build(OPTIONS "        table: t\n", NULL, 0, &o, err, sizeof(err));
    CHECK(rc == EXACTLY_ECONFIG, "no decls: rc %d", (int)rc);
    CHECK_STR(err, "worker.yaml:12:9: handler 'upsert': unknown option "
                   "'table' (this handler takes no options)");

    setenv("EXACTLY_TEST_SECRET", "hunter2", 1);
    rc = build(OPTIONS "        table: t\n"
                       "        batch: ${EXACTLY_TEST_SECRET}\n",
               decls, N_DECLS, &o, err, sizeof(err));
    CHECK(rc == EXACTLY_ECONFIG, "secret: rc %d", (int)rc);
    CHECK(strstr(err, "hunter2") == NULL, "secret leaked: %s", err);
    CHECK_STR(err, "worker.yaml:13:16: handler 'upsert': option 'batch' "
                   "must be an integer, got '${EXACTLY_TEST_SECRET}'");

    rc = exactly_options_build("w.yaml", "h", &seq, decls, N_DECLS, &o, err,
                               sizeof(err));
    CHECK(rc == EXACTLY_ECONFIG, "sequence: rc %d", (int)rc);
    CHECK_STR(err, "w.yaml:4:2: handler 'h': options must be a mapping, got "
                   "a list");

    rc = exactly_options_build("w.yaml", "h", NULL, decls, N_DECLS, NULL, err,
                               sizeof(err));
    CHECK(rc == EXACTLY_EINVAL, "NULL out: rc %d", (int)rc);
}

/* Declarations are the plugin's: a bad one is EXACTLY_EPLUGIN whatever the
 * YAML says. */
static void test_bad_decls(void)
{
    static const exactly_option_decl twice[] = {
        {"a", EXACTLY_OPT_STRING, "x", NULL},
        {"a", EXACTLY_OPT_INT, "1", NULL}};
    static const exactly_option_decl list_default[] = {
        {"cols", EXACTLY_OPT_LIST, "a,b", NULL}};
    static const exactly_option_decl bad_int[] = {
        {"n", EXACTLY_OPT_INT, "ten", NULL}};
    static const exactly_option_decl bad_bool[] = {
        {"b", EXACTLY_OPT_BOOL, "maybe", NULL}};
    static const exactly_option_decl no_name[] = {
        {NULL, EXACTLY_OPT_STRING, "x", NULL}};
    static const exactly_option_decl bad_type[] = {
        {"t", (exactly_option_type)7, "x", NULL}};
    static const struct {
        const exactly_option_decl *d;
        const char *message;
    } cases[] = {
        {twice, "handler 'h' declares option 'a' twice"},
        {list_default, "handler 'h' declares a default for list option "
                       "'cols', which cannot have one"},
        {bad_int, "handler 'h' declares option 'n' with default 'ten', which "
                  "is not an integer"},
        {bad_bool, "handler 'h' declares option 'b' with default 'maybe', "
                   "which is not true or false"},
        {no_name, "handler 'h' declares an option with no name (#0)"},
        {bad_type, "handler 'h' declares option 't' with unknown type 7"},
    };
    cfg_value empty = {.kind = CFG_MAP, .pos = {3, 3}};
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        exactly_options *o = NULL;
        char err[512];
        size_t n = cases[i].d == twice ? 2 : 1;
        exactly_err rc = exactly_options_build("w.yaml", "h", &empty,
                                               cases[i].d, n, &o, err,
                                               sizeof(err));

        CHECK(rc == EXACTLY_EPLUGIN, "decl case %zu: rc %d", i, (int)rc);
        CHECK(o == NULL, "decl case %zu: result not NULL", i);
        CHECK_STR(err, cases[i].message);
        exactly_options_free(o);
    }
}

/* Reads everything written to stderr while fn runs. */
static void capture_stderr(void (*fn)(const exactly_options *),
                           const exactly_options *o, char *out, size_t size)
{
    char path[] = "stderr-XXXXXX";
    int fd = mkstemp(path), saved = dup(2);
    ssize_t n;

    out[0] = '\0';
    if (fd < 0 || saved < 0) {
        CHECK(0, "cannot capture stderr");
        return;
    }
    fflush(stderr);
    dup2(fd, 2);
    fn(o);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    n = read(fd, out, size - 1);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    /* Checks that failed inside fn wrote there too: show them. */
    if (strstr(out, "FAIL:"))
        fputs(out, stderr);
}

static void misuse_undeclared(const exactly_options *o)
{
    const char *const *items = (const char *const *)&failures;

    CHECK(exactly_options_string(o, "nope") == NULL, "undeclared string");
    CHECK(exactly_options_list(o, "nope", &items) == 0, "undeclared list");
    CHECK(items == NULL, "undeclared list: items not NULL");
}

static void misuse_wrong_type(const exactly_options *o)
{
    const char *const *keys = (const char *const *)&failures;
    const char *const *values = keys;

    CHECK(exactly_options_int(o, "table") == 0, "string read as int");
    CHECK(exactly_options_map(o, "key", &keys, &values) == 0,
          "list read as map");
    CHECK(keys == NULL && values == NULL, "wrong type: arrays not NULL");
}

static void misuse_null(const exactly_options *o)
{
    (void)o;
    CHECK(exactly_options_bool(NULL, "dry_run") == 0, "NULL options");
}

static void test_getter_misuse(void)
{
    exactly_options *o = NULL;
    char err[1024], log[4096];
    exactly_err rc;

    rc = build(OPTIONS "        table: t\n        key: [id]\n", decls, N_DECLS,
               &o, err, sizeof(err));
    CHECK(rc == EXACTLY_OK, "misuse setup: rc %d: %s", (int)rc, err);
    if (!o)
        return;

    capture_stderr(misuse_undeclared, o, log, sizeof(log));
    CHECK(strstr(log, "level=error") && strstr(log, "comp=options") &&
              strstr(log, "msg=\"handler read an option it does not "
                          "declare\" handler=upsert option=nope\n"),
          "undeclared: log was: %s", log);

    capture_stderr(misuse_wrong_type, o, log, sizeof(log));
    CHECK(strstr(log, "msg=\"handler read an option with a getter of "
                      "another type\" handler=upsert option=table "
                      "getter=integer declared=string\n") &&
              strstr(log, " option=key getter=map declared=list\n"),
          "wrong type: log was: %s", log);

    capture_stderr(misuse_null, NULL, log, sizeof(log));
    CHECK(strstr(log, "option getter called without options or a name"),
          "NULL: log was: %s", log);

    /* The right getter still works after misuse. */
    CHECK_STR(exactly_options_string(o, "table"), "t");
    exactly_options_free(o);
    exactly_options_free(NULL);
}

int main(void)
{
    char dir[] = "/tmp/exactly-test-options-XXXXXX";

    if (!mkdtemp(dir) || chdir(dir) != 0) {
        perror("FAIL: temp dir");
        return 1;
    }
    test_valid();
    test_defaults();
    test_bad_options();
    test_long_key();
    test_other_refusals();
    test_bad_decls();
    test_getter_misuse();

    unlink("worker.yaml");
    if (chdir("/") != 0 || rmdir(dir) != 0) {
        fprintf(stderr, "FAIL: cannot remove %s\n", dir);
        failures++;
    }
    if (failures)
        fprintf(stderr, "test_options: %d check(s) failed\n", failures);
    else
        printf("test_options: all checks passed\n");
    return failures ? 1 : 0;
}
