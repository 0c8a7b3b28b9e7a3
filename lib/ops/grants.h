/*
 * grants.h - the privileges the workers' role needs (docs/PRIVILEGES.md):
 * the list `exactly migrate --print-grants` prints and `exactly check`
 * verifies.
 */
#ifndef EXACTLY_OPS_GRANTS_H
#define EXACTLY_OPS_GRANTS_H

#include <stddef.h>

#include <libpq-fe.h>

#include "config.h"

/*
 * What the role that runs the workers needs, and nothing more: it owns
 * nothing; the framework schema belongs to the role that ran `exactly
 * migrate`, the sources and targets to the application. One list, so that
 * `exactly migrate --print-grants` prints what `exactly check` verifies.
 */
typedef enum ops_object {
    OPS_OBJ_SCHEMA,
    OPS_OBJ_TABLE,
    OPS_OBJ_SEQUENCE,
    OPS_OBJ_FUNCTION,
    OPS_OBJ_NOTE /* nothing exactly can name (a plugin's tables, the
                      tables of lookup.sql): why says what to grant */
} ops_object;

typedef struct ops_grant {
    ops_object kind;
    const char *privileges; /* static text: "SELECT, INSERT, UPDATE" */
    char *object;           /* as SQL, identifiers quoted: "exactly"."offsets",
                               "exactly"."advance"(text, ...); NULL for a note */
    char *why;              /* what needs it */
} ops_grant;

typedef struct ops_grants {
    ops_grant *v;
    size_t n;
    size_t cap;
} ops_grants;

/* Appends the grants on the framework schema (for every pipeline of cfg:
 * dedup_keys only when one of them deduplicates). Reads no database.
 * EXACTLY_ECONFIG when the schema name cannot be quoted, EXACTLY_ENOMEM. */
exactly_err ops_grants_framework(const exactly_config *cfg, ops_grants *g,
                                   char *errbuf, size_t errbuf_size);

/* Appends the grants of pipeline p: SELECT on lookup.table, the built-in
 * upsert's target, USAGE on their schemas when qualified; a note for what
 * exactly cannot name. Loads the handler to read the built-in's options;
 * fails as exactly_plugin_load() does. With the upsert's emit_topic, also
 * INSERT on its emit_outbox and USAGE on the sequence the catalog names
 * for the outbox's id (none: no grant; no such table yet: a note): that
 * reads the database through *conn, connected here with cfg's conninfo
 * when NULL (the caller PQfinish()es it); EXACTLY_EDATABASE with the
 * reason in errbuf when that fails. */
exactly_err ops_grants_pipeline(const exactly_config *cfg,
                                  const cfg_pipeline *p, PGconn **conn,
                                  ops_grants *g, char *errbuf,
                                  size_t errbuf_size);

/* Appends the grants of relay r: USAGE on its outbox's schema, SELECT,
 * UPDATE, DELETE on the outbox, USAGE on the framework schema and
 * SELECT, INSERT, UPDATE on its relay_state. Reads no database.
 * EXACTLY_ECONFIG when a name cannot be quoted, EXACTLY_ENOMEM. */
exactly_err ops_grants_relay(const exactly_config *cfg, const cfg_relay *r,
                             ops_grants *g, char *errbuf, size_t errbuf_size);

void ops_grants_free(ops_grants *g);

/* role as the GRANT statements name it (a quoted identifier, malloc'd).
 * EXACTLY_ECONFIG with the reason in errbuf for a name that cannot be
 * one (empty, too long), EXACTLY_ENOMEM. */
exactly_err ops_grants_quote_role(const char *role, char **quoted,
                                  char *errbuf, size_t errbuf_size);

/* The SQL keyword of a grant's object kind ("TABLE", ...); "" for a note. */
const char *ops_object_keyword(ops_object kind);

/*
 * Which of g's privileges the connected role lacks (has_*_privilege, so
 * membership counts): *missing receives them (", "-separated, "" when
 * none; malloc'd) and *exists whether the object exists (a missing one
 * is reported by other checks; nothing is missing then). Notes check
 * nothing. Runs in the caller's transaction.
 */
exactly_err ops_grant_missing(PGconn *conn, const ops_grant *g,
                              char **missing, int *exists, char *errbuf,
                              size_t errbuf_size);

#endif
