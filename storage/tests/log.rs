//! Behaviour of one partition log: append, read, roll, truncate, retention, compaction,
//! ListOffsets and the leader epoch cache, against a temp dir.

use bytes::{Bytes, BytesMut};
use storage::batch::{self, BatchHeader, NewRecord};
use storage::{CleanupPolicy, Log, LogConfig, TimestampType};

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        segment_index_bytes: 4096,
        index_interval_bytes: 1024,
        ..LogConfig::default()
    }
}

fn open(dir: &std::path::Path, config: LogConfig) -> Log {
    Log::open(&dir.join("t-0"), config, 0, 0, true).unwrap()
}

fn batch(count: i32, value_len: usize, ts: i64) -> BytesMut {
    BytesMut::from(&batch::simple_batch(0, count, value_len, ts)[..])
}

/// Walks the batches in `bytes`, checking each is whole and valid.
fn headers(bytes: &[u8]) -> Vec<BatchHeader> {
    batch::split_batches(bytes)
        .unwrap()
        .into_iter()
        .map(|b| {
            batch::validate_stored_batch(&bytes[b.position..b.position + b.header.size()]).unwrap();
            b.header
        })
        .collect()
}

// Kafka: UnifiedLog.appendAsLeader assigns offsets from the log end offset.
#[test]
fn leader_append_assigns_offsets_and_epoch_and_reads_back_whole_batches() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path(), small_config());
    let a = log.append_as_leader(batch(3, 10, 1000), 5).unwrap();
    assert_eq!((a.base_offset, a.last_offset, a.record_count), (0, 2, 3));
    let b = log.append_as_leader(batch(2, 10, 2000), 5).unwrap();
    assert_eq!(
        (b.base_offset, b.last_offset, b.max_timestamp),
        (3, 4, 2000)
    );
    assert_eq!(log.log_end_offset(), 5);
    let r = log.read(0, 1 << 20, None, false).unwrap();
    let hs = headers(&r.records);
    assert_eq!(hs.len(), 2);
    assert_eq!(hs[1].base_offset, 3);
    assert_eq!(hs[1].partition_leader_epoch, 5);
    // A read from inside the second batch returns the whole batch.
    let r = log.read(4, 1 << 20, None, false).unwrap();
    assert_eq!(headers(&r.records)[0].base_offset, 3);
    // max_offset (high watermark) stops before batches at or past it.
    let r = log.read(0, 1 << 20, Some(3), false).unwrap();
    assert_eq!(headers(&r.records).len(), 1);
    // Reading at the log end offset is empty, past it is OFFSET_OUT_OF_RANGE.
    assert!(log.read(5, 100, None, false).unwrap().records.is_empty());
    assert_eq!(
        log.read(6, 100, None, false)
            .unwrap_err()
            .kafka_error_code(),
        1
    );
    assert_eq!(log.end_offset_for_epoch(5), (5, 5));
}

#[test]
fn max_bytes_cuts_at_whole_batches_and_min_one_message_returns_one() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path(), small_config());
    for _ in 0..4 {
        log.append_as_leader(batch(1, 500, 1), 0).unwrap();
    }
    let one = headers(&log.read(0, 1 << 20, None, false).unwrap().records)[0].size();
    let r = log.read(0, one * 2 + 10, None, false).unwrap();
    assert_eq!(r.records.len(), one * 2);
    assert!(log.read(0, 10, None, false).unwrap().records.is_empty());
    assert_eq!(log.read(0, 10, None, true).unwrap().records.len(), one);
}

