/*
 * host_id.h - the identity of this host in owner strings
 * (HOST:PID:WORKER in the offset rows) and in group.instance.id: the
 * environment variable EXACTLY_HOST_ID when set, else the hostname.
 *
 * Hosts that share a hostname (containers, cloned machines) must set
 * EXACTLY_HOST_ID to something unique per host: two supervisors with the
 * same identity would join one consumer group with the same static member
 * ids and fence each other out.
 */
#ifndef EXACTLY_HOST_ID_H
#define EXACTLY_HOST_ID_H

#include <stddef.h>

/* The longest identity accepted. */
#define EXACTLY_HOST_ID_MAX 63

/* Whether value is a valid EXACTLY_HOST_ID: 1 to EXACTLY_HOST_ID_MAX bytes
 * of [A-Za-z0-9._-] (no ':', which separates an owner string's fields, and
 * nothing Kafka refuses in a group.instance.id). Returns NULL when it is,
 * else the reason (a static string). */
const char *exactly_host_id_problem(const char *value);

/* Writes the identity into out (size > EXACTLY_HOST_ID_MAX). Returns 0, or
 * -1 when EXACTLY_HOST_ID is set and invalid (out then holds the reason).
 * Without EXACTLY_HOST_ID, the hostname ("unknown" if it cannot be read),
 * truncated to fit. */
int exactly_host_id(char *out, size_t size);

#endif
