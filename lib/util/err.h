/* err.h - names and messages of exactly_err codes. */
#ifndef EXACTLY_ERR_H
#define EXACTLY_ERR_H

#include "exactly/error.h"

const char *exactly_err_name(exactly_err e);
const char *exactly_strerror(exactly_err e);

#endif
