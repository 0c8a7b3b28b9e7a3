/*
 * reference.c - field tables printed as Markdown (reference.h).
 */
#include "config/reference.h"

#include <stdio.h>
#include <string.h>

#include "config/tables.h"

/* Appends text with '|' escaped, so it stays in its table cell. */
static void cell(strbuf *out, const char *text)
{
    for (; text && *text; text++) {
        if (*text == '|')
            strbuf_puts(out, "\\|");
        else
            strbuf_append(out, text, 1);
    }
}

/* Appends text as a paragraph, wrapped at spaces to lines of at most 76
 * columns (a longer word stays whole), so the file reads well as text. */
static void paragraph(strbuf *out, const char *text)
{
    size_t col = 0;

    while (*text) {
        size_t word = strcspn(text, " ");

        if (col > 0 && col + 1 + word > 76) {
            strbuf_puts(out, "\n");
            col = 0;
        } else if (col > 0) {
            strbuf_puts(out, " ");
            col++;
        }
        strbuf_append(out, text, word);
        col += word;
        text += word;
        text += strspn(text, " ");
    }
    strbuf_puts(out, "\n\n");
}

static const char *type_name(const cfg_field *f)
{
    switch (f->type) {
    case CFG_F_STR:
        return "string";
    case CFG_F_INT:
    case CFG_F_SIZE:
    case CFG_F_INT64:
        return "integer";
    case CFG_F_BOOL:
        return "bool";
    case CFG_F_ENUM:
        return "enum";
    case CFG_F_DURATION:
        return "duration";
    case CFG_F_STRLIST:
        return "list of strings";
    case CFG_F_STRMAP:
        return "mapping of strings";
    case CFG_F_PROPS:
        return "mapping of properties";
    case CFG_F_SECTION:
        return "section";
    case CFG_F_CUSTOM:
        return f->type_doc ? f->type_doc : "mapping";
    }
    return "?";
}

static void default_cell(strbuf *out, const cfg_field *f)
{
    if (f->flags & CFG_REQUIRED)
        strbuf_puts(out, "required");
    else if (f->def)
        strbuf_printf(out, "`%s`", f->def);
    else if (f->def_doc)
        cell(out, f->def_doc);
    else if (f->type != CFG_F_SECTION)
        strbuf_puts(out, "not set");
}

static void allowed_cell(strbuf *out, const cfg_field *f)
{
    size_t i;

    switch (f->type) {
    case CFG_F_INT:
    case CFG_F_SIZE:
    case CFG_F_INT64:
        if (f->min != INT64_MIN || f->max != INT64_MAX)
            strbuf_printf(out, "%lld to %lld", (long long)f->min,
                          (long long)f->max);
        break;
    case CFG_F_STR:
        if (f->max > 0)
            strbuf_printf(out, "%d to %lld bytes",
                          (f->flags & CFG_NONEMPTY) ? 1 : 0,
                          (long long)f->max);
        else if (f->flags & CFG_NONEMPTY)
            strbuf_puts(out, "not empty");
        break;
    case CFG_F_ENUM:
        for (i = 0; f->names[i].name; i++)
            strbuf_printf(out, "%s`%s`", i ? ", " : "", f->names[i].name);
        break;
    case CFG_F_BOOL:
        strbuf_puts(out, "`true` or `false`");
        break;
    case CFG_F_DURATION:
        strbuf_puts(out, "positive: `45s`, `30m`, `12h`, `7d` or seconds");
        break;
    case CFG_F_STRLIST:
        if (f->flags & CFG_NONEMPTY)
            strbuf_puts(out, "at least one item, none empty");
        break;
    default:
        break;
    }
}

/* The path of key under path ("" is the top level). */
static void join(char *out, size_t size, const char *path, const char *key)
{
    snprintf(out, size, "%s%s%s", path, path[0] ? "." : "", key);
}

static void field_row(strbuf *out, const char *path, const cfg_field *f)
{
    char sub[256];

    strbuf_printf(out, "| `%s` | ", f->key);
    cell(out, type_name(f));
    strbuf_puts(out, " | ");
    default_cell(out, f);
    strbuf_puts(out, " | ");
    allowed_cell(out, f);
    strbuf_puts(out, " | ");
    if (f->type == CFG_F_SECTION) {
        join(sub, sizeof(sub), path, f->key);
        strbuf_printf(out, "See `%s` below.", sub);
    } else if (f->type == CFG_F_CUSTOM && f->sub) {
        join(sub, sizeof(sub), path, f->key);
        cell(out, f->doc);
        strbuf_printf(out, " See `%s.NAME` below.", sub);
    } else {
        cell(out, f->doc);
    }
    strbuf_puts(out, " |\n");
}

void exactly_cfg_reference(strbuf *out, const char *path,
                           const cfg_section *s)
{
    char sub[256];
    size_t i;

    strbuf_printf(out, "\n## %s%s%s\n\n", path[0] ? "`" : "",
                  path[0] ? path : "The top level", path[0] ? "`" : "");
    if (s->doc)
        paragraph(out, s->doc);
    if (s->n_fields == 0) {
        strbuf_puts(out, "No keys.\n");
        return;
    }
    strbuf_puts(out, "| key | type | default | allowed | description |\n"
                     "| --- | --- | --- | --- | --- |\n");
    for (i = 0; i < s->n_fields; i++)
        field_row(out, path, &s->fields[i]);
    for (i = 0; i < s->n_fields; i++) {
        const cfg_field *f = &s->fields[i];

        join(sub, sizeof(sub), path, f->key);
        if (f->type == CFG_F_SECTION) {
            exactly_cfg_reference(out, sub, f->sub);
        } else if (f->type == CFG_F_CUSTOM && f->sub) {
            /* A mapping of names to sections: pipelines.NAME. */
            strncat(sub, ".NAME", sizeof(sub) - strlen(sub) - 1);
            exactly_cfg_reference(out, sub, f->sub);
        }
    }
}

void exactly_config_reference(strbuf *out)
{
    exactly_cfg_reference(out, "", &exactly_cfg_root_section);
}
