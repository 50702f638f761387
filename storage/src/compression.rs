//! Compressed record batches: the leader decompresses a producer's batch and checks every record.
//!
//! Kafka concept: bits 0-2 of a batch's attributes name a codec (1 gzip, 2 snappy, 3 lz4,
//! 4 zstd); the records area after the 61-byte header is then one compressed stream of records.
//! The CRC-32C covers the compressed bytes only, so a batch can carry a correct CRC and a
//! payload no consumer can decompress. Kafka's leader therefore decompresses every compressed
//! batch from a client before appending it (`LogValidator.validateMessagesAndAssignOffsetsCompressed`,
//! reading the records with `DefaultRecordBatch.skipKeyValueIterator`, one `DefaultRecord` at a
//! time). Codecs as Kafka reads them (`CompressionType.wrapForInput`):
//!
//! - gzip: a gzip stream (`java.util.zip.GZIPInputStream`), members may follow each other.
//! - snappy: snappy-java's `SnappyInputStream`, which reads two framings: the xerial stream the
//!   Java producer writes (an 8-byte magic `\x82SNAPPY\0`, two 4-byte versions, then chunks of
//!   a 4-byte big-endian length and a raw snappy block), and, when the magic is absent, one raw
//!   snappy block (what librdkafka and kcat write).
//! - lz4: the LZ4 frame format (`KafkaLZ4BlockInputStream`), which Kafka reads only with
//!   independent blocks; linked blocks are refused.
//! - zstd: a zstd stream (zstd-jni), frames may follow each other.
//!
//! Kafka class mirrored: the compressed half of `LogValidator` and `DefaultRecord.readPartiallyFrom`
//! ([`validate_compressed_records`]); [`Codec`] is `CompressionType`.
//!
//! Invariant: validation only reads. A batch that passes is stored exactly as the producer sent
//! it, as Kafka does for `compression.type=producer` (the default), so the zero-copy append
//! (`Log::append_as_leader_shared`) keeps its single write.
//!
//! Errors, as Kafka answers them, with one deviation:
//! - a record that does not parse, a record count that does not match the stream, offset
//!   deltas not 0, 1, 2 ...: INVALID_RECORD (87), Kafka's `InvalidRecordException`;
//! - a payload the codec cannot decompress: CORRUPT_MESSAGE (2). Kafka wraps the codec's
//!   `IOException` in a plain `KafkaException` ("Failed to decompress record stream"), which the
//!   produce path answers as UNKNOWN_SERVER_ERROR (-1), a code that reads as a broker bug; the
//!   batch is corrupt, and CORRUPT_MESSAGE is the code Kafka defines for that;
//! - more than [`MAX_DECOMPRESSED_BYTES`] of records: MESSAGE_TOO_LARGE (10), see that constant.
//!
//! Memory: the records are walked as a stream through a 64 KiB window, keys and values skipped
//! (as Kafka's skip-key-value iterator does), so a batch costs the codec's own state, not its
//! decompressed size; snappy alone decodes whole blocks, whose size it checks against the bound
//! before allocating.
//!
//! Simplifications, said plainly: Kafka re-compresses a batch whose inner offsets are not
//! 0, 1, 2 ... (old clients) instead of refusing it; we refuse it with INVALID_RECORD, as we do
//! for uncompressed batches. A topic's `compression.type` naming a codec is accepted but not
//! applied (Kafka re-compresses every batch to it): batches keep the producer's codec. Trailing bytes after a gzip stream that are not another gzip member
//! are refused (Java's `GZIPInputStream` ignores them), and lz4 content checksums are checked
//! (Kafka skips them).
//!
//! Crates: `flate2` (its default backend, miniz_oxide, is pure Rust) and `snap` (pure Rust) for
//! gzip and snappy; `lz4` and `zstd`, bindings to the C reference libraries that librdkafka also
//! uses, for lz4 and zstd. All four were already in the build (kafka-protocol's codecs).

use std::io::{self, Read, Write};

use crate::batch::{
    check_record, compute_crc, no_key, BatchHeader, RecordError, ATTRIBUTES_OFFSET,
    COMPRESSION_CODEC_MASK, CRC_OFFSET, LENGTH_OFFSET, LOG_OVERHEAD, RECORD_BATCH_OVERHEAD,
};
use crate::error::{Error, Result};

