#include "util/host_id.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *exactly_host_id_problem(const char *value)
{
    size_t i, n = value ? strlen(value) : 0;

    if (n == 0)
        return "EXACTLY_HOST_ID is empty";
    if (n > EXACTLY_HOST_ID_MAX)
        return "EXACTLY_HOST_ID is longer than 63 bytes";
    for (i = 0; i < n; i++) {
        char c = value[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return "EXACTLY_HOST_ID may hold only letters, digits, '.', '_' "
                   "and '-'";
    }
    return NULL;
}

int exactly_host_id(char *out, size_t size)
{
    const char *env = getenv("EXACTLY_HOST_ID");
    const char *problem;
    char host[256];

    if (env) {
        problem = exactly_host_id_problem(env);
        snprintf(out, size, "%s", problem ? problem : env);
        return problem ? -1 : 0;
    }
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "unknown");
    host[sizeof(host) - 1] = '\0';
    snprintf(out, size, "%.*s", EXACTLY_HOST_ID_MAX, host);
    return 0;
}
