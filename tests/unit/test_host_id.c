/* EXACTLY_HOST_ID: what is accepted, what is refused and why, and the
 * hostname without it. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testkit.h"
#include "util/host_id.h"

int main(void)
{
    static const char *const good[] = {"a", "host-b", "web_3.eu-west-1",
        "ABC", "0123456789012345678901234567890123456789012345678901234567890"
        "12"};
    static const char *const bad[][2] = {
        {"", "empty"},
        {"host:1", "only letters"},
        {"two words", "only letters"},
        {"slash/x", "only letters"},
        {"caf\xc3\xa9", "only letters"},
        {"0123456789012345678901234567890123456789012345678901234567890123",
         "longer than 63"},
    };
    char out[128], host[256];
    size_t i;

    for (i = 0; i < sizeof good / sizeof *good; i++) {
        TK_CHECK(exactly_host_id_problem(good[i]) == NULL, "'%s' refused: %s",
                 good[i], exactly_host_id_problem(good[i]));
        setenv("EXACTLY_HOST_ID", good[i], 1);
        TK_CHECK(exactly_host_id(out, sizeof out) == 0, "'%s': %s", good[i],
                 out);
        TK_CHECK(strcmp(out, good[i]) == 0, "got '%s' for '%s'", out, good[i]);
    }
    for (i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *why = exactly_host_id_problem(bad[i][0]);
        TK_CHECK(why != NULL, "'%s' accepted", bad[i][0]);
        TK_CHECK(strstr(why, bad[i][1]) != NULL, "'%s': reason '%s' lacks "
                 "'%s'", bad[i][0], why, bad[i][1]);
        setenv("EXACTLY_HOST_ID", bad[i][0], 1);
        TK_CHECK(exactly_host_id(out, sizeof out) == -1, "'%s' accepted",
                 bad[i][0]);
        TK_CHECK(strcmp(out, why) == 0, "reason '%s', want '%s'", out, why);
    }
    unsetenv("EXACTLY_HOST_ID");
    TK_CHECK(exactly_host_id(out, sizeof out) == 0, "hostname: %s", out);
    TK_CHECK(gethostname(host, sizeof host) == 0, "gethostname");
    host[63] = '\0';
    TK_CHECK(strcmp(out, host) == 0, "got '%s', hostname '%s'", out, host);
    tk_note("host identity without EXACTLY_HOST_ID: %s", out);
    return 0;
}
