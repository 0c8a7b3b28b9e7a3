#!/usr/bin/python3
"""The benchmark's Python peer: an exactly-once Kafka -> PostgreSQL consumer
of the same design as exactly's built-in upsert, written the way a careful
Python programmer would with confluent-kafka and psycopg2.

Per batch (up to --batch messages, or what arrived within --max-wait-ms):
one transaction runs the lookup (id = ANY), the upsert over unnest() and the
offsets of every partition in the batch; after COMMIT the Kafka offsets are
committed asynchronously. On assignment each partition starts at the offset
the database holds, so the database, not Kafka, decides what was applied.

    peer.py BOOTSTRAP TOPIC GROUP CONNINFO [--batch N] [--max-wait-ms N]
            [--exit-idle-ms N] [--fetch-wait-ms N]

It keeps its offsets in peer_offsets (created if missing). With
--exit-idle-ms it exits once nothing arrived for that long after the first
message and prints 'elapsed S' (first message to last commit).
"""
import argparse
import signal
import sys
import time

import psycopg2
from confluent_kafka import Consumer, TopicPartition

SETUP = """
CREATE TABLE IF NOT EXISTS peer_offsets (
    grp text, topic text, partition int, next_offset bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (grp, topic, partition))
"""
LOOKUP = "SELECT id, name, balance FROM accounts WHERE id = ANY(%s)"
UPSERT = """
INSERT INTO account_view AS t (id, name, balance)
SELECT * FROM unnest(%s::bigint[], %s::text[], %s::numeric[])
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,
    balance = EXCLUDED.balance
WHERE (t.name, t.balance) IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.balance)
"""
OFFSETS = """
INSERT INTO peer_offsets AS o (grp, topic, partition, next_offset)
SELECT %s, %s, * FROM unnest(%s::int[], %s::bigint[])
ON CONFLICT (grp, topic, partition) DO UPDATE
SET next_offset = EXCLUDED.next_offset, updated_at = clock_timestamp()
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("group")
    ap.add_argument("conninfo")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--max-wait-ms", type=int, default=100)
    ap.add_argument("--exit-idle-ms", type=int, default=0)
    ap.add_argument("--fetch-wait-ms", type=int, default=500)
    a = ap.parse_args()

    db = psycopg2.connect(a.conninfo)
    with db, db.cursor() as cur:
        cur.execute(SETUP)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))

    def on_assign(consumer, parts):
        # The database says where each partition resumes.
        with db, db.cursor() as cur:
            for p in parts:
                cur.execute(
                    "INSERT INTO peer_offsets (grp, topic, partition, "
                    "next_offset) VALUES (%s, %s, %s, 0) ON CONFLICT DO NOTHING",
                    (a.group, p.topic, p.partition))
                cur.execute(
                    "SELECT next_offset FROM peer_offsets WHERE grp = %s AND "
                    "topic = %s AND partition = %s",
                    (a.group, p.topic, p.partition))
                p.offset = cur.fetchone()[0]
        consumer.assign(parts)

    c = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "queued.min.messages": 100000,
        "fetch.wait.max.ms": a.fetch_wait_ms,
    })
    c.subscribe([a.topic], on_assign=on_assign)
    wait = a.max_wait_ms / 1000.0
    first = last_commit = last_msg = None
    while not stop:
        msgs = c.consume(num_messages=a.batch, timeout=wait)
        now = time.monotonic()
        msgs = [m for m in msgs if m.error() is None]
        if not msgs:
            if (a.exit_idle_ms and first is not None and
                    (now - last_msg) * 1000 >= a.exit_idle_ms):
                break
            continue
        if first is None:
            first = now
        last_msg = now
        ids = list({int(m.key()) for m in msgs})
        ends = {}
        for m in msgs:
            ends[m.partition()] = m.offset() + 1
        with db, db.cursor() as cur:
            cur.execute(LOOKUP, (ids,))
            rows = cur.fetchall()
            if rows:
                cur.execute(UPSERT, ([r[0] for r in rows], [r[1] for r in rows],
                                     [r[2] for r in rows]))
            cur.execute(OFFSETS, (a.group, a.topic, list(ends),
                                  list(ends.values())))
        c.commit(offsets=[TopicPartition(a.topic, p, o)
                          for p, o in ends.items()], asynchronous=True)
        last_commit = time.monotonic()
    c.close()
    db.close()
    if first is not None:
        print("elapsed %.6f" % (last_commit - first))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
