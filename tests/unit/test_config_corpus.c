/*
 * test_config_corpus.c - the corpus of broken configurations in
 * tests/data/bad_config/: every file must be refused by the loader with
 * EXACTLY_ECONFIG, no config, and one line that starts with the file's path
 * and what its first line says (`# expect: LINE:COLUMN: message`), which
 * names the key wherever the file got far enough to have one. The same
 * files go through the exactly binary in
 * tests/integration/test_refusal_corpus.c.
 *
 * The files reach the services through ${EXACTLY_TEST_BOOTSTRAP} and
 * ${EXACTLY_TEST_CONNINFO}; here they only need to be set.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "testkit.h"

/* The corpus must not shrink unnoticed. */
#define MIN_FILES 64

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int is_yaml(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return n > 5 && strcmp(d->d_name + n - 5, ".yaml") == 0;
}

int main(void)
{
    const char *src = getenv("EXACTLY_SOURCE_DIR");
    char dir[PATH_MAX];
    struct dirent **names = NULL;
    int n, i;

    TK_CHECK(src != NULL, "EXACTLY_SOURCE_DIR is not set");
    snprintf(dir, sizeof dir, "%s/tests/data/bad_config", src);
    setenv("EXACTLY_TEST_BOOTSTRAP", "localhost:9092", 1);
    setenv("EXACTLY_TEST_CONNINFO", "dbname=corpus", 1);
    unsetenv("EXACTLY_TEST_SURELY_UNSET");
    unsetenv("EXACTLY_TEST_SURELY_UNSET_TOO");

    n = scandir(dir, &names, is_yaml, by_name);
    TK_CHECK(n >= MIN_FILES, "%s holds %d files, expected at least %d", dir,
             n, MIN_FILES);
    for (i = 0; i < n; i++) {
        char path[PATH_MAX + 256], want[PATH_MAX + 1536], err[2048];
        char *text, *nl;
        exactly_config *cfg = (exactly_config *)&n; /* must become NULL */
        exactly_err rc;

        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        text = tk_read_file(path);
        TK_CHECK(text && strncmp(text, "# expect: ", 10) == 0,
                 "%s does not start with '# expect: '", path);
        nl = strchr(text, '\n');
        TK_CHECK(nl != NULL, "%s: no line after the expectation", path);
        *nl = '\0';
        snprintf(want, sizeof want, "%s:%s", path, text + 10);
        free(text);

        rc = exactly_config_load(path, &cfg, err, sizeof err);
        TK_CHECK(rc == EXACTLY_ECONFIG, "%s: loaded (rc %d), expected a "
                 "refusal", names[i]->d_name, (int)rc);
        TK_CHECK(cfg == NULL, "%s: a config despite the refusal",
                 names[i]->d_name);
        TK_CHECK(strncmp(err, want, strlen(want)) == 0,
                 "%s:\n  expected: %s\n  got:      %s", names[i]->d_name,
                 want, err);
        TK_CHECK(strchr(err, '\n') == NULL, "%s: the message has a newline",
                 names[i]->d_name);
        free(names[i]);
    }
    free(names);
    tk_note("%d broken configurations refused as expected", n);
    return 0;
}
