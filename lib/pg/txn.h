/*
 * txn.h - one batch transaction on a connection in libpq pipeline mode.
 *
 * Statements are queued with exactly_txn_send() and their results read at
 * the next exactly_txn_sync(), so a batch costs a round trip per sync, not
 * per statement. The first error of a sync is kept with the phase of the
 * statement that raised it, which tells the cycle what failed: the fence,
 * the lookup, the handler's writes or the commit.
 *
 * The txn is also the handle a handler receives: its calls on it are
 * pg/txn_host.h, gathered into exactly_host by plugin/host.c.
 */
#ifndef EXACTLY_TXN_H
#define EXACTLY_TXN_H

#include <libpq-fe.h>

#include "exactly/handler.h"

typedef enum txn_phase {
    TXN_CONTROL = 0, /* BEGIN, SAVEPOINT, ROLLBACK TO, RELEASE */
    TXN_SYNC,        /* a sync point inside the queue (exactly_txn_push_sync) */
    TXN_ATTEMPT,     /* the crash guard's own small transaction */
    TXN_FENCE,
    TXN_DEDUP,
    TXN_LOOKUP,
    TXN_HANDLER,
    TXN_DEAD_LETTER,
    TXN_COMMIT
} txn_phase;

typedef struct txn_failed_record {
    size_t index; /* in the batch handed to apply() */
    char *reason;
} txn_failed_record;

/* A result kept by exactly_txn_send(): an index into the txn's own
 * results, valid until the next exactly_txn_start() or clear. */
typedef int txn_result;
#define TXN_NO_RESULT (-1)

struct exactly_txn {
    PGconn *conn;
    int timeout_ms;

    struct txn_pending {
        txn_phase phase;
        txn_result keep; /* where its result goes, or TXN_NO_RESULT */
        int prepare;     /* index in prep: this entry is its Parse */
        int executes;    /* index in prep: runs that prepared statement */
    } *pending;
    size_t n_pending;
    size_t cap_pending;

    /* Results kept for the caller, owned here: a pending statement holds
     * an index, never a pointer into its caller's frame. */
    PGresult **kept;
    size_t n_kept;
    size_t cap_kept;

    /* First error of the last sync (reset when a sync starts). */
    int failed;
    txn_phase err_phase;
    char sqlstate[6];
    char errmsg[1024];
    /* The COMMIT of the last sync was answered ROLLBACK: a statement of
     * the transaction failed where no sync reported it (a handler that
     * ignored an error of query()). */
    int commit_rolled_back;
    /* A statement could not be queued since the last sync (out of
     * memory, or libpq refused it): what refused it, else EXACTLY_OK.
     * Nothing is queued after it, so no statement runs without the ones
     * before it (a batch's writes never commit without its fence), and
     * the next sync reports it, after reading what was sent. */
    exactly_err send_rc;
    txn_phase send_phase;
    char send_errmsg[256];

    /* Called while waiting for results (NULL: none). */
    int (*idle)(void *arg);
    void *idle_arg;

    /* Set by the handler during apply(). */
    char handler_err[1024];
    int handler_err_set;
    txn_failed_record *fails;
    size_t n_fails;
    size_t cap_fails;
    int fails_oom;            /* a fail_record() could not be recorded */
    /* The first error a query() of the handler returned: the transaction
     * is aborted from there on, whatever apply() then says. */
    int query_failed;
    char query_sqlstate[6];
    char query_errmsg[1024];

    /* The outbox insert of host->emit (exactly_store_sql.emit), set by
     * the transaction's owner and kept across exactly_txn_start(); NULL:
     * emit is refused. Borrowed. */
    const char *emit_sql;

    /* A transaction sent whole, its sync too, whose answers are read
     * later (exactly_txn_sync_later): its entries, in order. At most
     * one; nothing it sent is kept. */
    struct txn_pending *held;
    size_t n_held;
    size_t cap_held;
    /* Called by exactly_txn_sync while a held transaction's answers are
     * unread, before anything else is read: the owner reads them
     * (exactly_txn_read_held), which come first on the wire. */
    void (*held_read)(void *arg);
    void *held_arg;

    /* Statements with parameters seen more than once are prepared on the
     * connection (named, parsed and planned once) and then only executed.
     * The cache belongs to one server session: a new connection or
     * backend empties it. Bounded: past TXN_MAX_PREPARED distinct
     * statements the others are sent unnamed, as before. */
    struct txn_prepared {
        char *sql;
        size_t hash;
        int seen;
        int state;     /* 0: not prepared, 1: Parse sent, 2: ready */
        int n_params;
        char name[32];
    } *prep;
    size_t n_prep;
    PGconn *prep_conn;
    int prep_pid;
};

#define TXN_MAX_PREPARED 64

