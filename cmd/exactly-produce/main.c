/*
 * exactly-produce: messages with the keys, headers and values a line of
 * text spells out, for trying a handler against a mock or real Kafka. See
 * usage(); the line format is produce_line.h's.
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "produce_line.h"

enum { EXIT_DELIVERED = 0, EXIT_UNDELIVERED = 1, EXIT_REFUSED = 2 };

typedef struct delivery {
    long long delivered;
    long long failed;
    char first_error[256];
} delivery;

static void usage(FILE *out)
{
    fprintf(out,
"usage: exactly-produce -t TOPIC [-b BROKERS] [-p PARTITION] [-f FILE]\n"
"                       [-X NAME=VALUE]... [-q]\n"
"\n"
"Produces Kafka messages from lines of text: one message per line, with\n"
"the key, headers and value the line spells out, so that a handler can be\n"
"tried on exactly the messages it must cope with (an empty or null key, a\n"
"missing header, bytes that are not UTF-8). Lines are read from FILE or\n"
"stdin and sent as they are read; at the end every message is waited for.\n"
"\n"
"A line is KEY, then optionally a TAB and HEADERS, then optionally a TAB\n"
"and VALUE:\n"
"  KEY           the message key\n"
"  HEADERS       NAME=VALUE items separated by commas; NAME alone is a\n"
"                header with a null value; an empty field is no headers\n"
"  VALUE         the message value; without the field the value is null\n"
"                (a zero-payload message)\n"
"In every field \\N alone means null (a null key, header value or value),\n"
"and \\\\ \\t \\n \\r \\, \\= \\# \\xHH stand for a backslash, tab, newline,\n"
"carriage return, comma, equals sign, hash and the byte HH; any other\n"
"backslash is an error. Empty lines and lines that start with # are\n"
"skipped (an empty key with nothing else is a line holding one TAB); a\n"
"carriage return ending a line is dropped.\n"
"\n"
"Example, four messages: key 42; key 43 with headers event-id and\n"
"source; a null key with the value 7; an empty key.\n"
"  printf '42\\n43\\tevent-id=e-1,source=test\\n\\\\N\\t\\t7\\n\\t\\n' |\n"
"    exactly-produce -t orders\n"
"\n"
"options:\n"
"  -b, --brokers LIST         bootstrap servers (default:\n"
"                             $EXACTLY_BOOTSTRAP_SERVERS)\n"
"  -t, --topic TOPIC          the topic (required)\n"
"  -p, --partition N          every message to partition N (default: by\n"
"                             key with murmur2, as the Java client; a null\n"
"                             key goes to a random partition)\n"
"  -f, --file FILE            read FILE instead of stdin ('-' is stdin)\n"
"  -X, --property NAME=VALUE  a librdkafka producer property, repeatable;\n"
"                             set after the defaults enable.idempotence=true,\n"
"                             acks=all, partitioner=murmur2_random,\n"
"                             message.timeout.ms=30000\n"
"  -q, --quiet                no summary on stderr\n"
"  -h, --help                 this text\n"
"\n"
"Exit codes: 0 every message delivered, 1 a message was not delivered\n"
"(brokers unreachable, unknown topic, ...: the first error is printed),\n"
"2 bad usage or a malformed line, named by its number; the lines before\n"
"it were produced.\n");
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque)
{
    delivery *d = opaque;

    (void)rk;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        d->delivered++;
        return;
    }
    if (d->failed++ == 0)
        snprintf(d->first_error, sizeof(d->first_error), "%s",
                 rd_kafka_err2str(m->err));
}

/* Sets name=value on conf; on failure prints why and returns -1. */
static int set_prop(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char err[512];

    if (rd_kafka_conf_set(conf, name, value, err, sizeof(err)) !=
        RD_KAFKA_CONF_OK) {
        fprintf(stderr, "exactly-produce: %s=%s: %s\n", name, value, err);
        return -1;
    }
    return 0;
}

/* Hands m to librdkafka, waiting while its queue is full. Returns 0, or
 * -1 after printing why. */
