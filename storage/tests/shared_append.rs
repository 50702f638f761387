//! The broker's zero-copy leader append writes exactly what the copying one writes.

use bytes::{Bytes, BytesMut};
use storage::batch::simple_batch;
use storage::{Log, LogConfig};

fn inputs() -> [Vec<u8>; 2] {
    // Client batches, each claiming base offset 0, as producers send them (one per request).
    [
        simple_batch(0, 3, 50, 1_700_000_000_000),
        simple_batch(0, 2, 70, 1_700_000_000_001),
    ]
}

#[test]
fn shared_append_equals_copying_append() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let mut la = Log::open(&a.path().join("t-0"), LogConfig::default(), 0, 0, true).unwrap();
    let mut lb = Log::open(&b.path().join("t-0"), LogConfig::default(), 0, 0, true).unwrap();
    for epoch in [0, 0, 3] {
        for input in inputs() {
            let ia = la
                .append_as_leader(BytesMut::from(&input[..]), epoch)
                .unwrap();
            let ib = lb
                .append_as_leader_shared(Bytes::from(input), epoch)
                .unwrap();
            assert_eq!(ia, ib);
        }
    }
    assert_eq!(la.log_end_offset(), 15);
    assert_eq!(la.leader_epoch_entries(), lb.leader_epoch_entries());
    let ra = la.read(0, 1 << 20, None, true).unwrap().records;
    let rb = lb.read(0, 1 << 20, None, true).unwrap().records;
    assert_eq!(ra, rb);
    // Every stored batch is valid: offsets assigned, CRC intact.
    for pos in storage::batch::split_batches(&rb).unwrap() {
        let bytes = &rb[pos.position..pos.position + pos.header.size()];
        storage::batch::validate_stored_batch(bytes).unwrap();
    }
    // A corrupt batch is refused by both, leaving the log untouched.
    let [mut bad, second] = inputs();
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    assert!(lb.append_as_leader_shared(Bytes::from(bad), 3).is_err());
    assert!(la
        .append_as_leader(BytesMut::from(&second[..1]), 3)
        .is_err());
    assert_eq!(lb.log_end_offset(), 15);
    assert_eq!(la.log_end_offset(), 15);
}

/// Kafka: LogValidator.getFirstBatchAndMaybeValidateNoMoreBatches. Two batches for one
/// partition in one produce request are INVALID_RECORD on both leader paths; a follower
/// appends the leader's batches several at a time.
#[test]
fn two_client_batches_in_one_append_are_invalid_record() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(&d.path().join("t-0"), LogConfig::default(), 0, 0, true).unwrap();
    let [a, b] = inputs();
    let two = [a.clone(), b].concat();
    let e = log
        .append_as_leader(BytesMut::from(&two[..]), 0)
        .unwrap_err();
    assert_eq!(e.kafka_error_code(), 87, "{e}");
    let e = log
        .append_as_leader_shared(Bytes::from(two), 0)
        .unwrap_err();
    assert_eq!(e.kafka_error_code(), 87, "{e}");
    assert_eq!(log.log_end_offset(), 0);
    log.append_as_leader(BytesMut::from(&a[..]), 0).unwrap();
    assert_eq!(log.log_end_offset(), 3);
}
