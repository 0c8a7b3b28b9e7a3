/*
 * fault.h - failures injected on purpose, for the tests of error paths.
 *
 * EXACTLY_FAULT("site") is 0 in every build but one configured with
 * -DEXACTLY_FAULT_INJECTION=ON (the sanitizer build of scripts/test.sh).
 * There it is 1 on the Nth evaluation of that site when the environment
 * holds EXACTLY_FAULTS=site:N[,site:N...], once, so that a test can make
 * one allocation or call fail and watch the code under test recover.
 * Sites: batch_build (batch.c), fail_record (txn.c), commit_segment
 * (attempt.c: a statement that fails before a batch's COMMIT), relay_acked
 * (relay.c: a stall of 10 s between the delivery reports and the mark,
 * long enough for a test to kill the relay there), and, in a relay with
 * mode: transactional, relay_txn_sent (a 6 s stall inside the open
 * transaction, the batch acknowledged, before the position record) and
 * relay_txn_committed (a 6 s stall between the Kafka commit and the
 * mark); relay_outcome_collect (relay_outbox.c: the arrays of a batch's
 * outcome cannot be built, as when out of memory); relay_ask_unanswered (relay_produce.c: the relay's question
 * about a topic librdkafka calls unknown gets no answer); txn_send_fence
 * (txn_send.c: a batch's fence that cannot be queued, as when out of
 * memory); kafka_seek (source.c: a seek the consumer refuses). Test-only: a build without fault injection ignores
 * EXACTLY_FAULTS.
 *
 * exactly_fault_reload() forgets what EXACTLY_FAULTS said and what each
 * site has counted, so the next evaluation reads it again: a test that
 * drives the code in its own process (tests/support/inproc_worker.h) arms
 * a fault at the point it chose, counted from there.
 */
#ifndef EXACTLY_FAULT_H
#define EXACTLY_FAULT_H

#ifdef EXACTLY_FAULT_INJECTION
int exactly_fault(const char *site);
void exactly_fault_reload(void);
#define EXACTLY_FAULT(site) exactly_fault(site)
#else
#define EXACTLY_FAULT(site) 0
#endif

#endif
