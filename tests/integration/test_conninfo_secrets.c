/*
 * Passwords in malformed conninfos (DESIGN 5: secrets are never logged).
 *
 * libpq's conninfo parser quotes what it rejects: a bad percent-escape
 * quotes the token around it, an unclosed '[' quotes the rest of the URI,
 * a word without '=' quotes the word, an unknown keyword quotes the
 * keyword. A password with an unescaped '/' or '@' parses, but into the
 * wrong options, and then an error about the port, the host or the
 * database quotes a piece of the password. Each of those pieces may be a
 * secret, so no part of a password may reach stdout, stderr or the log
 * file of any command, at start or on a reconnect.
 *
 * The matrix: every conninfo below times every command (run with
 * --log-file, worker, check, migrate, offsets, dlq list, reprocess). Each
 * conninfo carries its password pieces, distinctive words that appear
 * nowhere else; the output of every command must hold none of them, must
 * still say that PostgreSQL is the problem, and the command must fail.
 * A conninfo libpq cannot parse, or a URI whose password would be parsed
 * as something else, is a configuration error: the command exits 2 and
 * names 'postgres.conninfo'. Commands that retry (run, worker, reprocess)
 * are watched until they have tried to connect twice, so a message
 * printed on reconnect is checked too, then stopped.
 *
 * PGHOST, PGPORT and PGUSER point at the test server, so a conninfo that libpq
 * takes as a plain database name reaches the server, which names the
 * database in its reply.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testkit.h"

#define TOPIC "secrets"
#define CMD_DEADLINE_MS 30000
#define MAX_PIECES 3

typedef struct secret_case {
    const char *name;
    /* @H@ socket directory, @P@ port, @D@ database of the test server. */
    const char *conninfo;
    /* Pieces of the password: none may appear in any output. */
    const char *pieces[MAX_PIECES];
    /* 1: a configuration error (exit 2, naming postgres.conninfo). */
    int refused;
} secret_case;

static const secret_case cases[] = {
    {"uri_bad_percent", "postgresql://postgres:PwAlpha1%zz@localhost/@D@",
     {"PwAlpha1"}, 1},
    {"uri_unclosed_bracket", "postgresql://postgres:PwBravo2@[::1/@D@",
     {"PwBravo2"}, 1},
    {"word_without_equals",
     "host=@H@ port=@P@ dbname=@D@ password=PwCharlie3 PwDelta4",
     {"PwCharlie3", "PwDelta4"}, 1},
    {"unterminated_quote", "host=@H@ port=@P@ dbname=@D@ password='PwEcho5",
     {"PwEcho5"}, 1},
    /* An unquoted password with a space and '=': its second half becomes
     * an unknown keyword, which libpq quotes. */
    {"password_with_space",
     "host=@H@ port=@P@ dbname=@D@ password=PwFox trot6=x",
     {"PwFox", "trot6"}, 1},
    /* An unescaped '/' ends the authority before the '@': libpq reads no
     * user information, takes the password's first half as the port. */
    {"uri_slash_in_password",
     "postgresql://postgres:PwGolf7/PwHotel8@localhost:@P@/@D@",
     {"PwGolf7", "PwHotel8"}, 1},
    /* A second '@': the rest of the password becomes the host name. */
    {"uri_at_in_password",
     "postgresql://postgres:PwIndia9@PwJuliet0@localhost/@D@",
     {"PwIndia9", "PwJuliet0"}, 1},
    {"uri_query_bad_percent",
     "postgresql:///@D@?host=@H@&port=@P@&password=PwKilo1%zz",
     {"PwKilo1"}, 1},
    /* One '/' short of a URI: libpq takes the whole text as a database
     * name and the server quotes it back. */
    {"uri_typo_plain_dbname", "postgresql:/postgres:PwLima2@localhost/@D@",
     {"PwLima2"}, 1},
    /* Parses; the connection fails (no server there). */
    {"unreachable_socket",
     "host=/nonexistent-exactly-dir port=@P@ dbname=@D@ password=PwMike3",
     {"PwMike3"}, 0},
    /* Parses; the server refuses the role. */
    {"unknown_role",
     "host=@H@ port=@P@ dbname=@D@ user=no_such_role password=PwNovember4",
     {"PwNovember4"}, 0},
};

#define N_CASES (sizeof cases / sizeof cases[0])

typedef struct ctx {
    const char *bin;
    const char *bootstraps;
    char dir[256];
    char host[512];
    char port[32];
    char dbname[128];
    char user[128];
} ctx;

/* The value of key in a keyword=value conninfo (no quoting in the test
 * server's), or fails the test. */
