/*
 * tk_http.c: the HTTP client side: a free loopback port for a
 * server under test, one GET, and sums over Prometheus text. See tk_http.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testkit.h"

/* A port nobody listens on right now. */
int tk_free_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    TK_CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
                 getsockname(fd, (struct sockaddr *)&sa, &len) == 0,
             "cannot find a free port");
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* GET path; returns the status code and sets *body (malloc'd), or -1 when
 * nothing answers. */
int tk_http_get(int port, const char *path, char **body)
{
    struct sockaddr_in sa;
    char req[256], *buf = NULL, *sep;
    size_t len = 0, cap = 0;
    ssize_t n;
    int fd, status = -1;

    *body = NULL;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: test\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap);
            TK_CHECK(buf != NULL, "out of memory");
        }
        n = read(fd, buf + len, cap - len - 1);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (!buf)
        return -1;
    buf[len] = '\0';
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        status = -1;
    sep = strstr(buf, "\r\n\r\n");
    *body = strdup(sep ? sep + 4 : "");
    free(buf);
    return status;
}

int tk_http_wait_code(int port, const char *path, int want, int timeout_ms)
{
    int64_t deadline = tk_now_ms() + timeout_ms;
    int code;

    for (;;) {
        char *body = NULL;
        code = tk_http_get(port, path, &body);
        free(body);
        if (code == want || tk_now_ms() > deadline)
            return code;
        tk_sleep_ms(100);
    }
}

double tk_metric_sum_n(const char *text, const char *name, const char *match,
                       int *count)
{
    const char *line = text;
    size_t nl = strlen(name);
    double sum = 0;

    *count = 0;
    while (line && *line) {
        const char *end = strchr(line, '\n');
        size_t ll = end ? (size_t)(end - line) : strlen(line);

        if (ll > nl && strncmp(line, name, nl) == 0 && line[nl] == '{') {
            char one[1024];
            const char *space;

            snprintf(one, sizeof(one), "%.*s", (int)ll, line);
            space = strrchr(one, ' ');
            if (space && (!match || strstr(one, match))) {
                sum += strtod(space + 1, NULL);
                (*count)++;
            }
        }
        line = end ? end + 1 : NULL;
    }
    return sum;
}

double tk_metric_sum(const char *text, const char *name, const char *match)
{
    int count;
    double sum = tk_metric_sum_n(text, name, match, &count);

    return count > 0 ? sum : -1;
}

char *tk_metrics_scrape(int port)
{
    char *body = NULL;

    if (tk_http_get(port, "/metrics", &body) != 200) {
        free(body);
        return NULL;
    }
    return body;
}