/// Every validation failure maps to Kafka's code and leaves the log untouched.
#[test]
fn bad_input_is_rejected_with_kafka_codes_and_log_untouched() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(
        d.path(),
        LogConfig {
            max_message_bytes: 2000,
            ..small_config()
        },
    );
    log.append_as_leader(batch(1, 10, 1), 0).unwrap();
    let size_before = log.size();
    // CRC flip -> CORRUPT_MESSAGE
    let mut bad = batch(2, 10, 1);
    let n = bad.len();
    bad[n - 3] ^= 1;
    let mut input = batch(1, 10, 1);
    input.extend_from_slice(&bad); // the good first batch must not be written either
    assert_eq!(
        log.append_as_leader(input, 0)
            .unwrap_err()
            .kafka_error_code(),
        2
    );
    // Truncated bytes -> CORRUPT_MESSAGE
    let mut cut = batch(2, 10, 1);
    cut.truncate(cut.len() - 1);
    assert_eq!(
        log.append_as_leader(cut, 0).unwrap_err().kafka_error_code(),
        2
    );
    // Wrong magic -> CORRUPT_MESSAGE
    let mut magic = batch(1, 10, 1);
    magic[16] = 1;
    assert_eq!(
        log.append_as_leader(magic, 0)
            .unwrap_err()
            .kafka_error_code(),
        2
    );
    // Too big -> MESSAGE_TOO_LARGE
    assert_eq!(
        log.append_as_leader(batch(1, 3000, 1), 0)
            .unwrap_err()
            .kafka_error_code(),
        10
    );
    // Bigger than a segment -> RECORD_LIST_TOO_LARGE
    let mut many = BytesMut::new();
    for _ in 0..40 {
        many.extend_from_slice(&batch(1, 1900, 1));
    }
    assert_eq!(
        log.append_as_leader(many, 0)
            .unwrap_err()
            .kafka_error_code(),
        18
    );
    // Inner offsets not 0,1,2 -> INVALID_RECORD
    let recs = [
        NewRecord {
            offset_delta: 0,
            timestamp: 1,
            key: None,
            value: Some(b"a"),
        },
        NewRecord {
            offset_delta: 2,
            timestamp: 1,
            key: None,
            value: Some(b"b"),
        },
    ];
    let mut gap = batch::build_batch(0, -1, &recs);
    gap[57..61].copy_from_slice(&3i32.to_be_bytes());
    let crc = batch::compute_crc(&gap);
    gap[17..21].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(
        log.append_as_leader(BytesMut::from(&gap[..]), 0)
            .unwrap_err()
            .kafka_error_code(),
        87
    );
    // Empty input -> INVALID_RECORD
    assert_eq!(
        log.append_as_leader(BytesMut::new(), 0)
            .unwrap_err()
            .kafka_error_code(),
        87
    );
    assert_eq!(log.size(), size_before);
    assert_eq!(log.log_end_offset(), 1);
}

#[test]
fn log_append_time_is_stamped_and_crc_stays_valid() {
    let d = tempfile::tempdir().unwrap();
    let config = LogConfig {
        message_timestamp_type: TimestampType::LogAppendTime,
        ..small_config()
    };
    let mut log = open(d.path(), config);
    let info = log.append_as_leader(batch(2, 10, 5), 0).unwrap();
    assert!(info.log_append_time > 1_600_000_000_000);
    let r = log.read(0, 1 << 20, None, false).unwrap();
    let h = headers(&r.records)[0];
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, info.log_append_time);
}

// Kafka: a follower keeps the leader's offsets and refuses offsets below its log end.
#[test]
fn follower_append_keeps_offsets_and_refuses_going_back() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path(), small_config());
    let mut b = batch::simple_batch(10, 2, 10, 1);
    batch::set_offset_and_epoch(&mut b, 10, 3);
    let info = log.append_as_follower(Bytes::from(b.clone())).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (10, 11));
    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(log.latest_epoch(), Some(3));
    let e = log.append_as_follower(Bytes::from(b)).unwrap_err();
    assert!(matches!(e, storage::Error::UnexpectedOffset(_)));
}

