/*
 * exactly-produce against the mock cluster, read back with a plain
 * consumer:
 *
 *   exact      a file of lines with -p: every message lands on that
 *              partition in line order, with the key (null, empty, binary),
 *              headers (null and empty values, escaped separators) and value
 *              the line spells, and exit 0;
 *   keyed      stdin, no -b (EXACTLY_BOOTSTRAP_SERVERS) and no -p: each key
 *              lands on the partition a murmur2 producer (the Java client's
 *              partitioner, testkit's tk_produce) picks for it;
 *   malformed  a bad third line: exit 2, the reason names line 3, and only
 *              the two lines before it were produced;
 *   refused    no topic: exit 2 and nothing produced; brokers that do not
 *              answer: exit 1 with "not delivered".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testkit.h"

#define MAX_SEEN 64

/* A message as read back. */
typedef struct seen_msg {
    int32_t partition;
    int64_t offset;
    char *key; /* NULL: null */
    size_t key_len;
    char *value;
    size_t value_len;
    size_t n_headers;
    char *hname[4];
    char *hvalue[4]; /* NULL: null */
    size_t hvalue_len[4];
} seen_msg;

static char *dup_bytes(const void *p, size_t n)
{
    char *s;

    if (!p)
        return NULL;
    s = malloc(n + 1);
    TK_CHECK(s != NULL, "out of memory");
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* Reads every partition of topic from the beginning until want messages
 * arrived (60 s at most), then 1 s more for any surplus; returns how many. */
static size_t consume_all(const char *bootstraps, const char *topic,
                          int partitions, seen_msg *out, size_t want)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *tp;
    rd_kafka_t *rk;
    size_t n = 0;
    int64_t deadline = tk_now_ms() + 60000, quiet_until = 0;
    int i;

    TK_CHECK(rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, err,
                               sizeof(err)) == RD_KAFKA_CONF_OK, "%s", err);
    TK_CHECK(rd_kafka_conf_set(conf, "group.id", "test-produce-reader", err,
                               sizeof(err)) == RD_KAFKA_CONF_OK, "%s", err);
    TK_CHECK(rd_kafka_conf_set(conf, "enable.auto.commit", "false", err,
                               sizeof(err)) == RD_KAFKA_CONF_OK, "%s", err);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    TK_CHECK(rk != NULL, "consumer: %s", err);
    tp = rd_kafka_topic_partition_list_new(partitions);
    for (i = 0; i < partitions; i++)
        rd_kafka_topic_partition_list_add(tp, topic, i)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    TK_CHECK(rd_kafka_assign(rk, tp) == RD_KAFKA_RESP_ERR_NO_ERROR, "assign");
    rd_kafka_topic_partition_list_destroy(tp);
    for (;;) {
        rd_kafka_message_t *m;
        int64_t now = tk_now_ms();

        if (n >= want && quiet_until == 0)
            quiet_until = now + 1000;
        if ((quiet_until && now > quiet_until) || now > deadline)
            break;
        m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_headers_t *h = NULL;
            seen_msg *s;
            size_t j;

            TK_CHECK(n < MAX_SEEN, "more than %d messages in %s", MAX_SEEN,
                     topic);
            s = &out[n++];
            memset(s, 0, sizeof(*s));
            s->partition = m->partition;
            s->offset = m->offset;
            s->key = dup_bytes(m->key, m->key_len);
            s->key_len = m->key_len;
            s->value = dup_bytes(m->payload, m->len);
            s->value_len = m->len;
            if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                const char *name;
                const void *val;
                size_t vlen;
                for (j = 0; j < 4 && rd_kafka_header_get_all(h, j, &name, &val,
                                                             &vlen) ==
                                         RD_KAFKA_RESP_ERR_NO_ERROR;
                     j++) {
                    s->hname[j] = dup_bytes(name, strlen(name));
                    s->hvalue[j] = dup_bytes(val, vlen);
                    s->hvalue_len[j] = vlen;
                }
                s->n_headers = j;
            }
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            tk_note("consumer: %s", rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n;
}

static void free_seen(seen_msg *s, size_t n)
{
    size_t i, j;

    for (i = 0; i < n; i++) {
        free(s[i].key);
        free(s[i].value);
        for (j = 0; j < s[i].n_headers; j++) {
            free(s[i].hname[j]);
            free(s[i].hvalue[j]);
        }
    }
}

/* Fails unless the bytes (NULL: null) are want (NULL: null). */
static void check_bytes(const char *what, const char *got, size_t got_len,
                        const char *want, size_t want_len)
{
    if (!want) {
        TK_CHECK(got == NULL, "%s: want null, got %zu bytes", what, got_len);
        return;
    }
    TK_CHECK(got != NULL, "%s: want %zu bytes, got null", what, want_len);
    TK_CHECK(got_len == want_len && memcmp(got, want, want_len) == 0,
             "%s: want %zu bytes \"%.*s\", got %zu bytes \"%.*s\"", what,
             want_len, (int)want_len, want, got_len, (int)got_len, got);
}