/* Starts using conn for a new transaction: enters pipeline mode and forgets
 * every earlier error, failed record and kept result. */
exactly_err exactly_txn_start(exactly_txn *t, PGconn *conn, int timeout_ms);

/* Leaves pipeline mode; the connection is then usable for plain calls. */
void exactly_txn_finish(exactly_txn *t);

/* Frees what the txn holds (not the connection). NULL-safe. */
void exactly_txn_clear(exactly_txn *t);

/* Queues one statement. keep, when not NULL, receives the index under
 * which its result can be read after the next sync (exactly_txn_result);
 * the txn owns that result. */
exactly_err exactly_txn_send(exactly_txn *t, txn_phase phase, const char *sql,
                             int n_params, const char *const *params,
                             txn_result *keep);

/* exactly_txn_send() with each parameter's length and format (0 text, 1
 * binary), as PQsendQueryParams takes them; NULL lengths and formats: all
 * text. */
exactly_err exactly_txn_send_params(exactly_txn *t, txn_phase phase,
                                    const char *sql, int n_params,
                                    const char *const *params,
                                    const int *lengths, const int *formats,
                                    txn_result *keep);

/* The result kept under r, or NULL when none arrived (the statement failed
 * or its sync was not read). Owned by the txn. */
const PGresult *exactly_txn_result(const exactly_txn *t, txn_result r);

/* The same, handed over: the caller PQclear()s it. */
PGresult *exactly_txn_take(exactly_txn *t, txn_result r);

/*
 * Sends a sync point and reads every queued result. Returns EXACTLY_OK when
 * all succeeded, else the class of the first error (exactly_pg_classify),
 * with t->err_phase, t->sqlstate and t->errmsg set. A COMMIT answered with
 * ROLLBACK is an error of phase TXN_COMMIT (commit_rolled_back set,
 * EXACTLY_EDATABASE). When no answer comes within timeout_ms, or the
 * answers do not match what was sent, the connection is ended
 * (exactly_pg_abandon: its status turns CONNECTION_BAD, so no later
 * statement can read these results as its own) and the result is
 * EXACTLY_ERETRY with an empty sqlstate, as for a lost connection. A
 * statement that could not be queued since the last sync (send_rc) makes
 * it fail with that refusal's code (EXACTLY_ENOMEM, EXACTLY_ERETRY) and
 * phase once what was sent is read.
 */
exactly_err exactly_txn_sync(exactly_txn *t);

/*
 * Ends the transaction open on the connection, if any (ROLLBACK and its
 * sync), in pipeline mode or out of it, and leaves pipeline mode. Out of
 * it, a batch settled after another one's commit or rollback left it
 * (exactly_txn_finish): with no transaction open nothing is sent, else
 * pipeline mode is entered again for the ROLLBACK. Returns EXACTLY_OK, or
 * what exactly_txn_sync returns (the connection ended when it could not
 * be used: EXACTLY_ERETRY, no connection at all included).
 */
exactly_err exactly_txn_rollback(exactly_txn *t);

/*
 * Whether the last sync's failure is the server's answer that the
 * transaction it ended did not commit (a queue of one transaction, no
 * sync point inside): a statement before COMMIT was answered an error
 * (the transaction aborted there, whatever happened after, the
 * connection's end included), or COMMIT was answered ROLLBACK. An error
 * answering COMMIT itself is not such an answer (a COMMIT that landed can
 * still end in an error: a session terminated while it waited for a
 * synchronous standby), nor is no answer at all.
 */
int exactly_txn_rolled_back(const exactly_txn *t);

/* Queues a sync point without reading: what was queued before it commits
 * (or fails) on its own, before anything queued after it. */
exactly_err exactly_txn_push_sync(exactly_txn *t);

/*
 * Ends what is queued with a sync point and sends it without reading: its
 * answers are read by exactly_txn_read_held, after later statements may
 * have been queued behind it (pipelined: the server runs the next
 * transaction while the client reads this one's answers). Refused
 * (EXACTLY_EINVAL, nothing sent) when a statement keeps its result, a
 * statement could not be queued (send_rc) or a transaction is held
 * already; EXACTLY_ERETRY when it cannot be sent.
 */
exactly_err exactly_txn_sync_later(exactly_txn *t);

/* Reads the held transaction's answers, as exactly_txn_sync reads its
 * own (the same result and error fields); what is queued after it stays
 * queued. EXACTLY_ERETRY with an empty sqlstate when none is held (its
 * connection was given up on: what it did is not known). */
exactly_err exactly_txn_read_held(exactly_txn *t);

/* Sends everything queued so far without waiting for results; 0 or -1. */
int exactly_txn_flush(exactly_txn *t);

/* Forgets records failed by the handler (before a retry of apply()). */
void exactly_txn_forget_fails(exactly_txn *t);

#endif
