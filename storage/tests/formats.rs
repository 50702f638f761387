//! Exact bytes on disk, checked against Kafka's documented formats: a known batch in the `.log`,
//! its `.index` and `.timeindex` entries, the checkpoint files and `meta.properties`.

use bytes::BytesMut;
use storage::batch::{self, NewRecord};
use storage::{LogConfig, LogManager, MetaProperties};

/// One record, key null, value "hi", timestamp 1000, as a producer would send it (offset 0).
fn known_batch() -> Vec<u8> {
    let r = NewRecord {
        offset_delta: 0,
        timestamp: 1000,
        key: None,
        value: Some(b"hi"),
    };
    batch::build_batch(0, -1, &[r])
}

// Kafka: DefaultRecordBatch (header layout) and DefaultRecord (varint record layout).
#[test]
fn known_batch_index_entries_and_checkpoints_have_kafkas_exact_bytes() {
    let d = tempfile::tempdir().unwrap();
    let meta = MetaProperties {
        broker_id: 1,
        cluster_id: "Z3p4cVlwS0m4q1nqvx3Wug".into(),
    };
    let config = LogConfig {
        index_interval_bytes: 0,
        ..LogConfig::default()
    };
    let lm = LogManager::open(&[d.path().to_path_buf()], &meta, config.clone()).unwrap();
    let log = lm.get_or_create_log("my-topic", 0, config).unwrap();
    {
        let mut log = log.lock().unwrap();
        log.append_as_leader(BytesMut::from(&known_batch()[..]), 7)
            .unwrap();
        log.append_as_leader(BytesMut::from(&known_batch()[..]), 7)
            .unwrap();
    }
    lm.shutdown().unwrap();
    let part = d.path().join("my-topic-0");

    // The record: length 8 (zigzag 0x10), attributes 0, timestampDelta 0, offsetDelta 0,
    // keyLength -1 (0x01), valueLength 2 (0x04), "hi", headerCount 0.
    let record = [0x10, 0x00, 0x00, 0x00, 0x01, 0x04, b'h', b'i', 0x00];
    let mut expected = Vec::new();
    for base_offset in [0i64, 1] {
        let mut b = Vec::new();
        b.extend_from_slice(&base_offset.to_be_bytes()); // baseOffset, rewritten by the leader
        b.extend_from_slice(&(49 + 9i32).to_be_bytes()); // batchLength = total - 12
        b.extend_from_slice(&7i32.to_be_bytes()); // partitionLeaderEpoch, set by the leader
        b.push(2); // magic
        b.extend_from_slice(&[0, 0, 0, 0]); // crc, filled below
        b.extend_from_slice(&0i16.to_be_bytes()); // attributes: no compression, CreateTime
        b.extend_from_slice(&0i32.to_be_bytes()); // lastOffsetDelta
        b.extend_from_slice(&1000i64.to_be_bytes()); // baseTimestamp
        b.extend_from_slice(&1000i64.to_be_bytes()); // maxTimestamp
        b.extend_from_slice(&(-1i64).to_be_bytes()); // producerId
        b.extend_from_slice(&(-1i16).to_be_bytes()); // producerEpoch
        b.extend_from_slice(&(-1i32).to_be_bytes()); // baseSequence
        b.extend_from_slice(&1i32.to_be_bytes()); // recordCount
        b.extend_from_slice(&record);
        let crc = crc32c::crc32c(&b[21..]); // CRC-32C over attributes..end
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        expected.extend_from_slice(&b);
    }
    assert_eq!(
        std::fs::read(part.join("00000000000000000000.log")).unwrap(),
        expected
    );

    // The second append (offset 1 at position 70) got an index entry: 4-byte relative offset,
    // 4-byte position; the file is trimmed to its one entry after shutdown.
    assert_eq!(
        std::fs::read(part.join("00000000000000000000.index")).unwrap(),
        [0, 0, 0, 1, 0, 0, 0, 70]
    );
    // Time index: 8-byte max timestamp so far, 4-byte relative offset of that timestamp. Both
    // batches carry 1000; the max moves only on a strictly greater timestamp, so offset 0.
    let mut ti = 1000i64.to_be_bytes().to_vec();
    ti.extend_from_slice(&0i32.to_be_bytes());
    assert_eq!(
        std::fs::read(part.join("00000000000000000000.timeindex")).unwrap(),
        ti
    );

    assert_eq!(
        std::fs::read_to_string(part.join("leader-epoch-checkpoint")).unwrap(),
        "0\n1\n7 0\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("recovery-point-offset-checkpoint")).unwrap(),
        "0\n1\nmy-topic 0 2\n"
    );
    // Log start offset entries exist only past the first segment's base offset.
    assert_eq!(
        std::fs::read_to_string(d.path().join("log-start-offset-checkpoint")).unwrap(),
        "0\n0\n"
    );
    assert!(d.path().join(".kafka_cleanshutdown").exists());
    let meta_text = std::fs::read_to_string(d.path().join("meta.properties")).unwrap();
    assert!(meta_text.starts_with('#'));
    let mut lines: Vec<&str> = meta_text.lines().filter(|l| !l.starts_with('#')).collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            "broker.id=1",
            "cluster.id=Z3p4cVlwS0m4q1nqvx3Wug",
            "version=0"
        ]
    );
}