/// A compression codec of a v2 batch (Kafka's `CompressionType`, `none` aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// All codecs, in attribute order.
    pub const ALL: [Codec; 4] = [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd];

    /// The codec named by a batch's attributes; `None` for uncompressed (0) and unknown ids.
    pub fn from_attributes(attributes: i16) -> Option<Codec> {
        match attributes & COMPRESSION_CODEC_MASK {
            1 => Some(Codec::Gzip),
            2 => Some(Codec::Snappy),
            3 => Some(Codec::Lz4),
            4 => Some(Codec::Zstd),
            _ => None,
        }
    }

    /// The id stored in bits 0-2 of the attributes.
    pub fn id(self) -> i16 {
        match self {
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    /// Kafka's name (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// The most decompressed bytes one batch's records may take: 100,000,000, the default of
/// librdkafka's `receive.message.max.bytes`, beyond which librdkafka (kcat, confluent-kafka)
/// refuses to decompress a zstd or lz4 batch, so a consumer could never read past a larger one.
/// Kafka has no such bound (it streams); a bound is needed here because a few kilobytes of zstd
/// or gzip can expand to gigabytes, and walking them would hold a request handler for seconds.
/// Beyond it the batch is answered MESSAGE_TOO_LARGE, as Kafka answers a batch that outgrows
/// `max.message.bytes` after the leader re-compressed it (`RecordTooLargeException`): the Java
/// producer then splits the batch and sends the halves, where RECORD_LIST_TOO_LARGE or
/// CORRUPT_MESSAGE would fail it or retry it unchanged.
pub const MAX_DECOMPRESSED_BYTES: u64 = 100_000_000;

/// The xerial snappy-java stream header's magic.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Magic, version and compatible version.
const XERIAL_HEADER_LEN: usize = 16;
/// Bound on a snappy block's expansion (the format's best is a 3-byte copy of 64 bytes, 21x).
const SNAPPY_MAX_RATIO: u64 = 32;
/// The LZ4 frame magic number, little-endian on the wire.
const LZ4_MAGIC: u32 = 0x184D_2204;

/// Checks the records of a compressed producer batch (`records` is the batch after its 61-byte
/// header; `h` its parsed header, already checked: CRC, count = lastOffsetDelta + 1 > 0).
/// Kafka: `LogValidator.validateMessagesAndAssignOffsetsCompressed` with the iterator of
/// `DefaultRecordBatch`: exactly `record_count` records, then the end of the stream; each
/// record's fields fill its declared length exactly; offset deltas 0, 1, 2 ...
/// With `require_keys` (a compacted topic) every record must have a key.
pub fn validate_compressed_records(
    codec: Codec,
    records: &[u8],
    h: &BatchHeader,
    require_keys: bool,
) -> Result<()> {
    let limits = Limits {
        max_bytes: MAX_DECOMPRESSED_BYTES,
        require_keys,
    };
    validate_compressed_records_bounded(codec, records, h, limits)
}

/// What a walk enforces besides the records' framing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The most decompressed bytes allowed.
    pub(crate) max_bytes: u64,
    /// Every record must have a key (compacted topic).
    pub(crate) require_keys: bool,
}

/// [`validate_compressed_records`] with the bound on decompressed bytes given (tests).
pub(crate) fn validate_compressed_records_bounded(
    codec: Codec,
    records: &[u8],
    h: &BatchHeader,
    limits: Limits,
) -> Result<()> {
    let Limits {
        max_bytes,
        require_keys,
    } = limits;
    let walk = if codec == Codec::Snappy {
        // Snappy decodes whole blocks anyway: walk them in place.
        snappy_decompress(records, max_bytes).and_then(|data| walk_slice(&data, h, require_keys))
    } else {
        decoder(codec, records, max_bytes).and_then(|reader| {
            walk_records(&mut RecordStream::new(reader, max_bytes), h, require_keys)
        })
    };
    walk.map_err(|e| e.into_error(codec, h))
}

/// Why a walk over a compressed stream stopped.
#[derive(Debug)]
enum WalkError {
    /// The codec failed: the payload is not what the codec writes.
    Codec(String),
    /// The decompressed bytes exceed the bound.
    TooLarge(u64),
    /// The decompressed bytes are not the records the header announces.
    Record(String),
}

impl WalkError {
    fn into_error(self, codec: Codec, h: &BatchHeader) -> Error {
        match self {
            WalkError::Codec(e) => Error::CorruptBatch {
                offset: h.base_offset,
                reason: format!("{} payload cannot be decompressed: {e}", codec.name()),
            },
            WalkError::TooLarge(max) => Error::DecompressedTooLarge {
                offset: h.base_offset,
                max,
            },
            WalkError::Record(what) => Error::InvalidRecord(format!(
                "{} batch at offset {}: {what}",
                codec.name(),
                h.base_offset
            )),
        }
    }
}

type Walk<T> = std::result::Result<T, WalkError>;

/// A reader of the decompressed stream for `codec`.
fn decoder<'a>(codec: Codec, payload: &'a [u8], max_bytes: u64) -> Walk<Box<dyn Read + 'a>> {
    let codec_err = |e: io::Error| WalkError::Codec(e.to_string());
    Ok(match codec {
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(payload)),
        Codec::Snappy => Box::new(io::Cursor::new(snappy_decompress(payload, max_bytes)?)),
        Codec::Lz4 => {
            check_lz4_frame_descriptor(payload)?;
            Box::new(Lz4Frame(Some(
                lz4::Decoder::new(payload).map_err(codec_err)?,
            )))
        }
        Codec::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(payload).map_err(codec_err)?)
        }
    })
}

