//! The v2 record batch (magic 2): header layout, validation, CRC-32C and in-place rewrites.
//!
//! Kafka class mirrored: `org.apache.kafka.common.record.DefaultRecordBatch` (header) and the
//! batch checks of `LogValidator`. A batch is stored on disk exactly as it travels on the wire:
//!
//! ```text
//! 0 baseOffset i64 | 8 batchLength i32 | 12 partitionLeaderEpoch i32 | 16 magic i8 = 2
//! 17 crc u32 (CRC-32C of bytes 21..end) | 21 attributes i16 | 23 lastOffsetDelta i32
//! 27 baseTimestamp i64 | 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16
//! 53 baseSequence i32 | 57 recordCount i32 | 61 records...
//! ```
//!
//! Invariant: the leader may rewrite `baseOffset` and `partitionLeaderEpoch` without touching the
//! CRC, because neither is covered by it; stamping LogAppendTime changes covered bytes
//! (attributes, maxTimestamp), so only then is the CRC recomputed.
//!
//! On the leader's path (batches from producers) every record is checked as Kafka's
//! `LogValidator` reads it: uncompressed records here, in place; compressed ones (gzip, snappy,
//! lz4, zstd) decompressed as a stream by `compression.rs`. Record framing, count and offset
//! deltas are INVALID_RECORD, as Kafka's `InvalidRecordException`; the CRC and batch framing
//! are CORRUPT_MESSAGE. Batches from a leader or read back from disk are covered by their CRC.

use crate::error::{Error, Result};

pub const BASE_OFFSET: usize = 0;
pub const LENGTH_OFFSET: usize = 8;
pub const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
pub const MAGIC_OFFSET: usize = 16;
pub const CRC_OFFSET: usize = 17;
pub const ATTRIBUTES_OFFSET: usize = 21;
pub const LAST_OFFSET_DELTA_OFFSET: usize = 23;
pub const BASE_TIMESTAMP_OFFSET: usize = 27;
pub const MAX_TIMESTAMP_OFFSET: usize = 35;
pub const PRODUCER_ID_OFFSET: usize = 43;
pub const PRODUCER_EPOCH_OFFSET: usize = 51;
pub const BASE_SEQUENCE_OFFSET: usize = 53;
pub const RECORDS_COUNT_OFFSET: usize = 57;
/// Size of the batch header; records start here.
pub const RECORD_BATCH_OVERHEAD: usize = 61;
/// Bytes before and including batchLength (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;

pub const COMPRESSION_CODEC_MASK: i16 = 0x07;
pub const TIMESTAMP_TYPE_MASK: i16 = 0x08;
pub const TRANSACTIONAL_FLAG_MASK: i16 = 0x10;
pub const CONTROL_FLAG_MASK: i16 = 0x20;

/// No leader epoch (`RecordBatch.NO_PARTITION_LEADER_EPOCH`).
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;
/// No timestamp (`RecordBatch.NO_TIMESTAMP`).
pub const NO_TIMESTAMP: i64 = -1;

pub(crate) fn get_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
pub(crate) fn get_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
pub(crate) fn get_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The header fields of one batch, read from its first 61 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the batchLength field.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Reads a header from `b` (at least 61 bytes).
    pub fn parse(b: &[u8]) -> BatchHeader {
        BatchHeader {
            base_offset: get_i64(b, BASE_OFFSET),
            batch_length: get_i32(b, LENGTH_OFFSET),
            partition_leader_epoch: get_i32(b, PARTITION_LEADER_EPOCH_OFFSET),
            magic: b[MAGIC_OFFSET] as i8,
            crc: u32::from_be_bytes(b[CRC_OFFSET..CRC_OFFSET + 4].try_into().expect("4 bytes")),
            attributes: get_i16(b, ATTRIBUTES_OFFSET),
            last_offset_delta: get_i32(b, LAST_OFFSET_DELTA_OFFSET),
            base_timestamp: get_i64(b, BASE_TIMESTAMP_OFFSET),
            max_timestamp: get_i64(b, MAX_TIMESTAMP_OFFSET),
            producer_id: get_i64(b, PRODUCER_ID_OFFSET),
            producer_epoch: get_i16(b, PRODUCER_EPOCH_OFFSET),
            base_sequence: get_i32(b, BASE_SEQUENCE_OFFSET),
            record_count: get_i32(b, RECORDS_COUNT_OFFSET),
        }
    }
    /// Total size on disk (batchLength + 12). A negative batchLength (garbage) counts as 0, so
    /// the size is never 0 and a scan over such bytes always moves forward; the callers'
    /// minimum-length checks then reject the batch.
    pub fn size(&self) -> usize {
        self.batch_length.max(0) as usize + LOG_OVERHEAD
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }
    pub fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_CODEC_MASK
    }
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG_MASK != 0
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_MASK != 0
    }
}