static void conninfo_value(const char *conninfo, const char *key, char *out,
                           size_t size)
{
    char pat[64];
    const char *p;
    size_t n;

    snprintf(pat, sizeof pat, "%s=", key);
    p = strstr(conninfo, pat);
    while (p && p != conninfo && p[-1] != ' ')
        p = strstr(p + 1, pat);
    TK_CHECK(p != NULL, "no %s in the test conninfo %s", key, conninfo);
    p += strlen(pat);
    if (*p == '\'') /* tk_pg_create_db quotes the dbname */
        p++;
    n = strcspn(p, " '");
    TK_CHECK(n < size, "%s too long in %s", key, conninfo);
    memcpy(out, p, n);
    out[n] = '\0';
}

/* s with @H@, @P@ and @D@ filled in; malloc'd. */
static char *fill(const ctx *c, const char *s)
{
    const char *names[] = {"@H@", "@P@", "@D@"};
    const char *values[] = {c->host, c->port, c->dbname};
    size_t cap = strlen(s) * 4 + 2048, len = 0, i;
    char *out = malloc(cap);

    TK_CHECK(out != NULL, "out of memory");
    while (*s) {
        for (i = 0; i < 3; i++) {
            size_t n = strlen(names[i]);
            if (strncmp(s, names[i], n) == 0) {
                size_t v = strlen(values[i]);
                TK_CHECK(len + v < cap, "template too long");
                memcpy(out + len, values[i], v);
                len += v;
                s += n;
                break;
            }
        }
        if (i == 3) {
            TK_CHECK(len + 1 < cap, "template too long");
            out[len++] = *s++;
        }
    }
    out[len] = '\0';
    return out;
}

/* Occurrences of needle in hay. */
static int count(const char *hay, const char *needle)
{
    int n = 0;

    while ((hay = strstr(hay, needle)) != NULL) {
        n++;
        hay += strlen(needle);
    }
    return n;
}

/* Runs one command to its end, or, for one that keeps retrying, until it
 * has tried to connect twice; returns its exit status (-1: stopped). The
 * combined output of stdout, stderr and the log file goes to *out. */
static int run_command(const ctx *c, char *const argv[], const char *log,
                       const char *log_file, char **out)
{
    int64_t deadline = tk_now_ms() + CMD_DEADLINE_MS;
    int status = -1;
    pid_t pid;

    tk_rm_rf(log);
    if (log_file)
        tk_rm_rf(log_file);
    pid = tk_spawn(argv, log);
    for (;;) {
        char *a, *b;
        int tries;

        status = tk_wait(pid, 200);
        if (status != -1)
            break;
        a = tk_read_file(log);
        b = log_file ? tk_read_file(log_file) : NULL;
        tries = (a ? count(a, "connect failed") : 0) +
                (b ? count(b, "connect failed") : 0);
        free(a);
        free(b);
        if (tries >= 2 || tk_now_ms() > deadline) {
            int st = tk_terminate(pid, 15000);
            TK_CHECK(st != -1, "%s %s did not stop", argv[1], argv[2]);
            status = -1;
            break;
        }
    }
    (void)c;
    {
        char *a = tk_read_file(log);
        char *b = log_file ? tk_read_file(log_file) : NULL;
        size_t la = a ? strlen(a) : 0, lb = b ? strlen(b) : 0;

        *out = malloc(la + lb + 2);
        TK_CHECK(*out != NULL, "out of memory");
        memcpy(*out, a ? a : "", la);
        (*out)[la] = '\n';
        memcpy(*out + la + 1, b ? b : "", lb);
        (*out)[la + 1 + lb] = '\0';
        free(a);
        free(b);
    }
    return status;
}