#[test]
fn segments_roll_on_segment_bytes_and_reads_cross_segments() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(
        d.path(),
        LogConfig {
            segment_bytes: 8 * 1024,
            ..small_config()
        },
    );
    for _ in 0..40 {
        log.append_as_leader(batch(2, 400, 1), 0).unwrap();
    }
    assert!(log.number_of_segments() >= 4);
    let bases = log.segment_base_offsets();
    let dir = d.path().join("t-0");
    for b in &bases {
        assert!(dir.join(format!("{b:020}.log")).exists());
    }
    // Rolled segments have trimmed indexes; the active one is preallocated.
    let first_index = std::fs::metadata(dir.join(format!("{:020}.index", bases[0])))
        .unwrap()
        .len();
    assert!(first_index < 4096 && first_index.is_multiple_of(8));
    let active_index = std::fs::metadata(dir.join(format!("{:020}.index", bases.last().unwrap())))
        .unwrap()
        .len();
    assert_eq!(active_index, 4096);
    let mut next = 0;
    while next < log.log_end_offset() {
        let r = log.read(next, 3000, None, true).unwrap();
        let hs = headers(&r.records);
        assert_eq!(hs[0].base_offset, next);
        next = hs.last().unwrap().next_offset();
    }
    assert_eq!(next, 80);
    // Reopen cleanly and check everything again.
    log.close().unwrap();
    let log = Log::open(
        &dir,
        LogConfig {
            segment_bytes: 8 * 1024,
            ..small_config()
        },
        80,
        0,
        true,
    )
    .unwrap();
    assert_eq!(log.log_end_offset(), 80);
    assert_eq!(log.segment_base_offsets(), bases);
    assert_eq!(
        headers(&log.read(41, 1 << 20, None, false).unwrap().records)[0].last_offset(),
        41
    );
}

#[test]
fn segment_ms_rolls_a_non_empty_segment() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(
        d.path(),
        LogConfig {
            segment_ms: 1000,
            ..small_config()
        },
    );
    log.append_as_leader(batch(1, 10, 5000), 0).unwrap();
    log.append_as_leader(batch(1, 10, 5999), 0).unwrap();
    assert_eq!(
        log.segment_base_offsets(),
        vec![0],
        "999 ms after the first batch"
    );
    log.append_as_leader(batch(1, 10, 6000), 0).unwrap();
    assert_eq!(
        log.segment_base_offsets(),
        vec![0, 2],
        "segment.ms after the first batch"
    );
}

// Kafka: UnifiedLog.truncateTo and LeaderEpochFileCache.truncateFromEnd.
// Kafka: LogSegment.recover assigns the leader epoch of every recovered batch.
#[test]
fn recovery_restores_leader_epochs_of_batches_whose_checkpoint_entry_was_lost() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("t-0");
    {
        let mut log = open(d.path(), small_config());
        log.append_as_leader(batch(3, 10, 1), 2).unwrap();
        log.append_as_leader(batch(2, 10, 1), 4).unwrap();
        log.flush().unwrap();
        assert_eq!(log.leader_epoch_entries(), vec![(2, 0), (4, 3)]);
    }
    // The checkpoint lost its last entry (it was not yet durable when the machine stopped).
    std::fs::write(dir.join("leader-epoch-checkpoint"), "0\n1\n2 0\n").unwrap();
    let log = Log::open(&dir, small_config(), 0, 0, false).unwrap();
    assert_eq!(log.leader_epoch_entries(), vec![(2, 0), (4, 3)]);
    drop(log);
    let again = Log::open(&dir, small_config(), 5, 0, true).unwrap();
    assert_eq!(
        again.leader_epoch_entries(),
        vec![(2, 0), (4, 3)],
        "rebuilt entries are persisted"
    );
}

#[test]
fn truncate_to_removes_later_batches_segments_and_epochs() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(
        d.path(),
        LogConfig {
            segment_bytes: 4096,
            ..small_config()
        },
    );
    for i in 0..30 {
        log.append_as_leader(batch(2, 300, 1), i / 10).unwrap();
    }
    assert_eq!(log.leader_epoch_entries(), vec![(0, 0), (1, 20), (2, 40)]);
    log.truncate_to(24).unwrap();
    assert_eq!(log.log_end_offset(), 24);
    assert_eq!(log.leader_epoch_entries(), vec![(0, 0), (1, 20)]);
    assert!(log.segment_base_offsets().iter().all(|&b| b <= 24));
    // Truncating inside a batch removes the whole batch.
    log.truncate_to(23).unwrap();
    assert_eq!(log.log_end_offset(), 22);
    let info = log.append_as_leader(batch(1, 10, 1), 3).unwrap();
    assert_eq!(info.base_offset, 22);
    assert_eq!(log.end_offset_for_epoch(1), (1, 22));
    log.truncate_fully_and_start_at(100).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 100));
    assert_eq!(log.segment_base_offsets(), vec![100]);
    assert_eq!(
        log.append_as_leader(batch(1, 10, 1), 4)
            .unwrap()
            .base_offset,
        100
    );
}

