/*
 * broken_nosym.c - a loader test: a valid shared object that lacks the
 * entry symbol. It exports a near miss instead, so the test proves the
 * loader looks the exact name up rather than accepting anything exported.
 */
#include "exactly/exactly.h"

EXACTLY_EXPORT const char *exactly_handler_entry_missing(void);

EXACTLY_EXPORT const char *exactly_handler_entry_missing(void)
{
    return "broken_nosym: this object has no " EXACTLY_ENTRY_SYMBOL;
}
