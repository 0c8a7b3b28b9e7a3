/*
 * table.c - see table.h.
 */
#include "table.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "escape.h"
#include "strbuf.h"

cli_table *cli_table_new(size_t n_cols, const char *const *headers,
                             const char *align)
{
    cli_table *t = calloc(1, sizeof(*t));
    size_t i;

    if (!t)
        return NULL;
    t->n_cols = n_cols;
    t->headers = calloc(n_cols, sizeof(char *));
    t->align = calloc(n_cols + 1, 1);
    if (!t->headers || !t->align) {
        cli_table_free(t);
        return NULL;
    }
    for (i = 0; i < n_cols; i++) {
        t->headers[i] = strdup(headers[i]);
        if (!t->headers[i]) {
            cli_table_free(t);
            return NULL;
        }
        t->align[i] = align[i] == 'r' ? 'r' : 'l';
    }
    return t;
}

void cli_table_add(cli_table *t, const char *const *cells)
{
    size_t i;

    if (t->oom)
        return;
    if (t->n_rows == t->cap_rows) {
        size_t cap = t->cap_rows ? t->cap_rows * 2 : 16;
        char **c = realloc(t->cells, cap * t->n_cols * sizeof(char *));
        if (!c) {
            t->oom = 1;
            return;
        }
        t->cells = c;
        t->cap_rows = cap;
    }
    for (i = 0; i < t->n_cols; i++) {
        char *s = exactly_printable(cells[i] ? cells[i] : "-");
        if (!s)
            t->oom = 1;
        t->cells[t->n_rows * t->n_cols + i] = s;
    }
    t->n_rows++;
}

int cli_table_print(const cli_table *t, FILE *out)
{
    size_t *w;
    size_t r, c;

    if (t->oom)
        return -1;
    w = calloc(t->n_cols, sizeof(size_t));
    if (!w)
        return -1;
    for (c = 0; c < t->n_cols; c++) {
        w[c] = strlen(t->headers[c]);
        for (r = 0; r < t->n_rows; r++) {
            size_t n = strlen(t->cells[r * t->n_cols + c]);
            if (n > w[c])
                w[c] = n;
        }
    }
    for (r = 0; r <= t->n_rows; r++) {
        strbuf line = {0};
        for (c = 0; c < t->n_cols; c++) {
            const char *s = r == 0 ? t->headers[c]
                                   : t->cells[(r - 1) * t->n_cols + c];
            strbuf_printf(&line, t->align[c] == 'r' ? "%s%*s" : "%s%-*s",
                          c ? "  " : "", (int)w[c], s);
        }
        if (line.oom) {
            strbuf_free(&line);
            free(w);
            return -1;
        }
        /* No trailing blanks (an empty last column, a left-aligned one). */
        while (line.len > 0 && line.data[line.len - 1] == ' ')
            line.data[--line.len] = '\0';
        fprintf(out, "%s\n", strbuf_str(&line));
        strbuf_free(&line);
    }
    free(w);
    return 0;
}

void cli_table_free(cli_table *t)
{
    size_t i;

    if (!t)
        return;
    for (i = 0; t->headers && i < t->n_cols; i++)
        free(t->headers[i]);
    for (i = 0; t->cells && i < t->n_rows * t->n_cols; i++)
        free(t->cells[i]);
    free(t->headers);
    free(t->align);
    free(t->cells);
    free(t);
}


void cli_fmt_i64(char *buf, size_t n, int ok, int64_t v)
{
    if (ok)
        snprintf(buf, n, "%" PRId64, v);
    else
        snprintf(buf, n, "-");
}

void cli_cell_line(const char *s, char *out, size_t width)
{
    char *shown = exactly_printable(s);
    const char *src = shown ? shown : "(out of memory)";
    size_t n = strlen(src), cut;

    if (n <= width) {
        memcpy(out, src, n + 1);
    } else {
        cut = width - 3;
        while (cut > 0 && ((unsigned char)src[cut] & 0xC0) == 0x80)
            cut--;
        memcpy(out, src, cut);
        memcpy(out + cut, "...", 4);
    }
    free(shown);
}
