"""Consume a whole topic by assignment and check it against the acked file written by
py_acked_producer.py.

usage: py_verify_acked.py <bootstrap> <topic> <acked-file> [--report-loss] [--allow-duplicates]
                          [--allow-reorder] [--list-duplicates]
Checks: every record appears at most once in the log, each partition's records are in
increasing order, and every acknowledged record is present. With --report-loss, lost
acknowledged records are counted and reported instead of failing (acks=1 loses them in Kafka
too). With --allow-duplicates and --allow-reorder, second copies and records stored after a
higher-numbered one of their partition are counted and reported (the first few reorders with
their offsets) instead of failing: a producer without idempotence makes both, whatever the
broker. Prints "OK acked=<n> consumed=<m> lost=<k> duplicates=<d> reordered=<r>".
With --list-duplicates, second copies are allowed and each is printed after the OK line as
"duplicate: record <i> at offsets (<p>, <o1>) and (<p>, <o2>)", for the caller to explain.
With --skip-unkeyed, records without a key (a test's own probes, written beside the
producer's numbered records) are passed over.
"""
import sys
import time

from confluent_kafka import Consumer, TopicPartition

bootstrap, topic, acked_file = sys.argv[1:4]
report_loss = "--report-loss" in sys.argv
# A producer retrying without idempotence may write a record twice (Kafka's semantics too);
# with this flag such copies are counted and reported instead of failing.
list_dups = "--list-duplicates" in sys.argv
allow_dups = "--allow-duplicates" in sys.argv or list_dups
dup_lines = []
# librdkafka limits requests in flight per connection, not per partition
# (confluentinc/librdkafka#1969): when a partition's leader moves, a batch still in flight to
# the old leader can fail and be retried after newer batches went to the new one. Without
# idempotence nothing on the broker can restore the producer's order.
allow_reorder = "--allow-reorder" in sys.argv
skip_unkeyed = "--skip-unkeyed" in sys.argv
dups = 0
reordered = []
acked = set(int(l) for l in open(acked_file) if l.strip())
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "verify-assign-only",
              "enable.auto.commit": False, "enable.partition.eof": True})
md = c.list_topics(topic, timeout=20).topics[topic]
parts = sorted(md.partitions)
c.assign([TopicPartition(topic, p, 0) for p in parts])
eof = set()
seen = {}
last = {}
deadline = time.time() + 120
while len(eof) < len(parts) and time.time() < deadline:
    for m in c.consume(1000, 1.0):
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                eof.add(m.partition())
                continue
            print("FAIL consume error", m.error())
            sys.exit(1)
        eof.discard(m.partition())
        if m.key() is None and skip_unkeyed:
            continue
        i = int(m.key().decode())
        if i in seen:
            if allow_dups:
                dups += 1
                if list_dups:
                    dup_lines.append(f"duplicate: record {i} at offsets {seen[i]} and "
                                     f"{(m.partition(), m.offset())}")
                continue
            print(f"FAIL record {i} at offsets {seen[i]} and {(m.partition(), m.offset())}")
            sys.exit(1)
        seen[i] = (m.partition(), m.offset())
        if last.get(m.partition(), -1) >= i:
            prev = last[m.partition()]
            where = (f"partition {m.partition()}: record {i} (offset {m.offset()}, "
                     f"{'acked' if i in acked else 'not acked'}) after {prev} "
                     f"(offset {seen[prev][1]})")
            if not allow_reorder:
                print(f"FAIL {where}")
                sys.exit(1)
            reordered.append(where)
            continue
        last[m.partition()] = i
c.close()
if len(eof) < len(parts):
    print("FAIL did not reach the end of every partition")
    sys.exit(1)
lost = sorted(acked - set(seen))
if lost and not report_loss:
    print(f"FAIL {len(lost)} acknowledged records missing, first {lost[:10]}")
    sys.exit(1)
print(f"OK acked={len(acked)} consumed={len(seen)} lost={len(lost)} duplicates={dups} "
      f"reordered={len(reordered)}")
for where in reordered[:5]:
    print(f"reordered: {where}")
for line in dup_lines:
    print(line)