/// Snappy in either framing snappy-java reads: the xerial stream (chunks of raw blocks after a
/// 16-byte header) or, without its magic, one raw block. Every block's decompressed length is
/// read from its header and checked against the bound before anything is allocated.
fn snappy_decompress(payload: &[u8], max_bytes: u64) -> Walk<Vec<u8>> {
    let bad = |e: snap::Error| WalkError::Codec(e.to_string());
    let mut blocks: Vec<&[u8]> = Vec::new();
    if payload.len() >= XERIAL_HEADER_LEN && payload[..8] == XERIAL_MAGIC {
        let mut at = XERIAL_HEADER_LEN;
        while at < payload.len() {
            let len = payload
                .get(at..at + 4)
                .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
                .ok_or_else(|| WalkError::Codec("xerial chunk length cut short".into()))?;
            at += 4;
            let block = payload
                .get(at..at.saturating_add(len))
                .ok_or_else(|| WalkError::Codec("xerial chunk past the end".into()))?;
            blocks.push(block);
            at += len;
        }
    } else {
        blocks.push(payload);
    }
    let mut total = 0u64;
    for b in &blocks {
        let len = snap::raw::decompress_len(b).map_err(bad)? as u64;
        // A snappy element expands 3 bytes into at most 64; a block declaring more than that
        // ratio allows is not snappy (random bytes usually read as a huge length).
        if len > (b.len() as u64).saturating_mul(SNAPPY_MAX_RATIO) {
            return Err(WalkError::Codec(format!(
                "snappy block of {} bytes declares {len} bytes",
                b.len()
            )));
        }
        total += len;
        if total > max_bytes {
            return Err(WalkError::TooLarge(max_bytes));
        }
    }
    let mut out = vec![0u8; total as usize];
    let mut at = 0;
    let mut dec = snap::raw::Decoder::new();
    for b in blocks {
        if b.is_empty() {
            continue;
        }
        at += dec.decompress(b, &mut out[at..]).map_err(bad)?;
    }
    Ok(out)
}

/// The frame descriptor checks of `KafkaLZ4BlockInputStream` that liblz4 does not make: Kafka
/// decompresses every block on its own, so a frame with linked blocks cannot be read by a Java
/// consumer and is refused, as Kafka's leader refuses it.
fn check_lz4_frame_descriptor(payload: &[u8]) -> Walk<()> {
    if payload.len() < 6 {
        return Err(WalkError::Codec("lz4 frame shorter than its header".into()));
    }
    let magic = u32::from_le_bytes(payload[..4].try_into().expect("4 bytes"));
    if magic != LZ4_MAGIC {
        return Err(WalkError::Codec(format!(
            "not an lz4 frame (magic {magic:#010x})"
        )));
    }
    let flg = payload[4];
    if flg & 0x20 == 0 {
        return Err(WalkError::Codec(
            "lz4 frame with linked blocks (Kafka reads independent blocks only)".into(),
        ));
    }
    Ok(())
}

/// liblz4's frame decoder ends a truncated frame as if it were complete; this one reports a
/// frame without its end mark as the codec error Kafka's reader raises ("stream ended
/// prematurely").
struct Lz4Frame<'a>(Option<lz4::Decoder<&'a [u8]>>);

impl Read for Lz4Frame<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(dec) = self.0.as_mut() else {
            return Ok(0);
        };
        let n = dec.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let dec = self.0.take().expect("checked above");
            dec.finish().1.map_err(|_| {
                io::Error::new(io::ErrorKind::UnexpectedEof, "lz4 frame ended early")
            })?;
        }
        Ok(n)
    }
}

/// The decompressed records, read through a small window and counted against the bound.
struct RecordStream<'a> {
    inner: Box<dyn Read + 'a>,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    /// Decompressed bytes read so far.
    total: u64,
    max_bytes: u64,
}

/// Window over the decompressed stream: records inside it are checked in place, in one pass
/// (`batch::check_record`); only a record across its edge is read byte by byte.
const WINDOW: usize = 64 * 1024;

