/*
 * trace.h - W3C trace context (https://www.w3.org/TR/trace-context/) on
 * Kafka messages: the trace-id of a `traceparent` header, so that the log
 * lines about a message's batch and its dead letter name the trace.
 *
 * A header that is not a valid traceparent is ignored: it never fails a
 * message or a batch.
 */
#ifndef EXACTLY_TRACE_H
#define EXACTLY_TRACE_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

/* 32 lower-case hex digits and a NUL. */
#define EXACTLY_TRACE_ID_SIZE 33

/*
 * Parses a traceparent value (version-traceid-parentid-flags). Returns 0
 * and writes the trace-id to out, or -1 (out is "") when v is not valid:
 * a version other than two lower-case hex digits or "ff", an id that is
 * not lower-case hex of its length or is all zeros, flags that are not two
 * hex digits, a version 00 value that is not exactly 55 bytes, or a later
 * version whose extra fields do not start with '-'.
 */
int exactly_trace_parse(const void *v, size_t len,
                        char out[EXACTLY_TRACE_ID_SIZE]);

/* The trace-id of m's `traceparent` header: 0 when m has exactly one and
 * it is valid, else -1 (out is ""). */
int exactly_trace_of_message(const rd_kafka_message_t *m,
                             char out[EXACTLY_TRACE_ID_SIZE]);

#endif
