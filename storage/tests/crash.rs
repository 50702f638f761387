//! Crash recovery: cut the last segment at every byte of its last batch, and flip bytes inside
//! it; reopen as after a crash (no clean shutdown). The log must be a valid prefix, every
//! flushed batch must still be there, and the indexes must agree with the data.
//!
//! Kafka: LogLoader.recoverLog / LogSegment.recover truncate at the first invalid batch.

use bytes::BytesMut;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use storage::batch::{self, BatchHeader};
use storage::{Log, LogConfig};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        segment_index_bytes: 1024,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

/// Writes 12 flushed batches then 4 unflushed ones; returns (dir, recovery point, the last
/// segment's path, the position and header of its last batch).
fn build(root: &Path) -> (PathBuf, i64, PathBuf, u64, BatchHeader) {
    let dir = root.join("t-0");
    let mut log = Log::open(&dir, config(), 0, 0, true).unwrap();
    for i in 0..12 {
        let b = batch::simple_batch(0, 1 + i % 3, 150, 1000 + i as i64);
        log.append_as_leader(BytesMut::from(&b[..]), 1).unwrap();
    }
    log.flush().unwrap();
    let rp = log.recovery_point();
    for i in 0..4 {
        let b = batch::simple_batch(0, 2, 100, 2000 + i);
        log.append_as_leader(BytesMut::from(&b[..]), 2).unwrap();
    }
    let last_base = *log.segment_base_offsets().last().unwrap();
    drop(log); // a crash: no close, no trimming
    let seg = dir.join(format!("{last_base:020}.log"));
    let data = std::fs::read(&seg).unwrap();
    let mut pos = 0usize;
    let mut last = None;
    while pos < data.len() {
        let h = BatchHeader::parse(&data[pos..]);
        last = Some((pos as u64, h));
        pos += h.size();
    }
    let (p, h) = last.unwrap();
    (dir, rp, seg, p, h)
}

/// Checks the reopened log: valid batches back to back, offsets continuous from 0 up to the log
/// end offset, every offset findable through the index, and appends continue at the end.
fn check(dir: &Path, rp: i64, expected_leo: i64) {
    let mut log = Log::open(dir, config(), rp, 0, false).unwrap();
    assert_eq!(log.log_end_offset(), expected_leo);
    assert!(log.log_end_offset() >= rp, "flushed batches lost");
    let mut next = 0;
    while next < log.log_end_offset() {
        let r = log.read(next, 1 << 20, None, true).unwrap();
        let batches = batch::split_batches(&r.records).unwrap();
        assert!(!batches.is_empty());
        for b in batches {
            let bytes = &r.records[b.position..b.position + b.header.size()];
            batch::validate_batch(bytes).unwrap();
            assert_eq!(b.header.base_offset, next);
            next = b.header.next_offset();
        }
    }
    for o in 0..log.log_end_offset() {
        let r = log.read(o, 1, None, true).unwrap();
        let h = BatchHeader::parse(&r.records);
        assert!(
            h.base_offset <= o && o <= h.last_offset(),
            "index lookup for {o}"
        );
    }
    let b = batch::simple_batch(0, 1, 10, 5000);
    let info = log.append_as_leader(BytesMut::from(&b[..]), 3).unwrap();
    assert_eq!(info.base_offset, expected_leo);
}

#[test]
fn cutting_the_last_batch_at_every_byte_keeps_a_valid_prefix() {
    let root = tempfile::tempdir().unwrap();
    let (dir, rp, seg, pos, h) = build(root.path());
    let pristine = copy_dir(&dir, &root.path().join("pristine"));
    for cut in pos..pos + h.size() as u64 {
        restore(&pristine, &dir);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(cut)
            .unwrap();
        check(&dir, rp, h.base_offset);
    }
    // Uncut, the whole log survives.
    restore(&pristine, &dir);
    check(&dir, rp, h.next_offset());
}

#[test]
fn flipping_any_crc_covered_or_framing_byte_of_the_last_batch_drops_only_that_batch() {
    let root = tempfile::tempdir().unwrap();
    let (dir, rp, seg, pos, h) = build(root.path());
    let pristine = copy_dir(&dir, &root.path().join("pristine"));
    // Bytes 8..12 (length), 16 (magic) and 17.. (CRC and everything it covers).
    let offsets = (8..12).chain(16..h.size() as u64);
    for off in offsets {
        restore(&pristine, &dir);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&seg)
            .unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, pos + off).unwrap();
        b[0] ^= 0x5a;
        f.write_all_at(&b, pos + off).unwrap();
        drop(f);
        check(&dir, rp, h.base_offset);
    }
}

#[test]
fn a_deleted_or_garbage_index_is_rebuilt_on_open() {
    let root = tempfile::tempdir().unwrap();
    let (dir, rp, _, _, h) = build(root.path());
    let log = Log::open(&dir, config(), rp, 0, false).unwrap();
    let bases = log.segment_base_offsets();
    log.close().unwrap();
    std::fs::remove_file(dir.join(format!("{:020}.index", bases[0]))).unwrap();
    std::fs::write(dir.join(format!("{:020}.index", bases[1])), [0xffu8; 13]).unwrap();
    // Even with a clean shutdown the indexes are checked and rebuilt.
    let log = Log::open(&dir, config(), h.next_offset(), 0, true).unwrap();
    assert_eq!(log.log_end_offset(), h.next_offset());
    drop(log);
    check(&dir, h.next_offset(), h.next_offset());
}

fn copy_dir(from: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to.to_path_buf()
}

fn restore(pristine: &Path, dir: &Path) {
    std::fs::remove_dir_all(dir).unwrap();
    copy_dir(pristine, dir);
}