static int send_one(rd_kafka_t *rk, const char *topic, int32_t partition,
                    const produce_msg *m, long lineno)
{
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_resp_err_t e;
    size_t i;

    for (;;) {
        if (m->n_headers > 0) {
            hdrs = rd_kafka_headers_new(m->n_headers);
            for (i = 0; i < m->n_headers; i++)
                rd_kafka_header_add(hdrs, m->headers[i].name.data,
                                    (ssize_t)m->headers[i].name.len,
                                    m->headers[i].value.data,
                                    (ssize_t)m->headers[i].value.len);
        }
        e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(m->key.data, m->key.len),
            RD_KAFKA_V_VALUE(m->value.data, m->value.len),
            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0; /* the headers are librdkafka's now */
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        hdrs = NULL;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "exactly-produce: line %ld: %s\n", lineno,
                    rd_kafka_err2str(e));
            return -1;
        }
        rd_kafka_poll(rk, 100);
    }
}

/* What the command line asks for. props point into argv (each -X value,
 * split at its '=' by producer_conf); the array is malloc'd. */
typedef struct options {
    const char *brokers;
    const char *topic;
    const char *file;
    char **props;
    size_t n_props;
    int32_t partition;
    int quiet;
} options;

/* Fills *o from argv. Returns 1 when the command should go on to produce;
 * 0 when it ends here with exit code *code (--help printed: 0; bad usage
 * printed: EXIT_REFUSED; out of memory: EXIT_UNDELIVERED). o->props is
 * the caller's to free either way. */
