/*
 * admin.h - what the operator commands (`exactly offsets`, `exactly dlq`)
 * share: aligned tables on stdout, the framework schema
 * check, a Kafka handle that never joins the group, and the two ways of
 * telling whether a pipeline's workers are running.
 *
 * Every function writes one sentence into errbuf when it fails; none
 * prints anything itself except the table printer.
 */
#ifndef EXACTLY_ADMIN_H
#define EXACTLY_ADMIN_H

#include <stdint.h>
#include <stdio.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "config.h"

/* ---- output ------------------------------------------------------------ */

/* A table printed with every column as wide as its widest cell. */
typedef struct admin_table {
    size_t n_cols;
    char **headers;
    char *align; /* per column: 'l' or 'r' */
    char **cells; /* n_rows * n_cols, owned */
    size_t n_rows;
    size_t cap_rows;
    int oom;
} admin_table;

/* headers: n_cols names; align: n_cols characters of 'l'/'r'. NULL on
 * allocation failure. */
admin_table *admin_table_new(size_t n_cols, const char *const *headers,
                             const char *align);
/* Copies n_cols cells (NULL prints as "-"), each with its control bytes
 * shown escaped (exactly_printable): a cell is one line, whatever a
 * message or the database put in it. */
void admin_table_add(admin_table *t, const char *const *cells);
/* Returns -1 when an allocation failed on the way (the table is then
 * incomplete and nothing is printed). */
int admin_table_print(const admin_table *t, FILE *out);
void admin_table_free(admin_table *t);

/* ---- the configuration itself ----------------------------------------- */

struct exactly_plugin;

/* Called once per validated item: err is NULL when it passed (detail says
 * what was found), else the reason it is refused. */
typedef void admin_report_fn(void *arg, const char *item, const char *err,
                             const char *detail);

/*
 * What every command that acts on a configuration refuses about it before
 * reaching any service (check and migrate share it, so migrate never sets
 * up a configuration no worker would run): the pipeline's handler (loaded,
 * ABI and descriptor checked, options validated against its declarations)
 * and the Kafka properties exactly owns (isolation level, auto commit,
 * group.id, any property librdkafka rejects). Reports the items
 * "handler [P]" and "kafka config [P]" through report and returns how
 * many were refused. If plugin is not NULL and the handler loaded,
 * *plugin receives it (the caller frees it with exactly_plugin_free);
 * otherwise nothing is kept.
 */
int admin_validate_pipeline(const exactly_config *cfg, const cfg_pipeline *p,
                            admin_report_fn *report, void *arg,
                            struct exactly_plugin **plugin);

/* ---- privileges (docs/PRIVILEGES.md) ---------------------------------- */

/*
 * What the role that runs the workers needs, and nothing more: it owns
 * nothing; the framework schema belongs to the role that ran `exactly
 * migrate`, the sources and targets to the application. One list, so that
 * `exactly migrate --print-grants` prints what `exactly check` verifies.
 */
typedef enum admin_object {
    ADMIN_OBJ_SCHEMA,
    ADMIN_OBJ_TABLE,
    ADMIN_OBJ_SEQUENCE,
    ADMIN_OBJ_FUNCTION,
    ADMIN_OBJ_NOTE /* nothing exactly can name (a plugin's tables, the
                      tables of lookup.sql): why says what to grant */
} admin_object;

typedef struct admin_grant {
    admin_object kind;
    const char *privileges; /* static text: "SELECT, INSERT, UPDATE" */
    char *object;           /* as SQL, identifiers quoted: "exactly"."offsets",
                               "exactly"."advance"(text, ...); NULL for a note */
    char *why;              /* what needs it */
} admin_grant;

typedef struct admin_grants {
    admin_grant *v;
    size_t n;
    size_t cap;
} admin_grants;

/* Appends the grants on the framework schema (for every pipeline of cfg:
 * dedup_keys only when one of them deduplicates). Reads no database.
 * EXACTLY_ECONFIG when the schema name cannot be quoted, EXACTLY_ENOMEM. */
exactly_err admin_grants_framework(const exactly_config *cfg, admin_grants *g,
                                   char *errbuf, size_t errbuf_size);

