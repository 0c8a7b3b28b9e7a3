/*
 * config_env.h - what a configuration scalar goes through: ${VAR}
 * expansion, and the strict conversions shared by the config reader and
 * handler options.
 *
 * Secrets live in the environment, not in the file: every scalar value the
 * config reader sees passes through exactly_env_expand() once.
 */
#ifndef EXACTLY_CONFIG_ENV_H
#define EXACTLY_CONFIG_ENV_H

#include <stddef.h>
#include <stdint.h>

#include "exactly/error.h"

/*
 * Expands text into a new malloc'd string stored in *out (the caller frees
 * it): ${NAME} becomes the value of environment variable NAME, ${NAME:-word}
 * becomes word when NAME is unset or empty (word is expanded in turn, so
 * ${A:-${B}} falls back to B; up to 8 levels), $$ becomes one '$', and any
 * other '$' is kept, so SQL parameters such as $1 pass through untouched.
 * *used_env is set nonzero when text held any ${...}, which tells the caller
 * the result may carry a secret and must not be echoed.
 *
 * Returns EXACTLY_OK; EXACTLY_ECONFIG with a reason in why (an unset
 * variable, an unterminated "${" or a bad name; never a variable's value);
 * or EXACTLY_ENOMEM. On failure *out is NULL.
 */
exactly_err exactly_env_expand(const char *text, char **out, int *used_env,
                               char *why, size_t why_size);

/* Parses strict decimal (an optional '-', digits, nothing else, no
 * overflow) into *out. Returns 0, or -1 leaving *out unchanged. */
int exactly_cfg_parse_int64(const char *s, int64_t *out);

/* Parses true/yes/on or false/no/off (any case) into *out as 1 or 0.
 * Returns 0, or -1 leaving *out unchanged. */
int exactly_cfg_parse_bool(const char *s, int *out);

/* Copies src into dst (cut to dst_size, always terminated, an escape
 * never cut in half) with control bytes written as \n, \r, \t or \xNN:
 * a message that quotes text from the file stays on one line. */
void exactly_cfg_escape(char *dst, size_t dst_size, const char *src);

#endif
