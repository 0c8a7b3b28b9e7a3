/*
 * supervisor_setup.c - what the supervisor does before and after its
 * children: refuse a pipeline or relay a worker would refuse (handler,
 * consumer and producer configuration) before any fork, take each
 * pipeline's lock file in a directory no other user can write, and print
 * the totals of every slot when run ends.
 */
#include "supervisor.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "plugin.h"
#include "producer.h"
#include "source.h"
#include "supervisor_internal.h"
#include "util/metrics.h"

long long sup_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sup_validate(const exactly_config *cfg, const cfg_pipeline *p)
{
    char err[2048], reset[16];
    exactly_plugin *pl = NULL;
    rd_kafka_conf_t *conf;

    if (exactly_plugin_load(cfg, p, &pl, err, sizeof(err)) != EXACTLY_OK) {
        exactly_log(EXACTLY_LOG_ERROR, "supervisor", "handler refused",
                    LOG_STR("pipeline", p->name), LOG_STR("error", err));
        return -1;
    }
    exactly_plugin_free(pl);
    conf = exactly_kafka_conf(cfg, p, reset, "exactly-supervisor", err,
                              sizeof(err));
    if (!conf) {
        exactly_log(EXACTLY_LOG_ERROR, "supervisor", "kafka configuration refused",
                    LOG_STR("pipeline", p->name), LOG_STR("error", err));
        return -1;
    }
    rd_kafka_conf_destroy(conf);
    return 0;
}

int sup_validate_relay(const exactly_config *cfg, const cfg_relay *r)
{
    char err[2048];
    rd_kafka_conf_t *conf =
        exactly_kafka_producer_conf(cfg, r, "exactly-supervisor", err,
                                    sizeof(err));

    if (!conf) {
        exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                    "relay's kafka configuration refused",
                    LOG_STR("relay", r->name), LOG_STR("error", err));
        return -1;
    }
    rd_kafka_conf_destroy(conf);
    return 0;
}

int sup_default_lock_dir(char *out, size_t size)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");

    if (xdg && xdg[0] == '/')
        snprintf(out, size, "%s/exactly", xdg);
    else
        snprintf(out, size, "/run/exactly");
    if (mkdir(out, 0700) != 0 && errno != EEXIST) {
        exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                    "cannot create lock directory; pass --lock-dir DIR or set "
                    "EXACTLY_LOCK_DIR",
                    LOG_STR("path", out), LOG_STR("error", strerror(errno)));
        return -1;
    }
    return 0;
}

/* Opens the lock directory after checking that nobody but this user (or
 * root) can plant or remove files in it. Returns the directory's
 * descriptor, or -1 (logged). */
static int open_lock_dir(const char *dir)
{
    struct stat st;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (dfd < 0) {
        exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                    "cannot open lock directory", LOG_STR("path", dir),
                    LOG_STR("error", strerror(errno)));
        return -1;
    }
    if (fstat(dfd, &st) != 0 || (st.st_uid != geteuid() && st.st_uid != 0) ||
        (st.st_mode & (S_IWGRP | S_IWOTH))) {
        char mode[8];
        snprintf(mode, sizeof(mode), "%03o", (unsigned)(st.st_mode & 07777));
        exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                    "lock directory is writable by other users or owned by "
                    "another: anyone could hold or replace the lock there; "
                    "use a directory of your own (--lock-dir)",
                    LOG_STR("path", dir), LOG_STR("mode", mode),
                    LOG_INT("owner", st.st_uid));
        close(dfd);
        return -1;
    }
    return dfd;
}

/* The lock file's name for a consumer group: "exactly-GROUP.lock" with
 * every byte outside [A-Za-z0-9._-] written as %XX, so that no group name
 * can leave the directory or name another file. -1 when it is too long. */
static int lock_name(const char *group, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    const unsigned char *c;

    n = (size_t)snprintf(out, size, "exactly-");
    for (c = (const unsigned char *)group; *c; c++) {
        if (n + 4 >= size)
            return -1;
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
            (*c >= '0' && *c <= '9') || *c == '.' || *c == '_' || *c == '-') {
            out[n++] = (char)*c;
        } else {
            out[n++] = '%';
            out[n++] = hex[*c >> 4];
            out[n++] = hex[*c & 15];
        }
    }
    if (n + sizeof(".lock") > size)
        return -1;
    memcpy(out + n, ".lock", sizeof(".lock"));
    return 0;
}