/* Runs argv with stdout and stderr to log; returns its exit status. */
static int run(char *const argv[], const char *log)
{
    return tk_wait(tk_spawn(argv, log), 120000);
}

static void exact(const char *bin, const char *bs, const char *dir)
{
    char input[512], log[512];
    seen_msg s[MAX_SEEN];
    char *argv[] = {(char *)bin, "-b", (char *)bs, "-t", "exact", "-p", "1",
                    "-f", input, NULL};
    size_t n;
    int status;

    snprintf(input, sizeof(input), "%s/exact.txt", dir);
    snprintf(log, sizeof(log), "%s/exact.log", dir);
    tk_write_file(input,
                  "# key only, then headers, then a value\n"
                  "42\n"
                  "43\tevent-id=e-1,source=test\n"
                  "\\N\t\t7\n"
                  "\t\n"
                  "\n"
                  "bin\\x00\\xff\tflag,empty=,n=\\N,a\\=b=c\\,d\tv\\tw\r\n");
    status = run(argv, log);
    TK_CHECK(status == 0, "exactly-produce exited %d (log %s)", status, log);
    TK_CHECK(tk_file_contains(log, "5 message(s) delivered to exact"),
             "no summary of 5 messages in %s", log);
    n = consume_all(bs, "exact", 3, s, 5);
    TK_CHECK_EQ_INT64(n, 5, "messages in topic exact");
    for (size_t i = 0; i < n; i++) {
        TK_CHECK_EQ_INT64(s[i].partition, 1, "partition with -p 1");
        TK_CHECK_EQ_INT64(s[i].offset, (int64_t)i, "offset (line order)");
    }
    check_bytes("1 key", s[0].key, s[0].key_len, "42", 2);
    check_bytes("1 value", s[0].value, s[0].value_len, NULL, 0);
    TK_CHECK_EQ_INT64(s[0].n_headers, 0, "1 headers");
    check_bytes("2 key", s[1].key, s[1].key_len, "43", 2);
    TK_CHECK_EQ_INT64(s[1].n_headers, 2, "2 headers");
    TK_CHECK_EQ_STR(s[1].hname[0], "event-id", "2 header 1");
    check_bytes("2 header 1 value", s[1].hvalue[0], s[1].hvalue_len[0], "e-1", 3);
    TK_CHECK_EQ_STR(s[1].hname[1], "source", "2 header 2");
    check_bytes("2 header 2 value", s[1].hvalue[1], s[1].hvalue_len[1], "test", 4);
    check_bytes("3 key", s[2].key, s[2].key_len, NULL, 0);
    check_bytes("3 value", s[2].value, s[2].value_len, "7", 1);
    check_bytes("4 key", s[3].key, s[3].key_len, "", 0);
    TK_CHECK_EQ_INT64(s[3].n_headers, 0, "4 headers");
    check_bytes("5 key", s[4].key, s[4].key_len, "bin\0\xff", 5);
    check_bytes("5 value", s[4].value, s[4].value_len, "v\tw", 3);
    TK_CHECK_EQ_INT64(s[4].n_headers, 4, "5 headers");
    TK_CHECK_EQ_STR(s[4].hname[0], "flag", "5 header 1");
    check_bytes("5 header 1 value", s[4].hvalue[0], s[4].hvalue_len[0], NULL, 0);
    TK_CHECK_EQ_STR(s[4].hname[1], "empty", "5 header 2");
    check_bytes("5 header 2 value", s[4].hvalue[1], s[4].hvalue_len[1], "", 0);
    TK_CHECK_EQ_STR(s[4].hname[2], "n", "5 header 3");
    check_bytes("5 header 3 value", s[4].hvalue[2], s[4].hvalue_len[2], NULL, 0);
    TK_CHECK_EQ_STR(s[4].hname[3], "a=b", "5 header 4");
    check_bytes("5 header 4 value", s[4].hvalue[3], s[4].hvalue_len[3], "c,d", 3);
    free_seen(s, n);
    tk_note("exact: 5 messages, keys, headers and values as the lines say");
}

