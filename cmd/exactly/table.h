/*
 * table.h - the aligned tables the operator commands print.
 */
#ifndef EXACTLY_CLI_TABLE_H
#define EXACTLY_CLI_TABLE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A table printed with every column as wide as its widest cell. */
typedef struct cli_table {
    size_t n_cols;
    char **headers;
    char *align; /* per column: 'l' or 'r' */
    char **cells; /* n_rows * n_cols, owned */
    size_t n_rows;
    size_t cap_rows;
    int oom;
} cli_table;

/* headers: n_cols names; align: n_cols characters of 'l'/'r'. NULL on
 * allocation failure. */
cli_table *cli_table_new(size_t n_cols, const char *const *headers,
                             const char *align);
/* Copies n_cols cells (NULL prints as "-"), each with its control bytes
 * shown escaped (exactly_printable): a cell is one line, whatever a
 * message or the database put in it. */
void cli_table_add(cli_table *t, const char *const *cells);
/* Returns -1 when an allocation failed on the way (the table is then
 * incomplete and nothing is printed). */
int cli_table_print(const cli_table *t, FILE *out);
void cli_table_free(cli_table *t);

/* v in decimal into buf, or "-" when not ok (not known). */
void cli_fmt_i64(char *buf, size_t n, int ok, int64_t v);

/* s for a table cell: control bytes shown escaped (exactly_printable),
 * cut to width (on a UTF-8 character boundary) with "..." when longer.
 * out holds width + 1 bytes. */
void cli_cell_line(const char *s, char *out, size_t width);

#endif
