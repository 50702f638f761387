"""Static group membership (KIP-345) with confluent-kafka (librdkafka) consumers.

usage: py_static_members.py <bootstrap> <topic> <group> <partitions>

Two consumers with group.instance.id static-1 and static-2 share <topic>. static-2 is closed
(a static member sends no LeaveGroup) and a new consumer with the same instance id starts
within the session timeout (30 s). Checked, from the clients' side:
  - the new static-2 gets exactly the old static-2's partitions, in well under the session
    timeout (it does not wait for the old member to expire);
  - its JoinGroup answer carries the same generation as before (librdkafka's cgrp debug log
    "JoinGroup response: GenerationId N"): no rebalance happened;
  - static-1 sees no revoke and no new assignment.
Then a third consumer starts with static-1's instance id: the running static-1 is fenced
(FENCED_INSTANCE_ID: librdkafka 2.x logs "consumer fenced by newer instance" and drops its
assignment) and the newcomer gets static-1's partitions.

Exit status 0 and a line "OK" on success; "FAIL <reason>" and status 1 otherwise.
"""
import logging
import re
import sys
import time

from confluent_kafka import Consumer, KafkaError

bootstrap, topic, group, partitions = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
SESSION_MS = 30000
T0 = time.monotonic()


def fail(msg):
    print("FAIL", msg, flush=True)
    sys.exit(1)


def log(msg):
    print(f"[{time.monotonic() - T0:7.3f}s] {msg}", flush=True)


class Member:
    """One consumer, with what it saw: assignments, revokes, JoinGroup generations, errors."""

    def __init__(self, name, instance):
        self.name = name
        self.events = []  # (time, "assign"|"revoke", [partitions])
        self.generations = []  # generation of each JoinGroup answer
        self.errors = []
        self.assigned = set()
        self.log_tail = []  # the client's last debug lines, for a failure message
        self.saw_fenced = False  # the client logged that the coordinator fenced it
        handler = logging.Handler()
        handler.emit = self._log
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        self.c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "group.instance.id": instance,
                "session.timeout.ms": SESSION_MS,
                "heartbeat.interval.ms": 500,
                "partition.assignment.strategy": "range",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "debug": "cgrp",
                "error_cb": self._error,
            },
            logger=logger,
        )
        self.c.subscribe([topic], on_assign=self._assign, on_revoke=self._revoke)

    def _log(self, record):
        msg = record.getMessage()
        self.log_tail = (self.log_tail + [msg])[-30:]
        # librdkafka 2.x: "consumer fenced by newer instance" (an older one raised a fatal
        # error instead, seen in `errors`).
        if "fenced by newer instance" in msg:
            self.saw_fenced = True
        m = re.search(r"JoinGroup response: GenerationId (-?\d+)", record.getMessage())
        if m:
            self.generations.append(int(m.group(1)))

    def _error(self, err):
        self.errors.append(err)

    def _assign(self, _c, parts):
        ps = sorted(p.partition for p in parts)
        self.events.append((time.monotonic(), "assign", ps))
        self.assigned = set(ps)
        log(f"{self.name}: assigned {ps}")

    def _revoke(self, _c, parts):
        ps = sorted(p.partition for p in parts)
        self.events.append((time.monotonic(), "revoke", ps))
        self.assigned = set()
        log(f"{self.name}: revoked {ps}")

    def poll(self):
        try:
            self.c.poll(0.05)
        except Exception as e:  # a fatal error surfaces here too
            self.errors.append(e)

    def fenced(self):
        return self.saw_fenced or any(
            getattr(e, "code", lambda: None)() in (KafkaError.FENCED_INSTANCE_ID, KafkaError._FENCED)
            or "fenced" in str(e).lower()
            for e in self.errors
        )


def poll_until(members, cond, limit, what):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for m in members:
            m.poll()
        if cond():
            return
    fail(f"timed out after {limit}s waiting for {what}")


s1 = Member("static-1", "static-1")
s2 = Member("static-2", "static-2")
everything = set(range(partitions))
poll_until(
    [s1, s2],
    lambda: s1.assigned and s2.assigned and s1.assigned | s2.assigned == everything
    and not s1.assigned & s2.assigned,
    90,
    "both static members to share every partition",
)
generation = s2.generations[-1]
s1_events = len(s1.events)
old_s2 = set(s2.assigned)
log(f"stable at generation {generation}: static-1 {sorted(s1.assigned)}, static-2 {sorted(old_s2)}")

s2.c.close()
log("static-2 closed (no LeaveGroup for a static member); starting its replacement")
restart = time.monotonic()
s2b = Member("static-2 (restarted)", "static-2")
poll_until([s1, s2b], lambda: s2b.assigned, 20, "the restarted static-2 to get partitions")
took = time.monotonic() - restart
log(f"restarted static-2 assigned {sorted(s2b.assigned)} after {took:.2f}s")
if s2b.assigned != old_s2:
    fail(f"restarted static-2 got {sorted(s2b.assigned)}, before it had {sorted(old_s2)}")
if took > SESSION_MS / 1000 / 3:
    fail(f"the restarted static member waited {took:.1f}s (session timeout {SESSION_MS} ms)")
if s2b.generations != [generation]:
    fail(f"restarted static-2's JoinGroup generations {s2b.generations}, expected [{generation}]")
# static-1 must see nothing: keep both polling for a few heartbeat intervals.
watch_until = time.monotonic() + 3
while time.monotonic() < watch_until:
    s1.poll()
    s2b.poll()
if len(s1.events) != s1_events or s1.generations[-1] != generation:
    fail(f"static-1 saw a rebalance: events {s1.events[s1_events:]}, generations {s1.generations}")
if s2b.events[1:] or s2b.generations != [generation]:
    fail(f"restarted static-2 rebalanced again: {s2b.events}, generations {s2b.generations}")

# A duplicate static-1: the running one is fenced, the newcomer takes its partitions.
old_s1 = set(s1.assigned)
dup = Member("static-1 (duplicate)", "static-1")
deadline = time.monotonic() + 30
while not (s1.fenced() and dup.assigned) and time.monotonic() < deadline:
    for m in (s1, s2b, dup):
        m.poll()
if not (s1.fenced() and dup.assigned):
    tail = "\n  ".join(s1.log_tail)
    fail(f"static-1 not fenced by its duplicate: errors {s1.errors}, events {s1.events}; log:\n  {tail}")
log(f"static-1 fenced; duplicate assigned {sorted(dup.assigned)}")
if dup.assigned != old_s1:
    fail(f"duplicate static-1 got {sorted(dup.assigned)}, static-1 had {sorted(old_s1)}")
for m in (dup, s2b):
    m.c.close()
print("OK", flush=True)
