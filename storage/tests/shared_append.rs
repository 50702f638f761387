//! The broker's zero-copy leader append writes exactly what the copying one writes.

use bytes::{Bytes, BytesMut};
use storage::batch::simple_batch;
use storage::{Log, LogConfig};

fn input() -> Vec<u8> {
    // Two client batches, both claiming base offset 0, as producers send them.
    let mut v = simple_batch(0, 3, 50, 1_700_000_000_000);
    v.extend(simple_batch(0, 2, 70, 1_700_000_000_001));
    v
}

#[test]
fn shared_append_equals_copying_append() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let mut la = Log::open(&a.path().join("t-0"), LogConfig::default(), 0, 0, true).unwrap();
    let mut lb = Log::open(&b.path().join("t-0"), LogConfig::default(), 0, 0, true).unwrap();
    for epoch in [0, 0, 3] {
        let ia = la
            .append_as_leader(BytesMut::from(&input()[..]), epoch)
            .unwrap();
        let ib = lb
            .append_as_leader_shared(Bytes::from(input()), epoch)
            .unwrap();
        assert_eq!(ia, ib);
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
    let mut bad = input();
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    assert!(lb.append_as_leader_shared(Bytes::from(bad), 3).is_err());
    assert_eq!(lb.log_end_offset(), 15);
}