impl<'a> RecordStream<'a> {
    fn new(inner: Box<dyn Read + 'a>, max_bytes: u64) -> RecordStream<'a> {
        RecordStream {
            inner,
            buf: vec![0u8; WINDOW].into_boxed_slice(),
            pos: 0,
            len: 0,
            total: 0,
            max_bytes,
        }
    }

    /// Refills the window; `false` at the clean end of the stream.
    fn fill(&mut self) -> Walk<bool> {
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.total += n as u64;
                    if self.total > self.max_bytes {
                        return Err(WalkError::TooLarge(self.max_bytes));
                    }
                    self.pos = 0;
                    self.len = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(WalkError::Codec(e.to_string())),
            }
        }
    }

    /// The next byte; `None` at the end of the stream.
    fn byte(&mut self) -> Walk<Option<u8>> {
        if self.pos == self.len && !self.fill()? {
            return Ok(None);
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(Some(b))
    }

    /// Skips `n` bytes; `false` if the stream ended first.
    fn skip(&mut self, mut n: usize) -> Walk<bool> {
        while n > 0 {
            if self.pos == self.len && !self.fill()? {
                return Ok(false);
            }
            let step = n.min(self.len - self.pos);
            self.pos += step;
            n -= step;
        }
        Ok(true)
    }
}

fn premature_eof() -> WalkError {
    WalkError::Record("declared record count not reached: the records end early".into())
}

/// One record being read: every field is charged against the record's declared length.
struct RecordReader<'s, 'a> {
    stream: &'s mut RecordStream<'a>,
    /// Bytes of the record body not yet read.
    remaining: usize,
}

impl RecordReader<'_, '_> {
    fn byte(&mut self) -> Walk<u8> {
        if self.remaining == 0 {
            return Err(WalkError::Record(
                "record fields run past its length".into(),
            ));
        }
        self.remaining -= 1;
        self.stream.byte()?.ok_or_else(premature_eof)
    }

    /// A zigzag varlong of at most 10 bytes (`ByteUtils.readVarlong`).
    fn varlong(&mut self) -> Walk<i64> {
        let mut raw = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            raw |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        Err(WalkError::Record("varint longer than 10 bytes".into()))
    }

    /// A zigzag varint of at most 5 bytes (`ByteUtils.readVarint`).
    fn varint(&mut self) -> Walk<i32> {
        let mut raw = 0u32;
        for i in 0..5 {
            let b = self.byte()?;
            raw |= ((b & 0x7f) as u32) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32));
            }
        }
        Err(WalkError::Record("varint longer than 5 bytes".into()))
    }

    /// A length-prefixed field (key, value, header key or value), skipped.
    fn skip_field(&mut self, what: &str, nullable: bool) -> Walk<()> {
        let len = self.varint()?;
        if len == -1 && nullable {
            return Ok(());
        }
        if len < 0 {
            return Err(WalkError::Record(format!("{what} has length {len}")));
        }
        let len = len as usize;
        if len > self.remaining {
            return Err(WalkError::Record(format!(
                "{what} of {len} bytes runs past the record's length"
            )));
        }
        self.remaining -= len;
        if !self.stream.skip(len)? {
            return Err(premature_eof());
        }
        Ok(())
    }
}

/// The records of a batch held whole in memory (snappy): exactly `record_count` of them, then
/// the end.
fn walk_slice(data: &[u8], h: &BatchHeader, require_keys: bool) -> Walk<()> {
    let mut at = 0;
    for i in 0..h.record_count {
        at = match check_record(data, at, i, require_keys) {
            Ok(end) => end,
            Err(RecordError::Incomplete) => return Err(premature_eof()),
            Err(RecordError::Invalid(what)) => return Err(WalkError::Record(what)),
        };
    }
    if at != data.len() {
        return Err(WalkError::Record(format!(
            "bytes remain after the {} declared records",
            h.record_count
        )));
    }
    Ok(())
}