static void try_case(const ctx *c, const secret_case *sc)
{
    char cfg[512], log[512], log_file[512];
    char *conninfo = fill(c, sc->conninfo);
    tk_config config;
    tk_pipeline *pl = &config.pipelines[0];
    size_t i;

    snprintf(cfg, sizeof cfg, "%s/%s.yaml", c->dir, sc->name);
    snprintf(log_file, sizeof log_file, "%s/%s-run-file.log", c->dir,
             sc->name);
    tk_config_init(&config, c->bootstraps, conninfo);
    config.connect_timeout_s = 5;
    pl->name = "p";
    pl->topics[0] = TOPIC;
    pl->lookup_table = "accounts";
    tk_upsert_handler(pl, "accounts_copy",
                      (const char *[]){"id", NULL});
    tk_config_write(cfg, &config);

    {
        char *const commands[][14] = {
            {(char *)c->bin, "run", "-c", cfg, "--log-file", log_file,
             "--exit-idle", "2000", NULL},
            {(char *)c->bin, "worker", "-c", cfg, "--exit-idle", "2000",
             NULL},
            {(char *)c->bin, "check", "-c", cfg, NULL},
            {(char *)c->bin, "migrate", "-c", cfg, NULL},
            {(char *)c->bin, "offsets", "-c", cfg, NULL},
            {(char *)c->bin, "dlq", "list", "-c", cfg, "--pipeline", "p",
             NULL},
            {(char *)c->bin, "reprocess", "-c", cfg, "--pipeline", "p",
             "--topic", TOPIC, "--partition", "0", "--from", "0", NULL},
        };
        size_t n_commands = sizeof commands / sizeof commands[0];

        for (i = 0; i < n_commands; i++) {
            char *const *argv = commands[i];
            const char *cmd = argv[1];
            char *reprocess_argv[16];
            char *out;
            int status, p;

            if (strcmp(cmd, "reprocess") == 0) {
                /* ... --from 0 --to 0 */
                for (p = 0; argv[p]; p++)
                    reprocess_argv[p] = argv[p];
                reprocess_argv[p++] = "--to";
                reprocess_argv[p++] = "0";
                reprocess_argv[p] = NULL;
                argv = reprocess_argv;
            }
            snprintf(log, sizeof log, "%s/%s-%s.log", c->dir, sc->name, cmd);
            status = run_command(c, argv, log,
                                 strcmp(cmd, "run") == 0 ? log_file : NULL,
                                 &out);
            for (p = 0; p < MAX_PIECES && sc->pieces[p]; p++)
                TK_CHECK(strstr(out, sc->pieces[p]) == NULL,
                         "[%s] exactly %s printed the password piece '%s' "
                         "(conninfo %s):\n%s",
                         sc->name, cmd, sc->pieces[p], conninfo, out);
            TK_CHECK(status != 0,
                     "[%s] exactly %s succeeded with a broken conninfo:\n%s",
                     sc->name, cmd, out);
            TK_CHECK(strcasestr(out, "postgres") != NULL,
                     "[%s] exactly %s does not say PostgreSQL is the "
                     "problem:\n%s",
                     sc->name, cmd, out);
            if (sc->refused) {
                TK_CHECK(status == 2,
                         "[%s] exactly %s exited %d, expected 2 (refused):"
                         "\n%s",
                         sc->name, cmd, status, out);
                TK_CHECK(strstr(out, "'postgres.conninfo'") != NULL,
                         "[%s] exactly %s does not name "
                         "'postgres.conninfo':\n%s",
                         sc->name, cmd, out);
            }
            free(out);
        }
    }
    tk_note("no password piece printed: %s", sc->name);
    free(conninfo);
}

int main(void)
{
    char conninfo[1024];
    PGconn *db;
    tk_mock *m;
    ctx c;
    size_t i;
    int64_t t0 = tk_now_ms();

    memset(&c, 0, sizeof c);
    c.bin = tk_env_required("EXACTLY_BIN");
    m = tk_mock_start(1);
    c.bootstraps = tk_mock_bootstraps(m);
    tk_mock_create_topic(m, TOPIC, 1);
    tk_produce_ids(c.bootstraps, TOPIC, 5, 5, 1, 1, NULL);

    tk_pg_create_db("conninfo_secrets", conninfo, sizeof conninfo);
    conninfo_value(conninfo, "host", c.host, sizeof c.host);
    conninfo_value(conninfo, "port", c.port, sizeof c.port);
    conninfo_value(conninfo, "dbname", c.dbname, sizeof c.dbname);
    conninfo_value(conninfo, "user", c.user, sizeof c.user);
    db = tk_pg_connect(conninfo);
    tk_sql(db, "CREATE TABLE accounts (id bigint PRIMARY KEY);"
               "CREATE TABLE accounts_copy (id bigint PRIMARY KEY)");
    PQfinish(db);
    setenv("PGHOST", c.host, 1);
    setenv("PGPORT", c.port, 1);
    setenv("PGUSER", c.user, 1);
    unsetenv("PGPASSWORD");

    tk_tmpdir("exactly-conninfo-secrets", c.dir, sizeof c.dir);
    for (i = 0; i < N_CASES; i++)
        try_case(&c, &cases[i]);

    tk_mock_stop(m);
    tk_rm_rf(c.dir);
    tk_note("%zu conninfos x 7 commands printed no password piece in %" PRId64
            " ms",
            N_CASES, tk_now_ms() - t0);
    return 0;
}
