"""Consume a topic as a member of a consumer group until a stop file appears; append the key of
every record received to an output file (one per line; a rebalance may deliver a record twice).

usage: py_group_consumer.py <bootstrap> <topic> <group> <stop-file> <out-file>
Offsets are committed automatically; the consumer starts from the earliest offset when its
group has none.
"""
import os
import sys

from confluent_kafka import Consumer

bootstrap, topic, group, stop_file, out_file = sys.argv[1:6]
out = open(out_file, "w", buffering=1)
c = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": True,
    "auto.commit.interval.ms": 500,
    "session.timeout.ms": 10000,
    "topic.metadata.refresh.interval.ms": 1000,
})
c.subscribe([topic])
errors = 0
while not os.path.exists(stop_file):
    for m in c.consume(500, 0.5):
        if m.error():
            errors += 1
            continue
        if m.key() is not None:
            out.write(m.key().decode() + "\n")
c.close()
out.close()
print(f"consumer errors {errors}", flush=True)