/// Kafka's record iterator over a compressed batch, as the leader uses it.
fn walk_records(stream: &mut RecordStream<'_>, h: &BatchHeader, require_keys: bool) -> Walk<()> {
    for i in 0..h.record_count {
        // Fast path: the whole record is inside the window.
        match check_record(&stream.buf[..stream.len], stream.pos, i, require_keys) {
            Ok(end) => {
                stream.pos = end;
                continue;
            }
            Err(RecordError::Invalid(what)) => return Err(WalkError::Record(what)),
            Err(RecordError::Incomplete) => {} // across the window's edge: byte by byte
        }
        // The length prefix: the stream may end cleanly only before a record starts.
        let mut first = RecordReader {
            stream,
            remaining: 5,
        };
        let len = first.varint()?;
        if len < 1 {
            return Err(WalkError::Record(format!("record {i} has length {len}")));
        }
        let mut r = RecordReader {
            stream,
            remaining: len as usize,
        };
        r.byte()?; // attributes (unused in v2)
        r.varlong()?; // timestamp delta
        let offset_delta = r.varint()?;
        if offset_delta != i {
            return Err(WalkError::Record(format!(
                "record {i} has offset delta {offset_delta}"
            )));
        }
        if require_keys {
            // A null key is the varint -1, one byte (zigzag 1).
            let key_len = r.varint()?;
            if key_len == -1 {
                return Err(WalkError::Record(no_key(i)));
            }
            if key_len < 0 || key_len as usize > r.remaining {
                return Err(WalkError::Record(format!(
                    "key of {key_len} bytes does not fit the record"
                )));
            }
            r.remaining -= key_len as usize;
            if !r.stream.skip(key_len as usize)? {
                return Err(premature_eof());
            }
        } else {
            r.skip_field("key", true)?;
        }
        r.skip_field("value", true)?;
        let headers = r.varint()?;
        if headers < 0 {
            return Err(WalkError::Record(format!(
                "record {i} has {headers} headers"
            )));
        }
        for _ in 0..headers {
            r.skip_field("header key", false)?;
            r.skip_field("header value", true)?;
        }
        if r.remaining != 0 {
            return Err(WalkError::Record(format!(
                "record {i}'s fields end {} bytes before its length",
                r.remaining
            )));
        }
    }
    if stream.byte()?.is_some() {
        return Err(WalkError::Record(format!(
            "bytes remain after the {} declared records",
            h.record_count
        )));
    }
    Ok(())
}

// ---- writing (tests, benchmarks, tools) ---------------------------------------------------

/// Snappy framing to write: what librdkafka writes (one raw block) or what the Java producer
/// writes (snappy-java's xerial stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnappyFraming {
    Raw,
    Xerial,
}

/// Compresses `data` as a producer would for `codec` (snappy as one raw block, lz4 as a frame of
/// independent blocks).
pub fn compress(codec: Codec, data: &[u8]) -> Vec<u8> {
    compress_with(codec, data, SnappyFraming::Raw)
}

/// [`compress`] with the snappy framing chosen.
pub fn compress_with(codec: Codec, data: &[u8], framing: SnappyFraming) -> Vec<u8> {
    // Writing into a Vec cannot fail; the codecs' own errors would be bugs in them.
    match codec {
        Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).expect("gzip into a Vec");
            e.finish().expect("gzip into a Vec")
        }
        Codec::Snappy => match framing {
            SnappyFraming::Raw => snap::raw::Encoder::new()
                .compress_vec(data)
                .expect("snappy input under 4 GiB"),
            SnappyFraming::Xerial => {
                // snappy-java writes 32 KiB chunks after a header of magic, version 1 and
                // compatible version 1.
                let mut out = XERIAL_MAGIC.to_vec();
                out.extend_from_slice(&1i32.to_be_bytes());
                out.extend_from_slice(&1i32.to_be_bytes());
                let mut enc = snap::raw::Encoder::new();
                for chunk in data.chunks(32 * 1024) {
                    let block = enc.compress_vec(chunk).expect("snappy chunk");
                    out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                    out.extend_from_slice(&block);
                }
                out
            }
        },
        Codec::Lz4 => {
            let mut e = lz4::EncoderBuilder::new()
                .block_mode(lz4::BlockMode::Independent)
                .build(Vec::new())
                .expect("lz4 encoder");
            e.write_all(data).expect("lz4 into a Vec");
            let (out, r) = e.finish();
            r.expect("lz4 into a Vec");
            out
        }
        Codec::Zstd => zstd::stream::encode_all(data, 3).expect("zstd into a Vec"),
    }
}

/// The uncompressed v2 batch `batch` with its records compressed by `codec`: attributes,
/// batchLength and CRC rewritten, every other header field kept.
pub fn compress_batch(batch: &[u8], codec: Codec) -> Vec<u8> {
    compress_batch_with(batch, codec, SnappyFraming::Raw)
}

/// [`compress_batch`] with the snappy framing chosen.
pub fn compress_batch_with(batch: &[u8], codec: Codec, framing: SnappyFraming) -> Vec<u8> {
    let payload = compress_with(codec, &batch[RECORD_BATCH_OVERHEAD..], framing);
    with_payload(&batch[..RECORD_BATCH_OVERHEAD], codec, &payload)
}

