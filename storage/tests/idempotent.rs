//! Idempotent producers at the log level: a retried batch is not written twice, on the leader
//! that wrote it, on a follower that copied it and became leader, and after a reopen.

use bytes::Bytes;
use storage::batch::{build_batch_with, NewRecord};
use storage::{Log, LogConfig};

fn batch(pid: i64, epoch: i16, seq: i32, n: i32) -> Bytes {
    let recs: Vec<NewRecord> = (0..n)
        .map(|i| NewRecord {
            offset_delta: i,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(b"v"),
        })
        .collect();
    Bytes::from(build_batch_with(0, -1, &recs, pid, epoch, seq, 0))
}

#[test]
fn retries_are_answered_with_the_first_offsets_everywhere() {
    let d = tempfile::tempdir().unwrap();
    let mut leader = Log::open(&d.path().join("t-0"), LogConfig::default(), 0, 0, true).unwrap();
    let a = leader
        .append_as_leader_shared(batch(5, 0, 0, 3), 0)
        .unwrap();
    let b = leader
        .append_as_leader_shared(batch(5, 0, 3, 2), 0)
        .unwrap();
    assert_eq!((a.base_offset, b.base_offset, b.last_offset), (0, 3, 4));
    let retry = leader
        .append_as_leader_shared(batch(5, 0, 0, 3), 0)
        .unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.base_offset, retry.last_offset), (0, 2));
    assert_eq!(leader.log_end_offset(), 5, "nothing written for the retry");
    // A gap is refused with OUT_OF_ORDER_SEQUENCE_NUMBER, an old epoch with INVALID_PRODUCER_EPOCH.
    let gap = leader
        .append_as_leader_shared(batch(5, 0, 9, 1), 0)
        .unwrap_err();
    assert_eq!(gap.kafka_error_code(), 45);
    leader
        .append_as_leader_shared(batch(5, 1, 0, 1), 0)
        .unwrap();
    let old = leader
        .append_as_leader_shared(batch(5, 0, 5, 1), 0)
        .unwrap_err();
    assert_eq!(old.kafka_error_code(), 47);
    assert_eq!(leader.log_end_offset(), 6);

    // A follower copies the leader's log, then leads: it knows the producer too.
    let stored = leader.read(0, 1 << 20, None, true).unwrap().records;
    let f = tempfile::tempdir().unwrap();
    let mut follower = Log::open(&f.path().join("t-0"), LogConfig::default(), 0, 0, true).unwrap();
    follower.append_as_follower(stored).unwrap();
    let retry = follower
        .append_as_leader_shared(batch(5, 1, 0, 1), 1)
        .unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, 5);

    // After a restart (clean or not) the state is rebuilt from the log.
    leader.flush().unwrap();
    drop(leader);
    let mut reopened = Log::open(&d.path().join("t-0"), LogConfig::default(), 0, 0, false).unwrap();
    let retry = reopened
        .append_as_leader_shared(batch(5, 1, 0, 1), 2)
        .unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, 5);
    let next = reopened
        .append_as_leader_shared(batch(5, 1, 1, 1), 2)
        .unwrap();
    assert_eq!((next.base_offset, next.duplicate), (6, false));

    // Truncating the batch away forgets it: the retry is written again.
    reopened.truncate_to(5).unwrap();
    let again = reopened
        .append_as_leader_shared(batch(5, 1, 0, 1), 2)
        .unwrap();
    assert_eq!((again.base_offset, again.duplicate), (5, false));

    // Two batches of one producer in one request are refused (Produce v3+ allows one).
    let mut two = batch(6, 0, 0, 1).to_vec();
    two.extend_from_slice(&batch(6, 0, 1, 1));
    let err = reopened
        .append_as_leader_shared(Bytes::from(two), 2)
        .unwrap_err();
    assert_eq!(err.kafka_error_code(), 87);
}