#[test]
fn retention_by_bytes_and_time_deletes_whole_old_segments_below_the_hw() {
    let d = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 4096,
        retention_bytes: 10_000,
        ..small_config()
    };
    let mut log = open(d.path(), config);
    let now = storage::log::now_ms();
    for _ in 0..40 {
        log.append_as_leader(batch(1, 900, now), 0).unwrap();
    }
    let before = log.number_of_segments();
    // Nothing is below a high watermark of 0.
    assert_eq!(log.delete_old_segments(0).unwrap(), 0);
    let n = log.delete_old_segments(log.log_end_offset()).unwrap();
    assert!(n > 0 && log.number_of_segments() == before - n);
    assert!(log.size() >= 10_000 - 4096 && log.size() <= 10_000 + 4096);
    assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
    assert_eq!(
        log.read(0, 100, None, false)
            .unwrap_err()
            .kafka_error_code(),
        1
    );
    // By time: batches from 1970 are past retention.ms; everything goes, an empty segment stays.
    let mut log2 = Log::open(
        &d.path().join("u-0"),
        LogConfig {
            segment_bytes: 4096,
            ..small_config()
        },
        0,
        0,
        true,
    )
    .unwrap();
    for _ in 0..10 {
        log2.append_as_leader(batch(1, 900, 1000), 0).unwrap();
    }
    log2.delete_old_segments(10).unwrap();
    assert_eq!(log2.segment_base_offsets(), vec![10]);
    assert_eq!((log2.log_start_offset(), log2.log_end_offset()), (10, 10));
}

// Kafka: DeleteRecords raises the log start offset, never past the high watermark.
#[test]
fn delete_records_moves_log_start_offset_and_retention_drops_segments_below_it() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(
        d.path(),
        LogConfig {
            segment_bytes: 4096,
            ..small_config()
        },
    );
    for _ in 0..20 {
        log.append_as_leader(batch(1, 900, storage::log::now_ms()), 0)
            .unwrap();
    }
    assert_eq!(
        log.maybe_increment_log_start_offset(15, 10)
            .unwrap_err()
            .kafka_error_code(),
        1
    );
    log.maybe_increment_log_start_offset(9, 20).unwrap();
    assert_eq!(log.log_start_offset(), 9);
    assert!(log.read(8, 100, None, false).is_err());
    assert!(!log.read(9, 100, None, true).unwrap().records.is_empty());
    assert!(log.delete_old_segments(20).unwrap() > 0);
    assert!(log.segment_base_offsets()[0] <= 9);
    assert_eq!(log.log_start_offset(), 9);
}

#[test]
fn list_offsets_by_timestamp_earliest_latest_and_max() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(
        d.path(),
        LogConfig {
            segment_bytes: 4096,
            ..small_config()
        },
    );
    for i in 0..20i64 {
        log.append_as_leader(batch(2, 500, 1000 + i * 10), (i / 5) as i32)
            .unwrap();
    }
    let e = log
        .fetch_offset_by_timestamp(storage::EARLIEST_TIMESTAMP)
        .unwrap()
        .unwrap();
    assert_eq!((e.offset, e.leader_epoch), (0, Some(0)));
    let l = log
        .fetch_offset_by_timestamp(storage::LATEST_TIMESTAMP)
        .unwrap()
        .unwrap();
    assert_eq!((l.offset, l.leader_epoch), (40, Some(3)));
    let m = log
        .fetch_offset_by_timestamp(storage::MAX_TIMESTAMP)
        .unwrap()
        .unwrap();
    assert_eq!((m.timestamp, m.offset), (1190, 39));
    let t = log.fetch_offset_by_timestamp(1055).unwrap().unwrap();
    assert_eq!((t.timestamp, t.offset), (1060, 12));
    assert!(log.fetch_offset_by_timestamp(5000).unwrap().is_none());
}

