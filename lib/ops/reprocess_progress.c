/*
 * reprocess_progress.c - what `exactly reprocess` prints (see
 * reprocess_internal.h): progress on stderr, the plan of a dry run and the
 * run's end on stdout.
 */
#include "reprocess_internal.h"

#include <inttypes.h>
#include <stdio.h>

#include "clock.h"
#include "log.h"

/* "M:SS" or "H:MM:SS" for secs seconds, rounded up. */
static void format_eta(char *buf, size_t size, double secs)
{
    long long left = (long long)(secs + 0.999);

    if (left >= 3600)
        snprintf(buf, size, "%lld:%02lld:%02lld", left / 3600, left / 60 % 60,
                 left % 60);
    else
        snprintf(buf, size, "%lld:%02lld", left / 60, left % 60);
}

/* Offsets of the run in this session (*total), and how many of them are
 * behind the current position (*at). */
static void position(const run *r, int64_t *total, int64_t *at)
{
    const span *sp = &r->spans[r->cur < r->n_spans ? r->cur : r->n_spans - 1];

    if (r->multi) {
        *total = r->total;
        *at = r->behind;
        if (r->cur < r->n_spans)
            *at += r->pt.next_offset - sp->from;
    } else {
        *total = sp->to + 1 - sp->from;
        *at = r->pt.next_offset - sp->from;
    }
}

/*
 * Prints where the run is: the offset (of a run over a topic: the
 * partitions done and the offsets behind it, of all its partitions), the
 * share of the range, the rate measured over this session and the time
 * left. The time left is the remaining offsets over the rate that will
 * apply from here: the measured one, or --rate when that is lower (the
 * first batches of a limited run come faster than the limit allows the
 * rest to). "--:--" until a rate has been measured.
 */
void reprocess_progress(run *r, const exactly_reprocess_opts *o, int final)
{
    long long now = exactly_now_ms();
    double secs = (double)(now - r->started_ms) / 1000.0;
    uint64_t done = r->eng.st.consumed;
    double rate = secs > 0 ? (double)done / secs : 0;
    double pace = o->rate > 0 && o->rate < rate ? o->rate : rate;
    const span *sp = &r->spans[r->cur < r->n_spans ? r->cur : r->n_spans - 1];
    int64_t total, at, remaining;
    int share;
    char eta[32];

    if (o->quiet)
        return;
    if (!final && now - r->last_progress_ms < (o->tty ? 250 : 5000))
        return;
    r->last_progress_ms = now;
    position(r, &total, &at);
    remaining = total - at;
    share = total > 0 ? (int)(100 * at / total) : 100;
    if (remaining <= 0)
        snprintf(eta, sizeof(eta), "0:00");
    else if (pace <= 0)
        snprintf(eta, sizeof(eta), "--:--");
    else
        format_eta(eta, sizeof(eta), (double)remaining / pace);
    if (r->multi)
        fprintf(stderr,
                "%spartitions %zu/%zu done  offsets %" PRId64 " of %" PRId64
                "  %3d%%  %.0f msg/s  ETA %s%s",
                o->tty ? "\r" : "", r->n_done, r->n_spans, at, total, share,
                rate, eta, o->tty && !final ? "   " : "\n");
    else
        fprintf(stderr,
                "%soffset %" PRId64 " of %" PRId64 "..%" PRId64 "  %3d%%  %.0f msg/s"
                "  ETA %s%s",
                o->tty ? "\r" : "", r->pt.next_offset, sp->from, sp->to, share,
                rate, eta, o->tty && !final ? "   " : "\n");
    fflush(stderr);
}

void reprocess_progress_span_done(run *r, const exactly_reprocess_opts *o,
                                  const span *sp, uint64_t applied)
{
    if (o->quiet || !r->multi)
        return;
    fprintf(stderr,
            "%spartition %d done: offsets %" PRId64 "..%" PRId64
            ", applied %" PRIu64 " (%zu/%zu partitions)\n",
            o->tty ? "\r\033[K" : "", (int)sp->partition, sp->from, sp->to,
            applied, r->n_done, r->n_spans);
    fflush(stderr);
}

void reprocess_print_plan(const run *r, const exactly_reprocess_opts *o)
{
    int batch = o->batch > 0 ? o->batch : r->p->batch.max_messages;
    int64_t total = 0;
    size_t i;

    for (i = 0; i < r->n_spans; i++) {
        const span *sp = &r->spans[i];
        total += sp->to - sp->from + 1;
        if (r->multi || o->from_time || o->to_time)
            printf("partition %d: offsets %" PRId64 "..%" PRId64
                   " (%" PRId64 " offsets)%s\n",
                   (int)sp->partition, sp->from, sp->to,
                   sp->to - sp->from + 1,
                   sp->from != sp->asked_from || sp->to != sp->asked_to
                       ? ", within the partition's offsets"
                       : "");
    }
    if (r->n_spans == 1)
        printf("dry run: would apply handler %s again to offsets %" PRId64
               "..%" PRId64 " (%" PRId64 " offsets) of %s [%d] for pipeline "
               "%s, in batches of %d; the pipeline's stored offsets stay as "
               "they are\n",
               r->eng.plugin->label, r->spans[0].from, r->spans[0].to, total,
               o->topic, (int)r->spans[0].partition, r->p->name, batch);
    else
        printf("dry run: would apply handler %s again to %" PRId64
               " offsets of %zu partitions of %s for pipeline %s, in "
               "batches of %d; the pipeline's stored offsets stay as they "
               "are\n",
               r->eng.plugin->label, total, r->n_spans, o->topic, r->p->name,
               batch);
}