/* Appends the grants of pipeline p: SELECT on lookup.table, the built-in
 * upsert's target, USAGE on their schemas when qualified; a note for what
 * exactly cannot name. Loads the handler to read the built-in's options;
 * fails as exactly_plugin_load() does. Reads no database. */
exactly_err admin_grants_pipeline(const exactly_config *cfg,
                                  const cfg_pipeline *p, admin_grants *g,
                                  char *errbuf, size_t errbuf_size);

void admin_grants_free(admin_grants *g);

/* The SQL keyword of a grant's object kind ("TABLE", ...); "" for a note. */
const char *admin_object_keyword(admin_object kind);

/*
 * Which of g's privileges the connected role lacks (has_*_privilege, so
 * membership counts): *missing receives them (", "-separated, "" when
 * none; malloc'd) and *exists whether the object exists (a missing one
 * is reported by other checks; nothing is missing then). Notes check
 * nothing. Runs in the caller's transaction.
 */
exactly_err admin_grant_missing(PGconn *conn, const admin_grant *g,
                                char **missing, int *exists, char *errbuf,
                                size_t errbuf_size);

/* ---- parsing ------------------------------------------------------------ */

/*
 * Parses a point in time the way PostgreSQL reads timestamptz (ISO 8601
 * such as 2024-05-01T12:00:00Z, or a date; without a zone the server's
 * TimeZone applies). Sets *ms to milliseconds since the epoch and writes
 * the canonical UTC form into canon. EXACTLY_EINVAL when the server
 * rejects the text.
 */
exactly_err admin_parse_time(PGconn *conn, const char *text, int64_t *ms,
                             char *canon, size_t canon_size, char *errbuf,
                             size_t errbuf_size);

/* ---- PostgreSQL --------------------------------------------------------- */

/* EXACTLY_OK when cfg's schema is at the version this exactly needs, else
 * EXACTLY_EDATABASE with the reason (and what to run) in errbuf. */
exactly_err admin_check_schema(PGconn *conn, const exactly_config *cfg,
                               char *errbuf, size_t errbuf_size);

/* The quoted schema name (free with PQfreemem), or NULL. */
char *admin_schema_q(PGconn *conn, const exactly_config *cfg);

/* "user@host" of whoever runs this process, for audit rows. */
void admin_requested_by(char *out, size_t out_size);

/*
 * The owners recorded on the pipeline's offset rows (of topic, or of every
 * topic when NULL) that still hold a PostgreSQL session: a worker's
 * connection carries its owner string as application_name. *owners is a
 * malloc'd array of malloc'd strings; free with admin_free_strings.
 */
exactly_err admin_live_owners(PGconn *conn, const exactly_config *cfg,
                              const char *pipeline, const char *topic,
                              char ***owners, size_t *n_owners, char *errbuf,
                              size_t errbuf_size);
void admin_free_strings(char **v, size_t n);

/* ---- Kafka -------------------------------------------------------------- */

/*
 * A consumer handle with the pipeline's configuration (its group.id, so
 * committed offsets are the group's) that never subscribes, so it never
 * joins the group. client_tag names the command in client.id. Writes the
 * pipeline's auto.offset.reset policy into auto_reset (16 bytes).
 */
rd_kafka_t *admin_kafka_new(const exactly_config *cfg, const cfg_pipeline *p,
                            const char *client_tag, char *auto_reset,
                            char *errbuf, size_t errbuf_size);
/* Closes and destroys; NULL-safe. */
void admin_kafka_free(rd_kafka_t *rk);

/* The topic's partition count, or -1 with errbuf set. */
int admin_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms,
                          char *errbuf, size_t errbuf_size);

/*
 * Members of a consumer group as the broker reports them. Returns 0 with
 * *members and state set, 1 when the broker cannot say (librdkafka's mock
 * cluster and brokers without ListGroups/DescribeGroups), -1 on an error
 * (errbuf).
 */
int admin_group_members(rd_kafka_t *rk, const char *group, int timeout_ms,
                        int *members, char *state, size_t state_size,
                        char *errbuf, size_t errbuf_size);

#endif