fn keyed(key: &str, value: Option<&str>, ts: i64) -> BytesMut {
    let r = NewRecord {
        offset_delta: 0,
        timestamp: ts,
        key: Some(key.as_bytes()),
        value: value.map(str::as_bytes),
    };
    BytesMut::from(&batch::build_batch(0, -1, &[r])[..])
}

/// Reads all records as (offset, key, value).
fn all_records(log: &Log) -> Vec<(i64, String, Option<String>)> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let r = log.read(next, 1 << 20, None, true).unwrap();
        if r.records.is_empty() {
            break;
        }
        for b in batch::split_batches(&r.records).unwrap() {
            next = b.header.next_offset();
            let bytes = &r.records[b.position..b.position + b.header.size()];
            for rec in batch::records(&bytes[61..], &b.header).unwrap() {
                out.push((
                    b.header.base_offset + rec.offset_delta as i64,
                    String::from_utf8(rec.key.unwrap().to_vec()).unwrap(),
                    rec.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                ));
            }
        }
    }
    out
}

// Kafka: LogCleaner keeps the latest record per key; offsets never change.
#[test]
fn compaction_keeps_latest_value_per_key_and_expires_old_tombstones() {
    let d = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 300,
        cleanup_policy: CleanupPolicy::Compact,
        ..small_config()
    };
    let mut log = open(d.path(), config);
    let now = storage::log::now_ms();
    for i in 0..30 {
        let k = format!("k{}", i % 3);
        log.append_as_leader(keyed(&k, Some(&format!("v{i}")), now), 0)
            .unwrap();
    }
    log.append_as_leader(keyed("k0", None, now), 0).unwrap(); // tombstone at 30
                                                              // Records 31..=35; Kafka never cleans the active segment, which holds the last of them.
    for _ in 0..5 {
        log.append_as_leader(keyed("other", Some("x"), now), 0)
            .unwrap();
    }
    let shared = std::sync::Arc::new(std::sync::Mutex::new(log));
    let stats = storage::clean_log(&shared, now).unwrap();
    assert!(
        stats.records_removed > 0 && stats.segments_cleaned > 0,
        "{stats:?}"
    );
    let log = shared.lock().unwrap();
    let recs = all_records(&log);
    assert_eq!(
        recs,
        vec![
            (28, "k1".into(), Some("v28".into())),
            (29, "k2".into(), Some("v29".into())),
            (30, "k0".into(), None),
            (31, "other".into(), Some("x".into())),
            (32, "other".into(), Some("x".into())),
            (33, "other".into(), Some("x".into())),
            (34, "other".into(), Some("x".into())),
            (35, "other".into(), Some("x".into())),
        ]
    );
    drop(log);
    // Past delete.retention.ms the tombstone goes too.
    let later = now + 2 * 24 * 3600 * 1000;
    storage::clean_log(&shared, later).unwrap();
    let log = shared.lock().unwrap();
    let keys: Vec<String> = all_records(&log).into_iter().map(|r| r.1).collect();
    assert_eq!(
        keys,
        vec!["k1", "k2", "other", "other", "other", "other", "other"]
    );
    assert_eq!(log.log_end_offset(), 36);
}

#[test]
fn background_cleaner_compacts_while_appends_continue() {
    let d = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 300,
        cleanup_policy: CleanupPolicy::Compact,
        ..small_config()
    };
    let shared = std::sync::Arc::new(std::sync::Mutex::new(open(d.path(), config)));
    let s2 = shared.clone();
    let cleaner = storage::LogCleaner::spawn(
        move || vec![s2.clone()],
        std::time::Duration::from_millis(10),
    );
    let now = storage::log::now_ms();
    for i in 0..200 {
        shared
            .lock()
            .unwrap()
            .append_as_leader(keyed(&format!("k{}", i % 4), Some("v"), now), 0)
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n = all_records(&shared.lock().unwrap()).len();
        if n < 20 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cleaner did not compact: {n} records"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(cleaner);
    let log = shared.lock().unwrap();
    assert_eq!(log.log_end_offset(), 200);
}