/// CRC-32C of a batch: over attributes..end.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..])
}

/// Where a batch sits inside a buffer, with its header.
#[derive(Debug, Clone, Copy)]
pub struct BatchPos {
    pub position: usize,
    pub header: BatchHeader,
}

/// Outcome of scanning the front of a buffer for one batch, used by recovery and reads.
#[derive(Debug)]
pub enum Scan {
    /// A whole batch is present (header fields sane; CRC not checked).
    Batch(BatchHeader),
    /// Not enough bytes for the header or the batch (a torn tail, or a short read).
    Incomplete,
    /// The length field or magic cannot be right.
    Corrupt(String),
}

/// Looks at the batch starting at `b[0]`: is it whole, and are its framing fields sane?
pub fn scan(b: &[u8]) -> Scan {
    if b.len() < LOG_OVERHEAD + 5 {
        return Scan::Incomplete;
    }
    let len = get_i32(b, LENGTH_OFFSET);
    if len < (RECORD_BATCH_OVERHEAD - LOG_OVERHEAD) as i32 {
        return Scan::Corrupt(format!("batch length {len} smaller than the header"));
    }
    if b[MAGIC_OFFSET] != 2 {
        return Scan::Corrupt(format!("unsupported magic {}", b[MAGIC_OFFSET] as i8));
    }
    let size = len as usize + LOG_OVERHEAD;
    if b.len() < size {
        return Scan::Incomplete;
    }
    Scan::Batch(BatchHeader::parse(b))
}

/// Checks one whole producer batch `b` (exactly one batch): CRC, counts, offsets deltas,
/// timestamps and every record's framing, decompressing compressed batches.
///
/// These are the leader's checks on producer input (Kafka's `LogValidator`): the record count
/// must equal lastOffsetDelta + 1, no control batch, and every record's framing is walked
/// (compressed ones through `compression.rs`) with inner offsets 0, 1, 2... Batches from a leader or read back
/// from disk may have been compacted (gaps inside), so for them the count must only fit in the
/// offset range, and their records are covered by the CRC alone, as in Kafka.
pub fn validate_batch(b: &[u8]) -> Result<BatchHeader> {
    validate(b, true, false)
}

/// [`validate_batch`] for a partition of a compacted topic (`cleanup.policy` with `compact`):
/// every record must also have a key (Kafka: `LogValidator.validateKey`, INVALID_RECORD).
pub fn validate_client_batch(b: &[u8], compacted: bool) -> Result<BatchHeader> {
    validate(b, true, compacted)
}

/// [`validate_batch`] with the leader's strict checks switched off (followers, recovery).
pub fn validate_stored_batch(b: &[u8]) -> Result<BatchHeader> {
    validate(b, false, false)
}

