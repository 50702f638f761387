"""Produce N records with a stock Python client, then consume them back by assignment and check
that each came back once, in order per partition, with key, value, headers and timestamp intact.

usage: py_roundtrip.py <confluent|kafka-python> <bootstrap> <topic> <acks> <n>
Exit status 0 and a line "OK <n>" on success; a reason and status 1 otherwise.
"""
import sys
import time

client, bootstrap, topic, acks, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
BASE_TS = 1_700_000_000_000


def expect(i):
    return (f"k{i}".encode(), f"v{i}-{'x' * (i % 50)}".encode(), [("i", str(i).encode()), ("src", client.encode())], BASE_TS + i)


def fail(msg):
    print("FAIL", msg)
    sys.exit(1)


def check(got):
    """got: list of (partition, offset, key, value, headers, ts)."""
    if len(got) != n:
        fail(f"consumed {len(got)} records, expected {n}")
    seen = set()
    last = {}
    for (p, off, k, v, hdrs, ts) in got:
        i = int(k[1:].decode())
        if i in seen:
            fail(f"record {i} consumed twice")
        seen.add(i)
        ek, ev, eh, ets = expect(i)
        if (k, v) != (ek, ev):
            fail(f"record {i}: key/value {k!r}/{v!r} != {ek!r}/{ev!r}")
        if [(a, bytes(b)) for a, b in hdrs] != eh:
            fail(f"record {i}: headers {hdrs!r} != {eh!r}")
        if ts != ets:
            fail(f"record {i}: timestamp {ts} != {ets}")
        prev = last.get(p, (-1, -1))
        if off <= prev[0] or i <= prev[1]:
            fail(f"partition {p}: record {i} at offset {off} after record {prev[1]} at {prev[0]}")
        last[p] = (off, i)
    if seen != set(range(n)):
        fail("missing records")


if client == "confluent":
    from confluent_kafka import Consumer, Producer, TopicPartition

    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 5,
                  "enable.idempotence": False, "max.in.flight.requests.per.connection": 1})
    for i in range(n):
        k, v, h, ts = expect(i)
        while True:
            try:
                p.produce(topic, key=k, value=v, headers=h, timestamp=ts,
                          on_delivery=lambda e, m: e and errors.append(e))
                break
            except BufferError:
                p.poll(0.1)
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(60)
    if left or errors:
        fail(f"produce: {left} undelivered, errors {errors[:3]}")
    md = p.list_topics(topic, timeout=10).topics[topic]
    parts = sorted(md.partitions)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-assign-only",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, q, 0) for q in parts])
    got = []
    deadline = time.time() + 90
    while len(got) < n and time.time() < deadline:
        for m in c.consume(1000, 1.0):
            if m.error():
                fail(f"consume error {m.error()}")
            got.append((m.partition(), m.offset(), m.key(), m.value(), m.headers() or [], m.timestamp()[1]))
    c.close()
    check(got)
else:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    # kafka-python 3 turns idempotence on by default with acks=all (InitProducerId, then
    # sequence numbers per partition); with acks=1 it leaves it off.
    p = KafkaProducer(bootstrap_servers=bootstrap, acks=(acks if acks == "all" else int(acks)),
                      linger_ms=5, max_in_flight_requests_per_connection=1)
    futures = []
    for i in range(n):
        k, v, h, ts = expect(i)
        futures.append(p.send(topic, key=k, value=v, headers=h, timestamp_ms=ts))
    p.flush(60)
    for f in futures:
        f.get(timeout=60)
    parts = sorted(p.partitions_for(topic))
    p.close()
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=10000)
    c.assign([TopicPartition(topic, q) for q in parts])
    c.seek_to_beginning()
    got = []
    deadline = time.time() + 90
    while len(got) < n and time.time() < deadline:
        batch = c.poll(timeout_ms=1000, max_records=5000)
        for tp, msgs in batch.items():
            for m in msgs:
                got.append((tp.partition, m.offset, m.key, m.value, m.headers, m.timestamp))
    c.close()
    check(got)
print("OK", n)
