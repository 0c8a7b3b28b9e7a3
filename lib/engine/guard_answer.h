/*
 * guard_answer.h - the crash guard's answer as a typed value. The
 * framework schema's attempt() function answers "mode:n" (lib/pg/store_migrate.c):
 * the mode the attempt runs in and the deaths counted at its start. It is
 * read here, once; every decision is taken on the result, none on text.
 */
#ifndef EXACTLY_GUARD_ANSWER_H
#define EXACTLY_GUARD_ANSWER_H

typedef enum guard_mode {
    GUARD_BATCH,       /* the whole batch */
    GUARD_SINGLE,      /* one record at a time (deaths on this batch) */
    GUARD_DEAD_LETTER, /* the one record is dead-lettered, not applied */
    GUARD_FENCED,      /* the offset row has another owner */
    GUARD_UNKNOWN      /* anything else: not an answer attempt() gives */
} guard_mode;

typedef struct guard_answer {
    guard_mode mode;
    long deaths;       /* the n of "mode:n"; 0 when unknown */
} guard_answer;

/* Reads text ("batch:0", "single:2", ...; NULL: no answer) into *out.
 * Returns 0, or -1 when it is no answer attempt() gives (out->mode is
 * GUARD_UNKNOWN). */
int guard_answer_parse(const char *text, guard_answer *out);

/* "batch", "single", "dead_letter", "fenced" or "unknown": for logs. */
const char *guard_mode_name(guard_mode m);

#endif