fn validate(b: &[u8], from_client: bool, require_keys: bool) -> Result<BatchHeader> {
    let h = BatchHeader::parse(b);
    let corrupt = |reason: String| Error::CorruptBatch {
        offset: h.base_offset,
        reason,
    };
    let crc = compute_crc(b);
    if crc != h.crc {
        return Err(corrupt(format!(
            "CRC-32C mismatch: stored {:#010x}, computed {crc:#010x}",
            h.crc
        )));
    }
    if from_client && h.record_count <= 0 {
        // Kafka: a batch must hold records (LogValidator: "Record batch has no records").
        return Err(Error::InvalidRecord(format!(
            "batch at offset {} has record count {}",
            h.base_offset, h.record_count
        )));
    }
    let count_ok = if from_client {
        h.record_count == h.last_offset_delta.saturating_add(1)
    } else {
        h.record_count >= 0 && h.record_count <= h.last_offset_delta.saturating_add(1)
    };
    if h.last_offset_delta < 0 || !count_ok {
        // Kafka: LogValidator.validateBatch, count from offsets must equal the record count.
        return Err(Error::InvalidRecord(format!(
            "record count {} does not match lastOffsetDelta {}",
            h.record_count, h.last_offset_delta
        )));
    }
    if h.max_timestamp < NO_TIMESTAMP || h.base_timestamp < NO_TIMESTAMP {
        return Err(Error::InvalidTimestamp(format!(
            "negative timestamp in batch at offset {}",
            h.base_offset
        )));
    }
    if from_client && h.is_control() {
        // Kafka: LogValidator.validateBatch; control records (transaction markers) are written
        // by the broker only, and a forged one would end or abort a transaction for consumers.
        return Err(Error::InvalidRecord(format!(
            "batch at offset {}: clients may not write control batches",
            h.base_offset
        )));
    }
    if h.compression() > 4 {
        return Err(Error::InvalidRecord(format!(
            "unknown compression codec {}",
            h.compression()
        )));
    }
    if from_client {
        // Kafka walks the records only on the leader's path (LogValidator); a follower or a
        // recovery checks sizes and the CRC (`ensureValid`), which covers every record byte.
        match crate::compression::Codec::from_attributes(h.attributes) {
            None => validate_records(&b[RECORD_BATCH_OVERHEAD..], &h, require_keys)?,
            Some(codec) => crate::compression::validate_compressed_records(
                codec,
                &b[RECORD_BATCH_OVERHEAD..],
                &h,
                require_keys,
            )?,
        }
    }
    Ok(h)
}

/// Decodes a zigzag varint (as `ByteUtils.readVarint`), returning (value, bytes used).
pub fn read_varint(b: &[u8]) -> Option<(i32, usize)> {
    let (v, n) = read_varlong(b)?;
    if n > 5 {
        return None;
    }
    Some((v as i32, n))
}

/// Decodes a zigzag varlong, returning (value, bytes used).
pub fn read_varlong(b: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        raw |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), i + 1));
        }
    }
    None
}

/// Encodes a zigzag varint into `out`.
pub fn write_varint(v: i32, out: &mut Vec<u8>) {
    write_varlong(v as i64, out)
}

/// Encodes a zigzag varlong into `out`.
pub fn write_varlong(v: i64, out: &mut Vec<u8>) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// One record of an uncompressed batch, borrowed from the batch bytes.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The whole record including its length prefix.
    pub raw: &'a [u8],
}

/// A record of a producer's batch that does not parse: Kafka's `DefaultRecord.readFrom` throws
/// `InvalidRecordException` ("invalid record structure", INVALID_RECORD).
fn invalid(h: &BatchHeader, what: &str) -> Error {
    Error::InvalidRecord(format!(
        "record framing of batch at offset {}: {what}",
        h.base_offset
    ))
}

fn bad(h: &BatchHeader, what: &str) -> Error {
    Error::CorruptBatch {
        offset: h.base_offset,
        reason: format!("record framing: {what}"),
    }
}

/// Splits the records area of an uncompressed batch into records.
pub fn records<'a>(area: &'a [u8], h: &BatchHeader) -> Result<Vec<RecordRef<'a>>> {
    // record_count comes from the wire: every record takes at least 1 byte, so never reserve
    // more than the area could hold.
    let mut out = Vec::with_capacity((h.record_count.max(0) as usize).min(area.len()));
    for_each_record(area, h, |r| {
        out.push(r);
        Ok(())
    })?;
    Ok(out)
}