static void keyed(const char *bin, const char *bs, const char *dir)
{
    static const char *keys[] = {"alpha", "bravo", "charlie", "delta",
                                 "echo", "foxtrot", "golf", "hotel"};
    enum { N = sizeof(keys) / sizeof(keys[0]) };
    char log[512], cmd[1024], input[512];
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    seen_msg mine[MAX_SEEN], ref[MAX_SEEN];
    tk_msg msgs[N];
    FILE *f;
    size_t n, i, j;
    int status;

    snprintf(input, sizeof(input), "%s/keyed.txt", dir);
    snprintf(log, sizeof(log), "%s/keyed.log", dir);
    f = fopen(input, "w");
    TK_CHECK(f != NULL, "cannot write %s", input);
    for (i = 0; i < N; i++)
        fprintf(f, "%s\n", keys[i]);
    TK_CHECK(fclose(f) == 0, "cannot write %s", input);
    /* stdin, and the brokers from the environment only. */
    setenv("EXACTLY_BOOTSTRAP_SERVERS", bs, 1);
    snprintf(cmd, sizeof(cmd), "'%s' -t keyed < '%s'", bin, input);
    status = run(argv, log);
    unsetenv("EXACTLY_BOOTSTRAP_SERVERS");
    TK_CHECK(status == 0, "exactly-produce (stdin) exited %d (log %s)", status,
             log);
    memset(msgs, 0, sizeof(msgs));
    for (i = 0; i < N; i++) {
        msgs[i].partition = -1;
        msgs[i].key = keys[i];
        msgs[i].key_len = strlen(keys[i]);
    }
    tk_produce(bs, "keyed-ref", msgs, N);
    n = consume_all(bs, "keyed", 4, mine, N);
    TK_CHECK_EQ_INT64(n, N, "messages in topic keyed");
    TK_CHECK_EQ_INT64(consume_all(bs, "keyed-ref", 4, ref, N), N,
                      "messages in topic keyed-ref");
    for (i = 0; i < N; i++)
        for (j = 0; j < N; j++)
            if (mine[i].key && ref[j].key && strcmp(mine[i].key, ref[j].key) == 0)
                TK_CHECK(mine[i].partition == ref[j].partition,
                         "key %s: partition %d, a murmur2 producer chose %d",
                         mine[i].key, (int)mine[i].partition,
                         (int)ref[j].partition);
    free_seen(mine, N);
    free_seen(ref, N);
    tk_note("keyed: stdin and EXACTLY_BOOTSTRAP_SERVERS; partitions as murmur2");
}

static void malformed(const char *bin, const char *bs, const char *dir)
{
    char input[512], log[512];
    char *argv[] = {(char *)bin, "-b", (char *)bs, "-t", "malformed", "-f",
                    input, NULL};
    seen_msg s[MAX_SEEN];
    size_t n;
    int status;

    snprintf(input, sizeof(input), "%s/malformed.txt", dir);
    snprintf(log, sizeof(log), "%s/malformed.log", dir);
    tk_write_file(input, "a\nb\nbad\\q\nc\n");
    status = run(argv, log);
    TK_CHECK(status == 2, "a malformed line: exit %d, want 2 (log %s)", status,
             log);
    TK_CHECK(tk_file_contains(log, "line 3: key: unknown escape \\q"),
             "the reason does not name line 3 and the escape (log %s)", log);
    TK_CHECK(tk_file_contains(log, "the 2 message(s) before it were produced"),
             "the reason does not say what was produced (log %s)", log);
    n = consume_all(bs, "malformed", 1, s, 2);
    TK_CHECK_EQ_INT64(n, 2, "messages in topic malformed (lines 1 and 2)");
    check_bytes("first", s[0].key, s[0].key_len, "a", 1);
    check_bytes("second", s[1].key, s[1].key_len, "b", 1);
    free_seen(s, n);
    tk_note("malformed: exit 2 naming line 3, lines 1-2 produced, line 4 not");
}

static void refused(const char *bin, const char *bs, const char *dir)
{
    char input[512], log[512];
    char *no_topic[] = {(char *)bin, "-b", (char *)bs, "-f", input, NULL};
    char *nobody[] = {(char *)bin, "-b", "127.0.0.1:1", "-t", "x", "-f", input,
                      "-X", "message.timeout.ms=2000", NULL};
    int status;

    snprintf(input, sizeof(input), "%s/one.txt", dir);
    tk_write_file(input, "1\n");
    snprintf(log, sizeof(log), "%s/no-topic.log", dir);
    status = run(no_topic, log);
    TK_CHECK(status == 2, "no -t: exit %d, want 2", status);
    TK_CHECK(tk_file_contains(log, "-t TOPIC is required"), "no -t: no reason");
    snprintf(log, sizeof(log), "%s/nobody.log", dir);
    status = run(nobody, log);
    TK_CHECK(status == 1, "brokers that do not answer: exit %d, want 1 (log %s)",
             status, log);
    TK_CHECK(tk_file_contains(log, "1 of 1 message(s) not delivered to x"),
             "no 'not delivered' line (log %s)", log);
    tk_note("refused: no topic exits 2, undeliverable exits 1");
}

int main(void)
{
    const char *bin = tk_env_required("EXACTLY_PRODUCE_BIN");
    char dir[256];
    tk_mock *mock;

    tk_tmpdir("exactly-produce", dir, sizeof(dir));
    mock = tk_mock_start(1);
    tk_mock_create_topic(mock, "exact", 3);
    tk_mock_create_topic(mock, "keyed", 4);
    tk_mock_create_topic(mock, "keyed-ref", 4);
    tk_mock_create_topic(mock, "malformed", 1);

    exact(bin, tk_mock_bootstraps(mock), dir);
    keyed(bin, tk_mock_bootstraps(mock), dir);
    malformed(bin, tk_mock_bootstraps(mock), dir);
    refused(bin, tk_mock_bootstraps(mock), dir);

    tk_mock_stop(mock);
    if (!getenv("EXACTLY_TEST_KEEP"))
        tk_rm_rf(dir);
    return 0;
}
