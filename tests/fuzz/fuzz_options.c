/*
 * fuzz_options.c - libFuzzer target: a handler's options checked against
 * its declarations.
 *
 * The input is the YAML of one `options:` mapping, put into a fixed valid
 * configuration and loaded by the real loader (from a memfd), then
 * validated against declarations of every option type. Either the options
 * are accepted and every getter answers, or there is a one-line error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "options.h"

static const exactly_option_decl decls[] = {
    {"table", EXACTLY_OPT_STRING, NULL, "required string"},
    {"prefix", EXACTLY_OPT_STRING, "p", "string with a default"},
    {"batch", EXACTLY_OPT_INT, "500", "int"},
    {"dry_run", EXACTLY_OPT_BOOL, "false", "bool"},
    {"key", EXACTLY_OPT_LIST, NULL, "list"},
    {"columns", EXACTLY_OPT_MAP, NULL, "map"},
};

static const char head[] = "kafka: {bootstrap.servers: b}\n"
                           "postgres: {conninfo: x}\n"
                           "pipelines:\n"
                           "  p:\n"
                           "    topics: [t]\n"
                           "    lookup: {table: t}\n"
                           "    handler:\n"
                           "      plugin: h.so\n"
                           "      options:\n";

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Getter misuse is logged; keep the fuzzer's output readable. */
    exactly_log_set_level(EXACTLY_LOG_ERROR);
    fd = memfd_create("fuzz-options", 0);
    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const size_t n_decls = sizeof(decls) / sizeof(decls[0]);
    exactly_config *cfg = NULL;
    exactly_options *opts = NULL;
    char err[1024];
    const char *const *items, *const *keys, *const *values;
    size_t i, n;

    if (ftruncate(fd, 0) != 0 ||
        pwrite(fd, head, sizeof(head) - 1, 0) != (ssize_t)(sizeof(head) - 1))
        abort();
    /* The input becomes the lines under `options:`, indented. */
    {
        size_t off = sizeof(head) - 1, start = 0;

        for (i = 0; i <= size; i++) {
            if (i == size || data[i] == '\n') {
                if (pwrite(fd, "        ", 8, (off_t)off) != 8 ||
                    pwrite(fd, data + start, i - start, (off_t)off + 8) !=
                        (ssize_t)(i - start) ||
                    pwrite(fd, "\n", 1, (off_t)(off + 8 + i - start)) != 1)
                    abort();
                off += 8 + i - start + 1;
                start = i + 1;
            }
        }
    }
    if (exactly_config_load(path, &cfg, err, sizeof(err)) != EXACTLY_OK)
        return 0;
    if (exactly_options_build(path, "fuzz", &cfg->pipelines[0].handler.options,
                              decls, n_decls, &opts, err,
                              sizeof(err)) == EXACTLY_OK) {
        if (!opts || !exactly_options_string(opts, "table") ||
            !exactly_options_string(opts, "prefix"))
            abort();
        (void)exactly_options_int(opts, "batch");
        (void)exactly_options_bool(opts, "dry_run");
        n = exactly_options_list(opts, "key", &items);
        for (i = 0; i < n; i++)
            if (!items[i])
                abort();
        n = exactly_options_map(opts, "columns", &keys, &values);
        for (i = 0; i < n; i++)
            if (!keys[i] || !values[i])
                abort();
    } else if (opts || err[0] == '\0' || strchr(err, '\n')) {
        abort();
    }
    exactly_options_free(opts);
    exactly_config_free(cfg);
    return 0;
}
