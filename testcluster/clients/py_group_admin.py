"""Group administration with stock admin clients: committing offsets for unknown partitions,
deleting a group's offsets (OffsetDelete) and deleting groups (DeleteGroups).

usage: py_group_admin.py <bootstrap> <topic> <other-topic>
(<topic> has 4 partitions, <other-topic> 1.)

Checked:
  - confluent-kafka's alter_consumer_group_offsets (OffsetCommit) for partition 99 of the
    4-partition topic and for a topic that does not exist: UNKNOWN_TOPIC_OR_PARTITION for those
    partitions, the others committed;
  - while a consumer subscribed to <topic> is in the group: delete_consumer_groups is
    NON_EMPTY_GROUP; kafka-python's delete_group_offsets (OffsetDelete) refuses <topic>
    (GROUP_SUBSCRIBED_TO_TOPIC) and deletes <other-topic>'s offset;
  - deleting a group that never existed is GROUP_ID_NOT_FOUND;
  - once the consumer left, delete_consumer_groups succeeds, the offsets are gone, and the
    group's tombstone (GroupMetadataKey, null value) is in its __consumer_offsets partition.

Exit status 0 and a line "OK" on success; "FAIL <reason>" and status 1 otherwise.
"""
import sys
import time

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
import kafka.admin
import kafka.errors
from kafka import TopicPartition as KTP

bootstrap, topic, other = sys.argv[1], sys.argv[2], sys.argv[3]
GROUP = "admin-group"


def fail(msg):
    print("FAIL", msg, flush=True)
    sys.exit(1)


def error_code(exc):
    err = exc.args[0] if exc.args else None
    return err.code() if isinstance(err, KafkaError) else None


admin = AdminClient({"bootstrap.servers": bootstrap})

# 1. OffsetCommit through the admin client, with an unknown partition and an unknown topic.
want = {(topic, 0): 10, (topic, 1): 11, (topic, 99): 5, ("no-such-topic", 0): 5, (other, 0): 7}
req = ConsumerGroupTopicPartitions(GROUP, [TopicPartition(t, p, o) for (t, p), o in want.items()])
# On a new cluster __consumer_offsets is created by the first FindCoordinator, and
# librdkafka's admin requests give up looking for the coordinator after two retries: wait
# for the group's coordinator first with a consumer's OffsetFetch (which keeps retrying).
probe = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False})
deadline = time.monotonic() + 90
while True:
    try:
        probe.committed([TopicPartition(topic, 0)], timeout=5)
        break
    except KafkaException as e:
        if time.monotonic() > deadline:
            fail(f"no coordinator for {GROUP}: {e}")
probe.close()
errors = {}
try:
    res = admin.alter_consumer_group_offsets([req])[GROUP].result(60)
    errors = {(tp.topic, tp.partition): tp.error.code() if tp.error else None for tp in res.topic_partitions}
except KafkaException as e:
    fail(f"alter_consumer_group_offsets raised {e}")
unknown = KafkaError.UNKNOWN_TOPIC_OR_PART
expected = {(topic, 0): None, (topic, 1): None, (topic, 99): unknown, ("no-such-topic", 0): unknown, (other, 0): None}
if errors != expected:
    fail(f"alter_consumer_group_offsets errors {errors}, expected {expected}")


def committed():
    res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(GROUP)])[GROUP].result(30)
    return {(tp.topic, tp.partition): tp.offset for tp in res.topic_partitions if tp.offset >= 0}


got = committed()
if got != {(topic, 0): 10, (topic, 1): 11, (other, 0): 7}:
    fail(f"committed offsets {got}")

# 2. A consumer subscribed to <topic> joins the group.
c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False})
assigned = []
c.subscribe([topic], on_assign=lambda _c, ps: assigned.extend(ps))
deadline = time.monotonic() + 60
while not assigned and time.monotonic() < deadline:
    c.poll(0.1)
if not assigned:
    fail("the consumer got no assignment")

try:
    admin.delete_consumer_groups([GROUP])[GROUP].result(30)
    fail("deleting a group with a member succeeded")
except KafkaException as e:
    if error_code(e) != KafkaError.NON_EMPTY_GROUP:
        fail(f"deleting a group with a member: {e}, expected NON_EMPTY_GROUP")

kadm = kafka.admin.KafkaAdminClient(bootstrap_servers=bootstrap)
res = kadm.delete_group_offsets(GROUP, [KTP(topic, 0), KTP(other, 0)])
res = {(tp.topic, tp.partition): err for tp, err in res.items()}
if res.get((topic, 0)) is not kafka.errors.GroupSubscribedToTopicError or res.get((other, 0)) is not kafka.errors.NoError:
    fail(f"delete_group_offsets: {res}")
got = committed()
if got != {(topic, 0): 10, (topic, 1): 11}:
    fail(f"after OffsetDelete, committed offsets {got}")

try:
    admin.delete_consumer_groups(["never-existed"])["never-existed"].result(30)
    fail("deleting a group that never existed succeeded")
except KafkaException as e:
    if error_code(e) != KafkaError.GROUP_ID_NOT_FOUND:
        fail(f"deleting a group that never existed: {e}, expected GROUP_ID_NOT_FOUND")

# 3. The consumer leaves: the group is Empty and can be deleted, offsets and all.
c.close()
admin.delete_consumer_groups([GROUP])[GROUP].result(30)
got = committed()
if got:
    fail(f"after DeleteGroups, committed offsets {got}")


def java_hash(s):
    """Java's String.hashCode, for an ASCII string."""
    h = 0
    for ch in s:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


partition = (java_hash(GROUP) & 0x7FFFFFFF) % 50
group_key = b"\x00\x02" + len(GROUP).to_bytes(2, "big") + GROUP.encode()
reader = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "group.id": "admin-reader",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    }
)
found = False
deadline = time.monotonic() + 30
while not found and time.monotonic() < deadline:
    reader.assign([TopicPartition("__consumer_offsets", partition, 0)])
    while time.monotonic() < deadline:
        m = reader.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                break
            fail(f"reading __consumer_offsets: {m.error()}")
        if m.key() == group_key and m.value() is None:
            found = True
            break
reader.close()
if not found:
    fail(f"no tombstone for {GROUP} in __consumer_offsets-{partition}")
print("OK", flush=True)