static int parse_args(int argc, char **argv, options *o, int *code)
{
    static const struct option longopts[] = {
        {"brokers", required_argument, NULL, 'b'},
        {"topic", required_argument, NULL, 't'},
        {"partition", required_argument, NULL, 'p'},
        {"file", required_argument, NULL, 'f'},
        {"property", required_argument, NULL, 'X'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    memset(o, 0, sizeof(*o));
    o->brokers = getenv("EXACTLY_BOOTSTRAP_SERVERS");
    o->partition = RD_KAFKA_PARTITION_UA;
    *code = EXIT_DELIVERED;
    o->props = calloc((size_t)argc, sizeof(*o->props));
    if (!o->props) {
        perror("exactly-produce");
        *code = EXIT_UNDELIVERED;
        return 0;
    }
    while ((c = getopt_long(argc, argv, "b:t:p:f:X:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'b': o->brokers = optarg; break;
        case 't': o->topic = optarg; break;
        case 'p': {
            char *end;
            long v;
            errno = 0;
            v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 0 || v > INT32_MAX) {
                fprintf(stderr, "exactly-produce: --partition wants a "
                        "partition number, got '%s'\n", optarg);
                *code = EXIT_REFUSED;
                return 0;
            }
            o->partition = (int32_t)v;
            break;
        }
        case 'f': o->file = optarg; break;
        case 'X': o->props[o->n_props++] = optarg; break;
        case 'q': o->quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); *code = EXIT_REFUSED; return 0;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "exactly-produce: unexpected argument '%s'\n",
                argv[optind]);
        *code = EXIT_REFUSED;
        return 0;
    }
    if (!o->topic || !o->topic[0] || !o->brokers || !o->brokers[0]) {
        fprintf(stderr, "exactly-produce: %s (see --help)\n",
                !o->topic || !o->topic[0]
                    ? "-t TOPIC is required"
                    : "no brokers: give -b LIST or set "
                      "EXACTLY_BOOTSTRAP_SERVERS");
        *code = EXIT_REFUSED;
        return 0;
    }
    return 1;
}

/* The producer's configuration: the defaults usage() names, then each -X
 * in order, and on_delivery counting into *d. Returns it (the caller's to
 * destroy or hand to rd_kafka_new), or NULL after printing why. */
static rd_kafka_conf_t *producer_conf(const options *o, delivery *d)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    size_t i;

    if (set_prop(conf, "bootstrap.servers", o->brokers) ||
        set_prop(conf, "enable.idempotence", "true") ||
        set_prop(conf, "acks", "all") ||
        set_prop(conf, "partitioner", "murmur2_random") ||
        set_prop(conf, "message.timeout.ms", "30000"))
        goto fail;
    for (i = 0; i < o->n_props; i++) {
        char *eq = strchr(o->props[i], '=');
        if (!eq || eq == o->props[i]) {
            fprintf(stderr, "exactly-produce: -X wants NAME=VALUE, got '%s'\n",
                    o->props[i]);
            goto fail;
        }
        *eq = '\0';
        if (set_prop(conf, o->props[i], eq + 1))
            goto fail;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, d);
    return conf;

fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* stdin for no file or "-", else file opened for reading; NULL after
 * printing why. */
static FILE *open_input(const char *file)
{
    FILE *in;

    if (!file || strcmp(file, "-") == 0)
        return stdin;
    if (!(in = fopen(file, "r")))
        fprintf(stderr, "exactly-produce: cannot read %s: %s\n", file,
                strerror(errno));
    return in;
}

/* Reads in line by line and hands each message line to rk, counting them
 * in *sent. Stops at the first malformed line (EXIT_REFUSED, the line and
 * the count before it printed) or message librdkafka refuses
 * (EXIT_UNDELIVERED); a read error is EXIT_REFUSED. Returns
 * EXIT_DELIVERED otherwise: delivery is known only after finish(). */
static int produce_lines(rd_kafka_t *rk, FILE *in, const options *o,
                         long *sent)
{
    char *line = NULL, err[512];
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    int code = EXIT_DELIVERED, is_message;
    produce_msg m;

    memset(&m, 0, sizeof(m));
    while ((len = getline(&line, &cap, in)) >= 0) {
        exactly_err rc;

        lineno++;
        if (len > 0 && line[len - 1] == '\n')
            len--;
        rc = produce_line_parse(line, (size_t)len, &m, &is_message, err,
                                sizeof(err));
        if (rc != EXACTLY_OK) {
            fprintf(stderr, "exactly-produce: line %ld: %s; the %ld "
                    "message(s) before it were produced\n", lineno,
                    rc == EXACTLY_ENOMEM ? "out of memory" : err, *sent);
            code = EXIT_REFUSED;
            break;
        }
        if (!is_message)
            continue;
        if (send_one(rk, o->topic, o->partition, &m, lineno) != 0) {
            produce_msg_free(&m);
            code = EXIT_UNDELIVERED;
            break;
        }
        produce_msg_free(&m);
        (*sent)++;
        rd_kafka_poll(rk, 0);
    }
    if (ferror(in)) {
        fprintf(stderr, "exactly-produce: reading %s: %s\n",
                in == stdin ? "stdin" : o->file, strerror(errno));
        code = EXIT_REFUSED;
    }
    free(line);
    return code;
}

/* Waits until every message handed to rk is delivered or failed, prints
 * the summary (the first delivery error, or the count unless quiet) and
 * returns code, made EXIT_UNDELIVERED when a message failed and code was
 * EXIT_DELIVERED. */
static int finish(rd_kafka_t *rk, const delivery *d, const options *o,
                  long sent, int code)
{
    /* Every message ends delivered or failed within message.timeout.ms. */
    while (rd_kafka_outq_len(rk) > 0)
        rd_kafka_flush(rk, 1000);
    if (d->failed > 0 && code == EXIT_DELIVERED)
        code = EXIT_UNDELIVERED;
    if (d->failed > 0)
        fprintf(stderr, "exactly-produce: %lld of %ld message(s) not "
                "delivered to %s: %s\n", d->failed, sent, o->topic,
                d->first_error);
    else if (!o->quiet)
        fprintf(stderr, "exactly-produce: %lld message(s) delivered to %s\n",
                d->delivered, o->topic);
    return code;
}

int main(int argc, char **argv)
{
    options o;
    int code;
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    FILE *in = NULL;
    char err[512];
    long sent = 0;
    delivery d;

    memset(&d, 0, sizeof(d));
    if (!parse_args(argc, argv, &o, &code))
        goto cleanup;
    code = EXIT_REFUSED;
    if (!(conf = producer_conf(&o, &d)) || !(in = open_input(o.file)))
        goto cleanup;
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "exactly-produce: %s\n", err);
        goto cleanup;
    }
    conf = NULL; /* rk owns it */
    code = produce_lines(rk, in, &o, &sent);
    code = finish(rk, &d, &o, sent, code);

cleanup:
    if (rk)
        rd_kafka_destroy(rk);
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (in && in != stdin)
        fclose(in);
    free(o.props);
    return code;
}
