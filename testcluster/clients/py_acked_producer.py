"""Produce numbered records with confluent-kafka until a stop file appears; append the number of
every record the broker acknowledged to an "acked" file (one per line).

usage: py_acked_producer.py <bootstrap> <topic> <acks> <stop-file> <acked-file> [--idempotent]
                            [--ack-log <file>]
Records: key = value = str(i), i = 0, 1, 2, ...; retries on. Idempotence is off unless
--idempotent is given (then librdkafka asks for a producer id and numbers its batches, and the
broker drops retried copies). With --ack-log, each acknowledgement is also noted there as
"<partition> <wall-clock ms>" (when its partition last took a write, for availability checks).
"""
import os
import sys
import time

from confluent_kafka import Producer

bootstrap, topic, acks, stop_file, acked_file = sys.argv[1:6]
idempotent = "--idempotent" in sys.argv[6:]
out = open(acked_file, "w", buffering=1)
ack_log = None
if "--ack-log" in sys.argv[6:]:
    ack_log = open(sys.argv[sys.argv.index("--ack-log") + 1], "w", buffering=1)
errors = [0]


def on_delivery(err, msg):
    if err is None:
        out.write(msg.key().decode() + "\n")
        if ack_log is not None:
            ack_log.write(f"{msg.partition()} {int(time.time() * 1000)}\n")
    else:
        errors[0] += 1


p = Producer({
    "bootstrap.servers": bootstrap,
    "acks": acks,
    "enable.idempotence": idempotent,
    "retries": 1000000,
    "retry.backoff.ms": 100,
    "message.timeout.ms": 60000,
    "request.timeout.ms": 5000,
    # Without idempotence one request in flight per connection keeps retries in order while
    # the partition's leader stays where it is (not across a leader move: librdkafka#1969);
    # with it librdkafka allows up to 5 and the broker's sequence checks keep the order.
    "max.in.flight.requests.per.connection": 5 if idempotent else 1,
    "linger.ms": 5,
    "topic.metadata.refresh.interval.ms": 1000,
    # librdkafka's idempotence log (producer ids, epoch bumps, drains) on stderr; the test keeps
    # it to explain a failure.
    **({"debug": "eos"} if idempotent else {}),
})
i = 0
while not os.path.exists(stop_file):
    try:
        p.produce(topic, key=str(i), value=str(i), on_delivery=on_delivery)
        i += 1
    except BufferError:
        pass
    p.poll(0.002)
p.flush(90)
out.close()
print(f"produced {i} acked-errors {errors[0]}", flush=True)