void reprocess_print_dead_letters(const run *r, uint64_t n)
{
    exactly_log(EXACTLY_LOG_WARN, "reprocess", "run finished with dead letters",
                LOG_INT("run", r->id), LOG_UINT("dead_lettered", n),
                LOG_STR("dead_letter_pipeline", r->dl_key));
    printf("%" PRIu64 " message(s) of run %" PRId64 " failed and were "
           "dead-lettered, not applied; the run is finished.\n"
           "see them with:   exactly dlq list -c %s --pipeline %s --run %"
           PRId64 "\n"
           "once the cause is fixed, apply them with:\n"
           "                 exactly dlq replay -c %s --pipeline %s --run %"
           PRId64 " --all\n",
           n, r->id, r->cfg->path, r->p->name, r->id, r->cfg->path,
           r->p->name, r->id);
}

/*
 * The run's position left the log: a resume would ask Kafka for the same
 * offsets and fail the same way, so none is offered. Says which offsets
 * left and, per partition not done, the new run that applies what is
 * still there (a run over a topic stops at the partition that failed and
 * would stop there again).
 */
static void print_gone(const run *r)
{
    const span *g = &r->spans[r->gone_span];
    size_t i;

    if (r->gone_low > g->next)
        printf("offsets %" PRId64 "..%" PRId64 " of %s [%d] are no longer "
               "in the log (low watermark %" PRId64 "): retention deleted "
               "them before the run applied them; no resume can apply "
               "them\n",
               g->next, (r->gone_low <= g->to ? r->gone_low : g->to + 1) - 1,
               g->topic, (int)g->partition, r->gone_low);
    else
        printf("offset %" PRId64 " of %s [%d] is no longer in the log "
               "(retention); no resume can apply it: see the partition's "
               "low watermark with `exactly offsets -c %s`\n",
               g->next, g->topic, (int)g->partition, r->cfg->path);
    for (i = 0; i < r->n_spans; i++) {
        const span *sp = &r->spans[i];
        int64_t from = sp->next;

        if (sp->done)
            continue;
        if (i == r->gone_span && r->gone_low < 0) {
            printf("apply what is left with a new run: exactly reprocess -c "
                   "%s --pipeline %s --topic %s --partition %d --from "
                   "<low watermark> --to %" PRId64 "\n",
                   r->cfg->path, r->p->name, sp->topic, (int)sp->partition,
                   sp->to);
            continue;
        }
        if (i == r->gone_span && r->gone_low > from)
            from = r->gone_low;
        if (from > sp->to) {
            printf("nothing of %s [%d] offsets %" PRId64 "..%" PRId64
                   " is left in the log to apply\n",
                   sp->topic, (int)sp->partition, sp->from, sp->to);
            continue;
        }
        printf("apply what is left with a new run: exactly reprocess -c %s "
               "--pipeline %s --topic %s --partition %d --from %" PRId64
               " --to %" PRId64 "\n",
               r->cfg->path, r->p->name, sp->topic, (int)sp->partition, from,
               sp->to);
    }
}

int reprocess_print_end(const run *r, const char *status, int code)
{
    double secs = (double)(exactly_now_ms() - r->started_ms) / 1000.0;
    /* What the rows hold when they could be read: the engine counts
     * applications a failover may since have taken back. */
    uint64_t applied = r->applied_read ? (uint64_t)r->applied_rows
                                       : r->eng.st.applied;
    /* The run's as the table holds them, not this session's: an earlier
     * session of a resumed run may have written them. Unread, at least
     * this session's. */
    uint64_t dead = r->dead_read ? (uint64_t)r->dead_letters
                                 : r->eng.st.dead_lettered;

    if (!r->multi)
        printf("run %" PRId64 ": %s; applied %" PRIu64 " messages of %s [%d] "
               "offsets %" PRId64 "..%" PRId64 " (now at %" PRId64 "), dead-lettered "
               "%" PRIu64 ", in %.1f s\n",
               r->id, status, applied, r->spans[0].topic,
               (int)r->spans[0].partition, r->spans[0].from, r->spans[0].to,
               r->spans[0].next, dead, secs);
    else
        printf("run %" PRId64 ": %s; applied %" PRIu64 " messages of %s, "
               "%zu of %zu partitions done, dead-lettered %" PRIu64
               ", in %.1f s\n",
               r->id, status, applied, r->spans[0].topic, r->n_done,
               r->n_spans, dead, secs);
    if (code != 0 && r->gone)
        print_gone(r);
    else if (code != 0)
        printf("resume with: exactly reprocess -c %s --pipeline %s --resume %" PRId64 "\n",
               r->cfg->path, r->p->name, r->id);
    if (code == 0 && dead > 0) {
        /* Finished: resuming would do nothing. What was not applied is
         * in the dead letters, under the run's own name. */
        reprocess_print_dead_letters(r, dead);
        return EXACTLY_REPROCESS_DEAD_LETTERED;
    }
    return code;
}
