/*
 * metrics_render.h - the supervisor's side of the metrics slots
 * (util/metrics.h): /metrics, /readyz and who owns a partition now.
 */
#ifndef EXACTLY_METRICS_RENDER_H
#define EXACTLY_METRICS_RENDER_H

#include "util/metrics.h"

/* Renders every slot as Prometheus text into a malloc'd string: each
 * series once (see util/metrics.h). */
char *metrics_render(const metrics_slot *slots, size_t n);

/* 1 when every slot the supervisor means to run (metrics_slot.meant) is
 * up and ready, and there is at least one: a worker or relay waiting for
 * its restart counts as not ready, one finished on purpose not at all. */
int metrics_ready(const metrics_slot *slots, size_t n);

/* Whether entry pp of slot i is its partition's current owner (see the
 * top of util/metrics.h). */
int metrics_is_owner(const metrics_slot *slots, size_t n, size_t i,
                     const metrics_partition *pp);

#endif
