/* exactly/exactly.h - the umbrella header a handler plugin includes. */
#ifndef EXACTLY_EXACTLY_H
#define EXACTLY_EXACTLY_H

#include "exactly/error.h"
#include "exactly/handler.h"

#endif
