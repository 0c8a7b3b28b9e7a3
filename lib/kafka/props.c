/*
 * props.c - see props.h.
 */
#include "props.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

/* The names of the properties of each scope, '\n'-separated with a '\n'
 * on each side, read once from rd_kafka_conf_properties_show() (the
 * table of librdkafka's CONFIGURATION.md); NULL when it could not be
 * read. */
static char *only[2];
static pthread_once_t only_once = PTHREAD_ONCE_INIT;

static void read_scopes(void)
{
    static const char *const scope_name[2] = {"C", "P"};
    char *table = NULL, *line, *save = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&table, &size);
    strbuf names[2] = {{0}, {0}};
    int k;

    if (!f)
        return;
    rd_kafka_conf_properties_show(f);
    if (fclose(f) != 0 || !table) {
        free(table);
        return;
    }
    for (k = 0; k < 2; k++)
        strbuf_printf(&names[k], "\n");
    /* Rows: "name   |  C  | range | default | importance | text". */
    for (line = strtok_r(table, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char name[256], scope[8];

        if (sscanf(line, "%255[^ |] | %7[^ |] |", name, scope) != 2)
            continue;
        for (k = 0; k < 2; k++)
            if (strcmp(scope, scope_name[k]) == 0)
                strbuf_printf(&names[k], "%s\n", name);
    }
    free(table);
    for (k = 0; k < 2; k++) {
        if (names[k].oom || names[k].len < 2) {
            strbuf_free(&names[k]);
            continue;
        }
        only[k] = names[k].data;
    }
}

int exactly_kafka_prop_only(const char *name, exactly_kafka_scope scope)
{
    char needle[260];
    const char *list;

    (void)pthread_once(&only_once, read_scopes);
    list = only[scope == EXACTLY_KAFKA_PRODUCER_PROP];
    if (!list || strlen(name) > 255 || strchr(name, '\n'))
        return 0;
    snprintf(needle, sizeof(needle), "\n%s\n", name);
    return strstr(list, needle) != NULL;
}
