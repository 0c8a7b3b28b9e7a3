/*
 * fuzz_config.c - libFuzzer target: the YAML config loader.
 *
 * Each input is a whole configuration file (kept in a memfd and loaded by
 * its /proc path, so the loader reads it as a regular file). The loader
 * must return EXACTLY_OK with a config, or an error with a one-line
 * message and no config; never crash, leak or hang. A few environment
 * variables exist so ${VAR} references take both paths.
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

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("FUZZ_A", "value-a", 1);
    setenv("FUZZ_EMPTY", "", 1);
    setenv("FUZZ_PW", "s3cret", 1);
    unsetenv("FUZZ_UNSET");
    fd = memfd_create("fuzz-config", 0);
    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    exactly_config *cfg = (exactly_config *)&fd; /* must become NULL */
    char err[1024];
    exactly_err rc;

    if (ftruncate(fd, 0) != 0 ||
        (size > 0 && pwrite(fd, data, size, 0) != (ssize_t)size))
        abort();
    rc = exactly_config_load(path, &cfg, err, sizeof(err));
    if (rc == EXACTLY_OK) {
        if (!cfg || cfg->n_pipelines == 0 || !cfg->postgres.conninfo)
            abort();
        exactly_config_free(cfg);
        return 0;
    }
    /* A refusal: no config, one line naming what is wrong, and never the
     * value of a variable (FUZZ_PW's) unless the file itself holds it. */
    if (cfg != NULL || err[0] == '\0' || strchr(err, '\n') ||
        (strstr(err, "s3cret") && !memmem(data, size, "s3cret", 6)))
        abort();
    return 0;
}
