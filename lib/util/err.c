#include "err.h"

const char *exactly_err_name(exactly_err e)
{
    switch (e) {
#define EXACTLY_ERR_NAME(name, value, text)                                    \
    case EXACTLY_##name:                                                       \
        return "EXACTLY_" #name;
        EXACTLY_ERR_MAP(EXACTLY_ERR_NAME)
#undef EXACTLY_ERR_NAME
    }
    return "EXACTLY_UNKNOWN";
}

const char *exactly_strerror(exactly_err e)
{
    switch (e) {
#define EXACTLY_ERR_TEXT(name, value, text)                                    \
    case EXACTLY_##name:                                                       \
        return text;
        EXACTLY_ERR_MAP(EXACTLY_ERR_TEXT)
#undef EXACTLY_ERR_TEXT
    }
    return "unknown error";
}