/// Walks the records of an uncompressed batch in order without collecting them (the produce
/// path validates every record this way); returns how many there were.
pub fn for_each_record<'a>(
    area: &'a [u8],
    h: &BatchHeader,
    mut f: impl FnMut(RecordRef<'a>) -> Result<()>,
) -> Result<usize> {
    let mut count = 0usize;
    let mut at = 0usize;
    while at < area.len() {
        let (len, n) = read_varint(&area[at..]).ok_or_else(|| bad(h, "length varint"))?;
        if len < 1 || at + n + len as usize > area.len() {
            return Err(bad(h, "record length past the batch"));
        }
        let raw = &area[at..at + n + len as usize];
        let body = &raw[n..];
        let mut p = 1; // attributes
        let (ts, k) = read_varlong(&body[p..]).ok_or_else(|| bad(h, "timestamp delta"))?;
        p += k;
        let (od, k) =
            read_varint(body.get(p..).unwrap_or(&[])).ok_or_else(|| bad(h, "offset delta"))?;
        p += k;
        let field = |p: &mut usize| -> Result<Option<&'a [u8]>> {
            let (l, k) =
                read_varint(body.get(*p..).unwrap_or(&[])).ok_or_else(|| bad(h, "field length"))?;
            *p += k;
            if l < 0 {
                return Ok(None);
            }
            let end = *p + l as usize;
            let s = body
                .get(*p..end)
                .ok_or_else(|| bad(h, "field past the record"))?;
            *p = end;
            Ok(Some(s))
        };
        let key = field(&mut p)?;
        let value = field(&mut p)?;
        f(RecordRef {
            offset_delta: od,
            timestamp_delta: ts,
            key,
            value,
            raw,
        })?;
        count += 1;
        at += n + len as usize;
    }
    Ok(count)
}

