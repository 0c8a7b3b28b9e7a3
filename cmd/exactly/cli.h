/* cli.h - what the subcommands share: config loading and exit codes. */
#ifndef EXACTLY_CLI_H
#define EXACTLY_CLI_H

#include "config.h"

/* Exit codes of every subcommand. */
enum {
    CLI_OK = 0,
    CLI_FAILED = 1,  /* a runtime failure: a service unreachable, a fatal error */
    CLI_REFUSED = 2  /* bad usage, configuration or plugin: nothing was done */
};

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

/* SIGTERM and SIGINT set *flag (ask for a clean stop); a second one ends
 * the process at once with the signal's default action. */
void cli_stop_on_signals(volatile sig_atomic_t *flag);

/* Parses a whole number in [min, max] for option opt of command cmd; on
 * failure prints why and returns -1. */
int cli_parse_int64(const char *cmd, const char *opt, const char *value,
                    int64_t min, int64_t max, int64_t *out);

/* Writes the formatted text and a newline to out as one line: every
 * control byte the arguments bring (a server's message, an ID, a key)
 * is shown escaped (escape.h, exactly_escape_printable), so no text from
 * outside can end the line or reach the terminal as a control sequence.
 * fmt holds no newline of its own. */
void cli_line(FILE *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* -v / -q: a level given on the command line wins over the file's. */
void cli_set_log_level(int level);

/* Loads path and applies its `log` section; on failure prints the reason
 * and returns NULL. */
exactly_config *cli_load_config(const char *path);

/* The pipeline named name, or the only one when name is NULL; on failure
 * prints why and returns NULL. */
const cfg_pipeline *cli_pick_pipeline(const exactly_config *cfg,
                                      const char *name);

int cmd_run(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_reprocess(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_offsets(int argc, char **argv);
/* `exactly offsets reset`, argv[0] being "reset". */
int cmd_offsets_reset(int argc, char **argv);
int cmd_dlq(int argc, char **argv);
int cmd_relay(int argc, char **argv);

#endif