int sup_take_lock(const char *dir, const cfg_pipeline *p, int *fd_out)
{
    char path[4096 + 256 + 2], name[256], holder[64];
    struct stat st;
    ssize_t n;
    int dfd, fd;

    if (lock_name(p->group, name, sizeof(name)) != 0) {
        exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                    "consumer group name is too long for a lock file name",
                    LOG_STR("pipeline", p->name), LOG_STR("group", p->group));
        return -1;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    dfd = open_lock_dir(dir);
    if (dfd < 0)
        return -1;
    fd = openat(dfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    close(dfd);
    if (fd < 0 && errno == ELOOP) {
        exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                    "cannot open lock file: it is a symbolic link (refused)",
                    LOG_STR("path", path), LOG_STR("error", strerror(errno)));
        return -1;
    }
    if (fd < 0) {
        exactly_log(EXACTLY_LOG_ERROR, "supervisor", "cannot open lock file",
                    LOG_STR("path", path), LOG_STR("error", strerror(errno)));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_uid != geteuid() || st.st_nlink != 1 ||
        (st.st_mode & 077)) {
        char mode[8];
        snprintf(mode, sizeof(mode), "%03o", (unsigned)(st.st_mode & 07777));
        exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                    "lock file is not a private regular file of this user; "
                    "remove it",
                    LOG_STR("path", path), LOG_STR("mode", mode),
                    LOG_INT("owner", st.st_uid), LOG_INT("links", st.st_nlink));
        close(fd);
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        n = pread(fd, holder, sizeof(holder) - 1, 0);
        holder[n > 0 ? n : 0] = '\0';
        holder[strcspn(holder, "\n")] = '\0';
        exactly_log(EXACTLY_LOG_ERROR, "supervisor",
                    "pipeline is already run on this host by another "
                    "supervisor",
                    LOG_STR("pipeline", p->name), LOG_STR("group", p->group),
                    LOG_STR("supervisor_pid", holder[0] ? holder : "?"),
                    LOG_STR("lock_file", path));
        close(fd);
        return -1;
    }
    if (ftruncate(fd, 0) == 0) {
        n = snprintf(holder, sizeof(holder), "%d\n", (int)getpid());
        if (pwrite(fd, holder, (size_t)n, 0) != n)
            exactly_log(EXACTLY_LOG_WARN, "supervisor",
                        "cannot write pid into lock file", LOG_STR("path", path));
    }
    *fd_out = fd;
    return 0;
}

void sup_print_totals(const slot *slots, size_t n_slots)
{
    size_t i, j;

    for (i = 0; i < n_slots; i++) {
        uint64_t c = 0, a = 0, d = 0, dl = 0, sk = 0, bc = 0, rb = 0, f = 0,
                 rt = 0, rs = 0;
        int n = 0, seen = 0;
        if (slots[i].r && slots[i].m) {
            const metrics_relay *mr = &slots[i].m->relay;
            rs = __atomic_load_n(&slots[i].m->restarts, __ATOMIC_RELAXED);
            printf("relay %s total (%" PRIu64 " restart%s): published %" PRIu64
                   ", dead-lettered %" PRIu64 ", sent again %" PRIu64 "\n",
                   slots[i].r->name, rs, rs == 1 ? "" : "s",
                   (uint64_t)__atomic_load_n(&mr->published, __ATOMIC_RELAXED),
                   (uint64_t)__atomic_load_n(&mr->dead_lettered,
                                             __ATOMIC_RELAXED),
                   (uint64_t)__atomic_load_n(&mr->resent, __ATOMIC_RELAXED));
            continue;
        }
        for (j = 0; j < i && !seen; j++)
            seen = slots[j].p == slots[i].p;
        if (seen || !slots[i].m)
            continue;
        for (j = i; j < n_slots; j++) {
            const metrics_slot *m = slots[j].m;
            if (slots[j].p != slots[i].p || !m)
                continue;
            n++;
            c += __atomic_load_n(&m->consumed, __ATOMIC_RELAXED);
            a += __atomic_load_n(&m->applied, __ATOMIC_RELAXED);
            d += __atomic_load_n(&m->deduplicated, __ATOMIC_RELAXED);
            dl += __atomic_load_n(&m->dead_lettered, __ATOMIC_RELAXED);
            sk += __atomic_load_n(&m->skipped_missing, __ATOMIC_RELAXED);
            bc += __atomic_load_n(&m->batches_committed, __ATOMIC_RELAXED);
            rb += __atomic_load_n(&m->batches_rolled_back, __ATOMIC_RELAXED);
            f += __atomic_load_n(&m->batches_fenced, __ATOMIC_RELAXED);
            rt += __atomic_load_n(&m->retries_total, __ATOMIC_RELAXED);
            rs += __atomic_load_n(&m->restarts, __ATOMIC_RELAXED);
        }
        printf("pipeline %s total (%d worker%s, %" PRIu64 " restart%s): "
               "consumed %" PRIu64 ", applied %" PRIu64 ", deduplicated %"
               PRIu64 ", dead-lettered %" PRIu64 ", skipped (no row) %" PRIu64
               "; batches committed %" PRIu64 ", rolled back %" PRIu64
               ", fenced %" PRIu64 "; retries %" PRIu64 "\n",
               slots[i].p->name, n, n == 1 ? "" : "s", rs, rs == 1 ? "" : "s",
               c, a, d, dl, sk, bc, rb, f, rt);
    }
    fflush(stdout);
}
