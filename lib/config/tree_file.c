/*
 * tree_file.c - reading the configuration file whole (tree.h).
 *
 * libyaml then parses from memory, and its reader errors (bad UTF-8),
 * which it reports by byte offset only, can be placed at a line and
 * column.
 */
#include "config/tree.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILE_SIZE (16u * 1024u * 1024u)

/* What a file that is not a regular file is, for the refusal. */
static const char *file_kind(mode_t mode)
{
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISSOCK(mode))
        return "a socket";
    return "a special file";
}

/*
 * Opens the configuration for reading. Only a regular file is accepted:
 * opening a FIFO would wait for a writer forever and a device can be read
 * without end. O_NONBLOCK keeps open() itself from waiting; it makes no
 * difference to reading a regular file.
 */
static FILE *open_config(cfg_ctx *c)
{
    char why[300];
    struct stat st;
    FILE *f;
    int fd = open(c->file, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

    if (fd < 0) {
        snprintf(why, sizeof(why), "cannot open: %s", strerror(errno));
        exactly_cfg_fail_file(c, EXACTLY_ECONFIG, why);
        return NULL;
    }
    if (fstat(fd, &st) != 0) {
        snprintf(why, sizeof(why), "cannot read: %s", strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, sizeof(why),
                 "not a regular file (%s); give the path "
                 "of a YAML file",
                 file_kind(st.st_mode));
        goto fail;
    }
    if (!(f = fdopen(fd, "rb"))) {
        snprintf(why, sizeof(why), "cannot read: %s", strerror(errno));
        goto fail;
    }
    return f;

fail:
    close(fd);
    exactly_cfg_fail_file(c, EXACTLY_ECONFIG, why);
    return NULL;
}

char *exactly_cfg_read_file(cfg_ctx *c, size_t *len)
{
    FILE *f = open_config(c);
    char *data = NULL;
    size_t cap = 0, n = 0;
    char why[300];

    if (!f)
        return NULL;
    for (;;) {
        size_t got;

        if (n == cap) {
            char *grown;

            if (cap >= MAX_FILE_SIZE) {
                exactly_cfg_fail_file(c, EXACTLY_ECONFIG,
                                      "file is larger than 16 MiB");
                goto fail;
            }
            cap = cap ? cap * 2 : 8192;
            grown = realloc(data, cap + 1);
            if (!grown) {
                exactly_cfg_fail_nomem(c);
                goto fail;
            }
            data = grown;
        }
        got = fread(data + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        snprintf(why, sizeof(why), "cannot read: %s", strerror(errno));
        exactly_cfg_fail_file(c, EXACTLY_ECONFIG, why);
        goto fail;
    }
    fclose(f);
    data[n] = '\0';
    *len = n;
    return data;

fail:
    fclose(f);
    free(data);
    return NULL;
}
