//! Property tests: random sequences of appends, truncations, retention, DeleteRecords, crashes
//! and reopens, checked against a simple model (the list of batches the log must hold).

use bytes::BytesMut;
use proptest::prelude::*;
use storage::batch::{self, BatchHeader};
use storage::{Log, LogConfig};

#[derive(Debug, Clone)]
enum Op {
    Append { count: i32, value_len: usize },
    Truncate { back: i64 },
    DeleteRecords { forward: i64 },
    Retention,
    Flush,
    Reopen { clean: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1i32..5, 0usize..400).prop_map(|(count, value_len)| Op::Append { count, value_len }),
        1 => (0i64..15).prop_map(|back| Op::Truncate { back }),
        1 => (0i64..6).prop_map(|forward| Op::DeleteRecords { forward }),
        1 => Just(Op::Retention),
        1 => Just(Op::Flush),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        segment_index_bytes: 256,
        index_interval_bytes: 300,
        retention_bytes: 6000,
        ..LogConfig::default()
    }
}

/// All batches from the log start, read through `read` (which goes through the index).
fn read_all(log: &Log) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let r = log.read(next, 1500, None, true).unwrap();
        assert!(
            !r.records.is_empty(),
            "no data at {next} below the log end offset"
        );
        for b in batch::split_batches(&r.records).unwrap() {
            let bytes = &r.records[b.position..b.position + b.header.size()];
            batch::validate_batch(bytes).unwrap();
            out.push((b.header.base_offset, b.header.last_offset()));
            next = b.header.next_offset();
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("p-0");
        let mut log = Log::open(&dir, config(), 0, 0, true).unwrap();
        // Model: the batches (base, last) at or above the log start offset.
        let mut model: Vec<(i64, i64)> = Vec::new();
        let mut leo = 0i64;
        for op in ops {
            match op {
                Op::Append { count, value_len } => {
                    let b = batch::simple_batch(0, count, value_len, 1_700_000_000_000);
                    let info = log.append_as_leader(BytesMut::from(&b[..]), 0).unwrap();
                    prop_assert_eq!(info.base_offset, leo);
                    model.push((leo, leo + count as i64 - 1));
                    leo += count as i64;
                }
                Op::Truncate { back } => {
                    let lso = log.log_start_offset();
                    let target = (leo - back).max(lso);
                    log.truncate_to(target).unwrap();
                    if target < leo {
                        // Whole batches go: the one holding `target` too.
                        let first_cut = model.iter().find(|b| b.1 >= target).map_or(target, |b| b.0);
                        model.retain(|&(_, last)| last < target);
                        leo = first_cut;
                        if leo < lso {
                            // Nothing readable is left: the log starts over at the target.
                            model.clear();
                            leo = target;
                        }
                    }
                }
                Op::DeleteRecords { forward } => {
                    let target = (log.log_start_offset() + forward).min(leo);
                    log.maybe_increment_log_start_offset(target, leo).unwrap();
                }
                Op::Retention => {
                    log.delete_old_segments(leo).unwrap();
                }
                Op::Flush => log.flush().unwrap(),
                Op::Reopen { clean } => {
                    let (rp, lso) = (log.recovery_point(), log.log_start_offset());
                    if clean { log.close().unwrap(); } else { drop(log); }
                    log = Log::open(&dir, config(), rp, lso, clean).unwrap();
                }
            }
            prop_assert_eq!(log.log_end_offset(), leo);
            let lso = log.log_start_offset();
            let expected: Vec<(i64, i64)> = model.iter().copied().filter(|&(_, last)| last >= lso).collect();
            let got = read_all(&log);
            // The first batch may start below the log start offset (DeleteRecords mid-segment).
            prop_assert_eq!(got, expected);
            prop_assert!(log.recovery_point() <= leo);
        }
        let _ = BatchHeader::parse(&batch::simple_batch(0, 1, 1, 1));
    }
}
