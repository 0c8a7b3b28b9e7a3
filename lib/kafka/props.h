/*
 * props.h - what librdkafka says of a property's scope.
 *
 * The top-level `kafka` section of a file is shared by the pipelines'
 * consumers and the relays' producers. librdkafka accepts a property of
 * the other kind on a configuration and then warns at every start that it
 * is ignored; those warnings tell a user nothing they can act on, so a
 * client built from the shared section leaves such properties out.
 */
#ifndef EXACTLY_KAFKA_PROPS_H
#define EXACTLY_KAFKA_PROPS_H

typedef enum exactly_kafka_scope {
    EXACTLY_KAFKA_CONSUMER_PROP, /* "C" in librdkafka's CONFIGURATION.md */
    EXACTLY_KAFKA_PRODUCER_PROP  /* "P" */
} exactly_kafka_scope;

/* Whether librdkafka (the version linked) marks property name as one of
 * scope only (a property of both kinds, "*", is neither). 0 for an
 * unknown name, or when librdkafka's table could not be read, so that
 * every property is then passed. Thread-safe. */
int exactly_kafka_prop_only(const char *name, exactly_kafka_scope scope);

#endif
