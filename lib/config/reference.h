/*
 * reference.h - the reference of a configuration, in Markdown, printed
 * from the same field tables the walker reads with (schema.h): every key
 * with its type, default, allowed values and description, section by
 * section. docs/CONFIGURATION.md is this text (tests/tools/
 * config_reference.c writes it; a unit test fails when the committed file
 * differs).
 */
#ifndef EXACTLY_CONFIG_REFERENCE_H
#define EXACTLY_CONFIG_REFERENCE_H

#include "config/schema.h"
#include "util/strbuf.h"

/*
 * Appends the reference of s to out: a "## `path`" heading (path "" is the
 * top level), s->doc, a table of its fields, then the same for each
 * section below it, depth first in table order. A CUSTOM field with a sub
 * section is a mapping of names to that section, shown as path.key.NAME.
 * Allocation failures latch in out (strbuf.h).
 */
void exactly_cfg_reference(strbuf *out, const char *path,
                           const cfg_section *s);

/* Appends the reference of exactly's own configuration (tables.h). */
void exactly_config_reference(strbuf *out);

#endif