/// A batch of `header` (61 bytes) with `payload` as its records area, flagged with `codec`,
/// its length and CRC made right (tests build corrupt payloads with it).
pub fn with_payload(header: &[u8], codec: Codec, payload: &[u8]) -> Vec<u8> {
    let mut b = header[..RECORD_BATCH_OVERHEAD].to_vec();
    b.extend_from_slice(payload);
    let attrs = i16::from_be_bytes([b[ATTRIBUTES_OFFSET], b[ATTRIBUTES_OFFSET + 1]]);
    let attrs = (attrs & !COMPRESSION_CODEC_MASK) | codec.id();
    b[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
    let len = (b.len() - LOG_OVERHEAD) as i32;
    b[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&len.to_be_bytes());
    let crc = compute_crc(&b);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{
        build_batch, build_batch_with, validate_batch, validate_stored_batch, NewRecord,
        LAST_OFFSET_DELTA_OFFSET, RECORDS_COUNT_OFFSET,
    };

    /// Deterministic noise for payloads no codec wrote.
    fn noise(n: usize, mut seed: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    /// A producer's uncompressed batch: `n` records with keys and values of a few sizes.
    fn plain(n: i32) -> Vec<u8> {
        let values: Vec<Vec<u8>> = (0..n)
            .map(|i| vec![b'a' + (i % 26) as u8; 10 + i as usize])
            .collect();
        let keys: Vec<String> = (0..n).map(|i| format!("key-{i}")).collect();
        let recs: Vec<NewRecord> = (0..n)
            .map(|i| NewRecord {
                offset_delta: i,
                timestamp: 1_700_000_000_000 + i as i64,
                key: (i % 3 != 0).then(|| keys[i as usize].as_bytes()),
                value: Some(&values[i as usize]),
            })
            .collect();
        build_batch_with(0, -1, &recs, 7, 0, 0, 0)
    }

    /// Every codec's output as the crates write it (and snappy in both framings) is accepted,
    /// with the header the producer wrote.
    #[test]
    fn a_batch_compressed_by_each_codec_is_accepted() {
        let b = plain(200);
        let mut variants: Vec<(&str, Vec<u8>)> = Codec::ALL
            .iter()
            .map(|c| (c.name(), compress_batch(&b, *c)))
            .collect();
        variants.push((
            "snappy xerial",
            compress_batch_with(&b, Codec::Snappy, SnappyFraming::Xerial),
        ));
        for (name, c) in variants {
            assert!(c.len() < b.len(), "{name} compresses");
            let h = validate_batch(&c).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(h.record_count, 200, "{name}");
            assert_eq!(h.producer_id, 7, "{name}");
            assert_eq!(
                Codec::from_attributes(h.attributes).map(Codec::name),
                Some(name.split(' ').next().unwrap())
            );
        }
    }

    /// Records of many sizes over several 64 KiB windows: those across a window's edge take
    /// the byte-by-byte path and are checked the same (accepted when right, offset delta
    /// checked when not).
    #[test]
    fn records_across_window_edges_are_checked_like_the_others() {
        let values: Vec<Vec<u8>> = (0..3000).map(|i| vec![b'v'; (i * 37) % 700]).collect();
        let build = |bad_at: Option<usize>| {
            let recs: Vec<NewRecord> = (0..3000)
                .map(|i| NewRecord {
                    offset_delta: if Some(i) == bad_at { 0 } else { i as i32 },
                    timestamp: 5,
                    key: None,
                    value: Some(&values[i]),
                })
                .collect();
            build_batch(0, -1, &recs)
        };
        let good = build(None);
        assert!(good.len() > 10 * WINDOW, "{} bytes", good.len());
        for codec in Codec::ALL {
            validate_batch(&compress_batch(&good, codec))
                .unwrap_or_else(|e| panic!("{}: {e}", codec.name()));
        }
        // Break a record that crosses the first window edge (when reads fill whole windows),
        // the one after it, and one near the end.
        let mut at = RECORD_BATCH_OVERHEAD;
        let mut crossing = None;
        for i in 0..3000 {
            let (len, n) = crate::batch::read_varint(&good[at..]).unwrap();
            let end = at + n + len as usize;
            let (start, stop) = (at - RECORD_BATCH_OVERHEAD, end - RECORD_BATCH_OVERHEAD);
            if i > 0 && start / WINDOW != (stop - 1) / WINDOW && crossing.is_none() {
                crossing = Some(i);
            }
            at = end;
        }
        let crossing = crossing.expect("a record across a window edge");
        for bad in [crossing, crossing + 1, 2998] {
            let b = build(Some(bad));
            for codec in Codec::ALL {
                let e = validate_batch(&compress_batch(&b, codec)).unwrap_err();
                assert_eq!(
                    e.kafka_error_code(),
                    87,
                    "{} record {bad}: {e}",
                    codec.name()
                );
                assert!(
                    e.to_string()
                        .contains(&format!("record {bad} has offset delta 0")),
                    "{e}"
                );
            }
        }
    }

    /// Kafka: the CRC covers the compressed bytes only. Noise with a correct CRC is refused
    /// with CORRUPT_MESSAGE for every codec (the defect of issue 22 stored it).
    #[test]
    fn noise_with_a_correct_crc_is_corrupt_message_for_each_codec() {
        let header = &plain(3)[..RECORD_BATCH_OVERHEAD];
        for codec in Codec::ALL {
            for (i, len) in [1usize, 7, 100, 5000].into_iter().enumerate() {
                let b = with_payload(header, codec, &noise(len, 0x9E37_79B9 + i as u64));
                let e = validate_batch(&b).unwrap_err();
                assert_eq!(e.kafka_error_code(), 2, "{} {len}: {e}", codec.name());
                // A follower or a recovery trusts the CRC, as Kafka does.
                validate_stored_batch(&b).unwrap();
            }
        }
    }

    /// A payload cut short (its CRC recomputed) is refused: the codec sees its stream end
    /// before its end mark or checksum.
    #[test]
    fn a_truncated_payload_is_refused_for_each_codec() {
        let b = plain(50);
        for codec in Codec::ALL {
            let c = compress_batch(&b, codec);
            let payload = &c[RECORD_BATCH_OVERHEAD..];
            for cut in [1, 4, payload.len() / 2] {
                let t = with_payload(&c, codec, &payload[..payload.len() - cut]);
                let e = validate_batch(&t).unwrap_err();
                assert!(
                    [2, 87].contains(&e.kafka_error_code()),
                    "{} cut {cut}: {e}",
                    codec.name()
                );
            }
        }
    }

    /// Rewrites the count and lastOffsetDelta of a batch (the header check passes) and the CRC.
    fn with_count(b: &[u8], count: i32) -> Vec<u8> {
        let mut b = b.to_vec();
        b[RECORDS_COUNT_OFFSET..RECORDS_COUNT_OFFSET + 4].copy_from_slice(&count.to_be_bytes());
        b[LAST_OFFSET_DELTA_OFFSET..LAST_OFFSET_DELTA_OFFSET + 4]
            .copy_from_slice(&(count - 1).to_be_bytes());
        let crc = compute_crc(&b);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Kafka: `DefaultRecordBatch.RecordIterator` reads exactly the declared count, then
    /// expects the end of the stream; more or fewer records are INVALID_RECORD.
    #[test]
    fn a_record_count_that_does_not_match_the_stream_is_invalid_record() {
        let b = plain(10);
        for codec in Codec::ALL {
            let c = compress_batch(&b, codec);
            for count in [9, 11, 1, 1000] {
                let e = validate_batch(&with_count(&c, count)).unwrap_err();
                assert_eq!(
                    e.kafka_error_code(),
                    87,
                    "{} count {count}: {e}",
                    codec.name()
                );
            }
        }
    }

    /// Offset deltas inside a compressed batch must be 0, 1, 2 ... (Kafka re-compresses such
    /// a batch from old clients; we refuse it, see the module doc).
    #[test]
    fn inner_offset_deltas_out_of_order_are_invalid_record() {
        let recs: Vec<NewRecord> = [0, 5, 2]
            .iter()
            .map(|d| NewRecord {
                offset_delta: *d,
                timestamp: 1,
                key: None,
                value: Some(b"v"),
            })
            .collect();
        let b = build_batch(0, -1, &recs); // lastOffsetDelta 2, count 3: the header is fine
        for codec in Codec::ALL {
            let e = validate_batch(&compress_batch(&b, codec)).unwrap_err();
            assert_eq!(e.kafka_error_code(), 87, "{}: {e}", codec.name());
            assert!(e.to_string().contains("offset delta 5"), "{e}");
        }
    }

    /// A record whose fields do not fill its length exactly (here: one header claimed that
    /// is not there) is INVALID_RECORD, as Kafka's `readPartiallyFrom` answers.
    #[test]
    fn a_malformed_record_inside_the_stream_is_invalid_record() {
        let b = plain(1);
        let mut records = b[RECORD_BATCH_OVERHEAD..].to_vec();
        let last = records.len() - 1;
        assert_eq!(records[last], 0, "header count");
        records[last] = 2; // one header, whose key would run past the record
        for codec in Codec::ALL {
            let mut c = b[..RECORD_BATCH_OVERHEAD].to_vec();
            c.extend_from_slice(&records);
            let c = compress_batch(&c, codec);
            let e = validate_batch(&c).unwrap_err();
            assert_eq!(e.kafka_error_code(), 87, "{}: {e}", codec.name());
        }
    }

    /// Records beyond the bound are refused with MESSAGE_TOO_LARGE, for every codec, before
    /// the stream is read to its end.
    #[test]
    fn records_beyond_the_bound_are_message_too_large_for_each_codec() {
        // One record with a 300 KB value of zeros: a few hundred bytes once compressed.
        let zeros = vec![0u8; 300_000];
        let b = build_batch(
            0,
            -1,
            &[NewRecord {
                offset_delta: 0,
                timestamp: 1,
                key: None,
                value: Some(&zeros),
            }],
        );
        for codec in Codec::ALL {
            let c = compress_batch(&b, codec);
            let h = BatchHeader::parse(&c);
            let records = &c[RECORD_BATCH_OVERHEAD..];
            let limits = |max_bytes| Limits {
                max_bytes,
                require_keys: false,
            };
            validate_compressed_records_bounded(codec, records, &h, limits(400_000)).unwrap();
            let e = validate_compressed_records_bounded(codec, records, &h, limits(100_000))
                .unwrap_err();
            assert_eq!(e.kafka_error_code(), 10, "{}: {e}", codec.name());
        }
    }

    /// A zstd bomb against the real bound: 101 MB of one record's zeros in about 10 KB. The
    /// walk stops at the bound with MESSAGE_TOO_LARGE; memory stays the 16 KiB window.
    #[test]
    fn a_zstd_bomb_is_refused_at_the_real_bound() {
        let value_len: i64 = 101_000_000;
        let mut body = vec![0u8]; // attributes
        crate::batch::write_varlong(0, &mut body); // timestamp delta
        crate::batch::write_varint(0, &mut body); // offset delta
        crate::batch::write_varint(-1, &mut body); // null key
        crate::batch::write_varlong(value_len, &mut body);
        let body_len = body.len() as i64 + value_len + 1; // + header count
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        let mut prefix = Vec::new();
        crate::batch::write_varlong(body_len, &mut prefix);
        enc.write_all(&prefix).unwrap();
        enc.write_all(&body).unwrap();
        let chunk = vec![0u8; 1 << 20];
        let mut left = value_len as usize;
        while left > 0 {
            let n = left.min(chunk.len());
            enc.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
        enc.write_all(&[0]).unwrap(); // no headers
        let payload = enc.finish().unwrap();
        assert!(payload.len() < 20_000, "{} bytes", payload.len());
        let header = &build_batch(
            0,
            -1,
            &[NewRecord {
                offset_delta: 0,
                timestamp: 1,
                key: None,
                value: None,
            }],
        )[..RECORD_BATCH_OVERHEAD];
        let b = with_payload(header, Codec::Zstd, &payload);
        let e = validate_batch(&b).unwrap_err();
        assert_eq!(e.kafka_error_code(), 10, "{e}");
    }

    /// Kafka's lz4 reader decompresses each block alone: a frame of linked blocks is refused.
    #[test]
    fn an_lz4_frame_with_linked_blocks_is_corrupt_message() {
        let b = plain(20);
        let mut e = lz4::EncoderBuilder::new()
            .block_mode(lz4::BlockMode::Linked)
            .build(Vec::new())
            .unwrap();
        e.write_all(&b[RECORD_BATCH_OVERHEAD..]).unwrap();
        let (payload, r) = e.finish();
        r.unwrap();
        let c = with_payload(&b, Codec::Lz4, &payload);
        let err = validate_batch(&c).unwrap_err();
        assert_eq!(err.kafka_error_code(), 2, "{err}");
    }

    /// snappy-java's framing: a chunk running past the payload, or a block declaring more than
    /// snappy can expand to, is corrupt.
    #[test]
    fn broken_snappy_framing_is_corrupt_message() {
        let b = plain(20);
        let c = compress_batch_with(&b, Codec::Snappy, SnappyFraming::Xerial);
        let mut payload = c[RECORD_BATCH_OVERHEAD..].to_vec();
        // First chunk length (after the 16-byte header) made larger than what follows.
        payload[XERIAL_HEADER_LEN..XERIAL_HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let e = validate_batch(&with_payload(&c, Codec::Snappy, &payload)).unwrap_err();
        assert_eq!(e.kafka_error_code(), 2, "{e}");
        // A raw block whose length varint says 100 MB in a few bytes.
        let mut raw = Vec::new();
        let mut v: u32 = 100_000_000;
        while v >= 0x80 {
            raw.push((v as u8) | 0x80);
            v >>= 7;
        }
        raw.push(v as u8);
        raw.extend_from_slice(&[0, 0, 0]);
        let e = validate_batch(&with_payload(&c, Codec::Snappy, &raw)).unwrap_err();
        assert_eq!(e.kafka_error_code(), 2, "{e}");
    }
}