/// Zigzag varint at `b[*at..]`, advancing `at`; `None` past the end or beyond 10 bytes. The
/// one-byte case (most lengths and deltas of small records) is decided first.
#[inline(always)]
fn zigzag_at(b: &[u8], at: &mut usize) -> Option<i64> {
    let first = *b.get(*at)?;
    *at += 1;
    let raw = if first < 0x80 {
        first as u64
    } else {
        let mut v = (first & 0x7f) as u64;
        let mut shift = 7;
        loop {
            let byte = *b.get(*at)?;
            *at += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte < 0x80 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
        v
    };
    Some(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

/// Skips a length-prefixed field (key, value, header key or value) of a record that ends at
/// `end`; a length of -1 is null, and only when `nullable`.
#[inline(always)]
fn skip_field(b: &[u8], at: &mut usize, end: usize, nullable: bool) -> Option<()> {
    let len = zigzag_at(&b[..end], at)?;
    if len == -1 && nullable {
        return Some(());
    }
    if len < 0 || len > (end - *at) as i64 {
        return None;
    }
    *at += len as usize;
    Some(())
}

/// The leader's walk over the records of an uncompressed producer batch (Kafka:
/// `DefaultRecord.readFrom` inside `LogValidator`): each record's length, attributes, timestamp
/// delta, offset delta (must be 0, 1, 2 ...), key, value and headers must fill exactly the
/// record's declared length, and the count must match the header. Any failure is
/// INVALID_RECORD, as in Kafka. (`compression.rs` walks compressed records the same way.)
fn validate_records(area: &[u8], h: &BatchHeader, require_keys: bool) -> Result<()> {
    let mut at = 0usize;
    let mut i = 0i32;
    while at < area.len() {
        at = check_record(area, at, i, require_keys).map_err(|e| match e {
            RecordError::Incomplete => invalid(h, "record length past the batch"),
            RecordError::Invalid(what) => invalid(h, &what),
        })?;
        i = i.saturating_add(1);
    }
    if i != h.record_count {
        return Err(Error::InvalidRecord(format!(
            "batch at offset {} declares {} records but holds {i}",
            h.base_offset, h.record_count
        )));
    }
    Ok(())
}

/// The refusal of a record without a key in a compacted topic.
pub(crate) fn no_key(i: i32) -> String {
    format!("record {i} has no key, which a compacted topic requires")
}

/// Why [`check_record`] refused a record.
#[derive(Debug)]
pub(crate) enum RecordError {
    /// The record runs past the end of the bytes given (a batch's end, or the end of what a
    /// decompressing reader has produced so far).
    Incomplete,
    /// The record is wrong wherever it ends.
    Invalid(String),
}

/// Checks record number `i` (its offset delta must be `i`) starting at `area[at]`; returns where
/// it ends. Each field (attributes, timestamp delta, offset delta, key, value, headers) must
/// fit and together they must fill the record's declared length exactly (Kafka:
/// `DefaultRecord.readFrom`); with `require_key` (a compacted topic) the key must not be null
/// (`LogValidator.validateKey`). Shared by the walk over uncompressed batches and, record by
/// record, the walk over decompressed ones (`compression.rs`).
#[inline(always)]
pub(crate) fn check_record(
    area: &[u8],
    at: usize,
    i: i32,
    require_key: bool,
) -> std::result::Result<usize, RecordError> {
    let bad = |what: &str| RecordError::Invalid(format!("record {i}: {what}"));
    let mut p = at;
    let len = match zigzag_at(area, &mut p) {
        Some(l) if (1..=i32::MAX as i64).contains(&l) => l as usize,
        Some(l) => return Err(bad(&format!("length {l}"))),
        None if area.len() - at < 10 => return Err(RecordError::Incomplete),
        None => return Err(bad("length varint")),
    };
    let end = p
        .checked_add(len)
        .filter(|e| *e <= area.len())
        .ok_or(RecordError::Incomplete)?;
    p += 1; // attributes
    zigzag_at(&area[..end], &mut p).ok_or_else(|| bad("timestamp delta"))?;
    let od = zigzag_at(&area[..end], &mut p).ok_or_else(|| bad("offset delta"))?;
    if od != i as i64 {
        return Err(RecordError::Invalid(format!(
            "record {i} has offset delta {od}"
        )));
    }
    if require_key && p < end && area[p] == 1 {
        // zigzag -1: a null key.
        return Err(RecordError::Invalid(no_key(i)));
    }
    skip_field(area, &mut p, end, true).ok_or_else(|| bad("key"))?;
    skip_field(area, &mut p, end, true).ok_or_else(|| bad("value"))?;
    let headers = zigzag_at(&area[..end], &mut p)
        .filter(|n| *n >= 0)
        .ok_or_else(|| bad("header count"))?;
    for _ in 0..headers {
        skip_field(area, &mut p, end, false).ok_or_else(|| bad("header key"))?;
        skip_field(area, &mut p, end, true).ok_or_else(|| bad("header value"))?;
    }
    if p != end {
        return Err(bad("fields do not fill its length"));
    }
    Ok(end)
}

/// Splits `bytes` into whole batches, checking framing only. Errors if anything is left over.
pub fn split_batches(bytes: &[u8]) -> Result<Vec<BatchPos>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match scan(&bytes[at..]) {
            Scan::Batch(header) => {
                out.push(BatchPos {
                    position: at,
                    header,
                });
                at += header.size();
            }
            Scan::Incomplete => {
                return Err(Error::CorruptBatch {
                    offset: -1,
                    reason: format!("truncated batch at byte {at} of {}", bytes.len()),
                })
            }
            Scan::Corrupt(reason) => return Err(Error::CorruptBatch { offset: -1, reason }),
        }
    }
    Ok(out)
}

/// Sets baseOffset and partitionLeaderEpoch of the batch at `b[0]` (not CRC-covered).
pub fn set_offset_and_epoch(b: &mut [u8], base_offset: i64, epoch: i32) {
    b[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    b[PARTITION_LEADER_EPOCH_OFFSET..PARTITION_LEADER_EPOCH_OFFSET + 4]
        .copy_from_slice(&epoch.to_be_bytes());
}

/// Stamps LogAppendTime: timestamp-type bit and maxTimestamp, then the CRC (covered bytes changed).
pub fn set_log_append_time(b: &mut [u8], now_ms: i64) {
    let attrs = get_i16(b, ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_MASK;
    b[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
    b[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(b);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A record to put in a batch built by [`build_batch`].
#[derive(Debug, Clone)]
pub struct NewRecord<'a> {
    pub offset_delta: i32,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// Builds an uncompressed v2 batch (used by tests, benchmarks and the cleaner).
pub fn build_batch(base_offset: i64, epoch: i32, records: &[NewRecord<'_>]) -> Vec<u8> {
    build_batch_with(base_offset, epoch, records, -1, -1, -1, 0)
}

/// Builds an uncompressed v2 batch with producer fields and attributes.
#[allow(clippy::too_many_arguments)]
pub fn build_batch_with(
    base_offset: i64,
    epoch: i32,
    records: &[NewRecord<'_>],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    attributes: i16,
) -> Vec<u8> {
    let base_ts = records.first().map(|r| r.timestamp).unwrap_or(NO_TIMESTAMP);
    let max_ts = records
        .iter()
        .map(|r| r.timestamp)
        .max()
        .unwrap_or(NO_TIMESTAMP);
    let last_delta = records.last().map(|r| r.offset_delta).unwrap_or(0);
    let mut b = Vec::with_capacity(
        RECORD_BATCH_OVERHEAD
            + records
                .iter()
                .map(|r| 20 + r.key.map_or(0, <[u8]>::len) + r.value.map_or(0, <[u8]>::len))
                .sum::<usize>(),
    );
    b.extend_from_slice(&base_offset.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // length, fixed below
    b.extend_from_slice(&epoch.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes()); // crc, fixed below
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&last_delta.to_be_bytes());
    b.extend_from_slice(&base_ts.to_be_bytes());
    b.extend_from_slice(&max_ts.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&base_sequence.to_be_bytes());
    b.extend_from_slice(&(records.len() as i32).to_be_bytes());
    let mut body = Vec::new();
    for r in records {
        body.clear();
        body.push(0); // record attributes
        write_varlong(r.timestamp - base_ts, &mut body);
        write_varint(r.offset_delta, &mut body);
        for f in [r.key, r.value] {
            match f {
                Some(s) => {
                    write_varint(s.len() as i32, &mut body);
                    body.extend_from_slice(s);
                }
                None => write_varint(-1, &mut body),
            }
        }
        write_varint(0, &mut body); // headers
        write_varint(body.len() as i32, &mut b);
        b.extend_from_slice(&body);
    }
    let len = (b.len() - LOG_OVERHEAD) as i32;
    b[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&len.to_be_bytes());
    let crc = compute_crc(&b);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A batch of `count` records with `value_len`-byte values (tests and benchmarks).
pub fn simple_batch(base_offset: i64, count: i32, value_len: usize, timestamp: i64) -> Vec<u8> {
    let value = vec![b'x'; value_len];
    let recs: Vec<NewRecord> = (0..count)
        .map(|i| NewRecord {
            offset_delta: i,
            timestamp,
            key: None,
            value: Some(&value),
        })
        .collect();
    build_batch(base_offset, NO_PARTITION_LEADER_EPOCH, &recs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-32C (Castagnoli) of "123456789" is 0xE3069283 (the standard check value).
    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    /// The leader's record walk checks every field against the record's length, headers too.
    #[test]
    fn record_fields_must_fill_the_record_exactly() {
        let recs = [
            NewRecord {
                offset_delta: 0,
                timestamp: 5,
                key: Some(b"k"),
                value: Some(b"value"),
            },
            NewRecord {
                offset_delta: 1,
                timestamp: 6,
                key: None,
                value: Some(b"v2"),
            },
        ];
        let good = build_batch(0, 0, &recs);
        validate_batch(&good).unwrap();
        // The first record's last byte is its header count (0). Claiming one header makes the
        // header's key run past the record.
        let first_len = read_varint(&good[RECORD_BATCH_OVERHEAD..]).unwrap();
        let last = RECORD_BATCH_OVERHEAD + first_len.1 + first_len.0 as usize - 1;
        assert_eq!(good[last], 0);
        let mut bad_headers = good.clone();
        bad_headers[last] = 2; // zigzag 1
        let crc = compute_crc(&bad_headers);
        bad_headers[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        // Kafka: DefaultRecord.readFrom throws InvalidRecordException (INVALID_RECORD).
        let e = validate_batch(&bad_headers).unwrap_err();
        assert_eq!(e.kafka_error_code(), 87, "{e}");
        // A stored batch (follower, recovery) is covered by its CRC alone.
        validate_stored_batch(&bad_headers).unwrap();
        // Out-of-sequence offset deltas from a producer are INVALID_RECORD.
        let mut swapped = recs;
        swapped[1].offset_delta = 3;
        let mut b = build_batch(0, 0, &swapped);
        b[LAST_OFFSET_DELTA_OFFSET..LAST_OFFSET_DELTA_OFFSET + 4]
            .copy_from_slice(&1i32.to_be_bytes());
        let crc = compute_crc(&b);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(validate_batch(&b).unwrap_err().kafka_error_code(), 87);
    }

    #[test]
    fn varints_round_trip_with_zigzag() {
        for v in [
            0i64,
            -1,
            1,
            63,
            -64,
            64,
            300,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            write_varlong(v, &mut out);
            assert_eq!(read_varlong(&out), Some((v, out.len())));
        }
        let mut out = Vec::new();
        write_varint(-1, &mut out);
        assert_eq!(out, vec![1]); // zigzag(-1) = 1, as Kafka writes a null key
    }

    #[test]
    fn built_batch_validates_and_reports_its_header() {
        let b = simple_batch(5, 3, 10, 1000);
        let h = validate_batch(&b).unwrap();
        assert_eq!(h.base_offset, 5);
        assert_eq!(h.last_offset(), 7);
        assert_eq!(h.record_count, 3);
        assert_eq!(h.max_timestamp, 1000);
        assert_eq!(h.size(), b.len());
    }

    #[test]
    fn flipped_byte_is_a_crc_error_and_offset_rewrite_keeps_crc() {
        let mut b = simple_batch(0, 2, 4, 7);
        set_offset_and_epoch(&mut b, 1234, 9);
        assert!(
            validate_batch(&b).is_ok(),
            "baseOffset and epoch are not CRC-covered"
        );
        let last = b.len() - 1;
        b[last] ^= 0xff;
        let e = validate_batch(&b).unwrap_err();
        assert_eq!(e.kafka_error_code(), 2);
    }

    #[test]
    fn log_append_time_stamping_recomputes_the_crc() {
        let mut b = simple_batch(0, 1, 4, 7);
        set_log_append_time(&mut b, 99);
        let h = validate_batch(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99);
    }

    /// Kafka: LogValidator.validateBatch refuses a control batch from a client
    /// (INVALID_RECORD); a follower stores the leader's as they are.
    #[test]
    fn a_control_batch_from_a_client_is_invalid_record() {
        let b = build_batch_with(
            0,
            0,
            &[NewRecord {
                offset_delta: 0,
                timestamp: 1,
                key: Some(&[0, 0, 0, 0]),
                value: Some(&[0, 0, 0, 0, 0, 0]),
            }],
            5,
            0,
            0,
            TRANSACTIONAL_FLAG_MASK | CONTROL_FLAG_MASK,
        );
        assert_eq!(validate_batch(&b).unwrap_err().kafka_error_code(), 87);
        validate_stored_batch(&b).unwrap();
    }

    /// Kafka: LogValidator.validateKey; a compacted topic takes no record without a key
    /// (INVALID_RECORD), compressed or not; a tombstone (key, null value) is fine.
    #[test]
    fn a_record_without_key_is_refused_by_a_compacted_topic_only() {
        let recs = [
            NewRecord {
                offset_delta: 0,
                timestamp: 1,
                key: Some(b"k"),
                value: None,
            },
            NewRecord {
                offset_delta: 1,
                timestamp: 1,
                key: None,
                value: Some(b"v"),
            },
        ];
        let keyless = build_batch(0, -1, &recs);
        let keyed = build_batch(0, -1, &recs[..1]);
        for codec in [None, Some(crate::compression::Codec::Zstd)] {
            let c = |b: &[u8]| match codec {
                None => b.to_vec(),
                Some(codec) => crate::compression::compress_batch(b, codec),
            };
            validate_client_batch(&c(&keyless), false).unwrap();
            validate_client_batch(&c(&keyed), true).unwrap();
            let e = validate_client_batch(&c(&keyless), true).unwrap_err();
            assert_eq!(e.kafka_error_code(), 87, "{e}");
            assert!(e.to_string().contains("record 1 has no key"), "{e}");
        }
    }

    #[test]
    fn count_not_matching_last_offset_delta_is_invalid_record() {
        let mut b = simple_batch(0, 2, 4, 7);
        b[RECORDS_COUNT_OFFSET..RECORDS_COUNT_OFFSET + 4].copy_from_slice(&3i32.to_be_bytes());
        let crc = compute_crc(&b);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(validate_batch(&b).unwrap_err().kafka_error_code(), 87);
    }
}
