#include "fault.h"

#ifdef EXACTLY_FAULT_INJECTION

#include <stdlib.h>
#include <string.h>

#define MAX_SITES 16

static struct site {
    char name[32];
    long when;  /* fail on this evaluation */
    long seen;
} sites[MAX_SITES];
static int n_sites = -1;

/* Reads EXACTLY_FAULTS once: "site:N,site:N". */
static void load(void)
{
    const char *spec = getenv("EXACTLY_FAULTS");

    n_sites = 0;
    while (spec && *spec && n_sites < MAX_SITES) {
        const char *colon = strchr(spec, ':');
        const char *comma = strchr(spec, ',');
        size_t len;

        if (!colon || (comma && comma < colon))
            break;
        len = (size_t)(colon - spec);
        if (len < sizeof(sites[0].name)) {
            memcpy(sites[n_sites].name, spec, len);
            sites[n_sites].name[len] = '\0';
            sites[n_sites].when = strtol(colon + 1, NULL, 10);
            sites[n_sites].seen = 0;
            n_sites++;
        }
        spec = comma ? comma + 1 : NULL;
    }
}

void exactly_fault_reload(void)
{
    n_sites = -1;
}

int exactly_fault(const char *site)
{
    int i;

    if (n_sites < 0)
        load();
    for (i = 0; i < n_sites; i++)
        if (strcmp(sites[i].name, site) == 0)
            return ++sites[i].seen == sites[i].when;
    return 0;
}

#endif
