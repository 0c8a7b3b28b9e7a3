/* main.c - `exactly`: dispatch to one subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"run", cmd_run, "run the configured workers under a supervisor"},
    {"worker", cmd_worker, "run one worker in the foreground, no supervisor"},
    {"migrate", cmd_migrate, "create or upgrade the framework tables"},
    {"reprocess", cmd_reprocess, "apply an offset range of one partition again"},
    {"check", cmd_check, "validate the config, load plugins, reach PostgreSQL and Kafka"},
    {"offsets", cmd_offsets, "show stored offsets, watermarks and lag; reset them"},
    {"dlq", cmd_dlq, "list, show, replay or discard dead letters"},
    {"relay", cmd_relay, "publish an outbox table to Kafka; 'relay status'"},
};

static void usage(FILE *out)
{
    size_t i;

    fprintf(out,
            "usage: exactly COMMAND -c FILE [options]\n"
            "\n"
            "Exactly-once Kafka consumer: applies each message's entity to\n"
            "PostgreSQL through a handler, storing offsets in the same\n"
            "transaction.\n"
            "\n"
            "commands:\n");
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\n"
            "Run 'exactly COMMAND --help' for a command's options.\n"
            "Exit codes: 0 success, 1 runtime failure, 2 refused (usage,\n"
            "configuration or plugin error; nothing was changed).\n");
}

int main(int argc, char **argv)
{
    size_t i;

    if (argc < 2) {
        usage(stderr);
        return CLI_REFUSED;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("exactly 0.1.0\n");
        return CLI_OK;
    }
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "exactly: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return CLI_REFUSED;
}
