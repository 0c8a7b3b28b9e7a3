/*
 * exactly/exactly.h - the umbrella header a handler plugin includes: the
 * ABI (handler.h, error.h), and nothing else. The SQL helpers are not in
 * it: a plugin that uses them adds #include <exactly/sqlbuf.h>.
 *
 * Build against an installed exactly with
 *   cc -shared -fPIC $(pkg-config --cflags exactly) -o h.so h.c
 * or, without installing, -I/path/to/checkout/include (a bare -Iinclude
 * works only from the checkout's root).
 */
#ifndef EXACTLY_EXACTLY_H
#define EXACTLY_EXACTLY_H

#include "exactly/error.h"
#include "exactly/handler.h"

#endif
