//! One segment of a partition log: a `.log` file of batches plus its two indexes.
//!
//! Kafka class mirrored: `kafka.log.LogSegment`. Files are named by the segment's base offset,
//! 20 digits zero-padded (`00000000000000000000.log`, `.index`, `.timeindex`). Appends go to the
//! end of the `.log`; when more than `index.interval.bytes` were written since the last index
//! entry, the offset index gets (last offset of this append -> position where it starts) and the
//! time index (max timestamp so far -> its offset).
//!
//! Invariants: the `.log` holds whole batches back to back up to `size`; offsets increase; index
//! positions are batch boundaries below `size`. A segment that was not flushed may end in a torn
//! batch after a crash: [`LogSegment::recover`] re-reads it, checks every CRC, cuts the file at the
//! first bad batch and rebuilds both indexes.
//!
//! Reads are one `pread` of the byte range into a buffer handed out as `Bytes`: no per-record
//! work, only a walk over batch headers to stop at a whole batch.

use crate::batch::{self, BatchHeader, Scan, LOG_OVERHEAD, RECORD_BATCH_OVERHEAD};
use crate::config::LogConfig;
use crate::error::{IoContext, Result};
use crate::index::OffsetIndex;
use crate::time_index::TimeIndex;
use bytes::Bytes;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// File name of a segment file: base offset as 20 digits, then the suffix (`.log`, ...).
pub fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}{suffix}")
}

pub struct LogSegment {
    pub(crate) base_offset: i64,
    log_path: PathBuf,
    /// The `.log` file, opened on first use: a broker hosting tens of thousands of partitions,
    /// most of them idle, would otherwise need a descriptor for every one of them.
    log: OnceLock<File>,
    /// Bytes of whole batches in the `.log` (the write position).
    size: u64,
    pub(crate) offset_index: OffsetIndex,
    pub(crate) time_index: TimeIndex,
    /// Bytes appended since the last offset index entry.
    bytes_since_last_index_entry: u64,
    /// Largest timestamp in the segment and the offset that carried it (-1 if none).
    pub(crate) max_timestamp_so_far: i64,
    pub(crate) offset_of_max_timestamp: i64,
    /// The offset after the last batch (== base_offset when empty).
    pub(crate) next_offset: i64,
    /// Wall clock when this segment was created or opened (for `segment.ms` without timestamps).
    created_ms: i64,
    /// Max timestamp of the first batch appended, which `segment.ms` counts from.
    rolling_based_timestamp: Option<i64>,
    index_interval_bytes: u64,
}

/// Reads exactly `len` bytes at `pos` into a new buffer without zeroing it first: for a 1 MiB
/// fetch, zero-filling costs about a third of the time of the copy from the page cache.
fn read_uninit(file: &File, len: usize, pos: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::io::AsRawFd;
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    let mut done = 0usize;
    while done < len {
        // SAFETY: the pointer is inside the allocation of `buf` (capacity `len`), and pread writes
        // at most `len - done` bytes there; the bytes are only exposed after `set_len` below,
        // once written.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                buf.as_mut_ptr().add(done) as *mut libc::c_void,
                len - done,
                (pos + done as u64) as libc::off_t,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        done += n as usize;
    }
    // SAFETY: all `len` bytes were written by pread above.
    unsafe { buf.set_len(len) };
    Ok(buf)
}

fn scan_error(size: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("malformed batch framing below size {size}"),
    )
}

impl LogSegment {
    /// Creates an empty segment with preallocated indexes.
    pub fn create(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        now_ms: i64,
    ) -> Result<LogSegment> {
        let log_path = dir.join(file_name(base_offset, ".log"));
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .ctx(&log_path)?;
        let log = OnceLock::new();
        let (mut offset_index, _) = OffsetIndex::open(
            &dir.join(file_name(base_offset, ".index")),
            base_offset,
            config.segment_index_bytes,
        )?;
        offset_index.reset()?;
        offset_index.preallocate()?;
        let (mut time_index, _) = TimeIndex::open(
            &dir.join(file_name(base_offset, ".timeindex")),
            base_offset,
            config.segment_index_bytes,
        )?;
        time_index.reset()?;
        time_index.preallocate()?;
        Ok(LogSegment {
            base_offset,
            log_path,
            log,
            size: 0,
            offset_index,
            time_index,
            bytes_since_last_index_entry: 0,
            max_timestamp_so_far: -1,
            offset_of_max_timestamp: -1,
            next_offset: base_offset,
            created_ms: now_ms,
            rolling_based_timestamp: None,
            index_interval_bytes: config.index_interval_bytes,
        })
    }

    /// Opens an existing segment. Returns it and whether its indexes looked sane; the caller
    /// runs [`LogSegment::recover`] when they did not or when the segment was not flushed.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        now_ms: i64,
    ) -> Result<(LogSegment, bool)> {
        let log_path = dir.join(file_name(base_offset, ".log"));
        let size = std::fs::metadata(&log_path).ctx(&log_path)?.len();
        let log = OnceLock::new();
        let index_path = dir.join(file_name(base_offset, ".index"));
        let time_path = dir.join(file_name(base_offset, ".timeindex"));
        let index_existed = index_path.exists() && time_path.exists();
        let (offset_index, sane1) =
            OffsetIndex::open(&index_path, base_offset, config.segment_index_bytes)?;
        let (time_index, sane2) =
            TimeIndex::open(&time_path, base_offset, config.segment_index_bytes)?;
        let mut seg = LogSegment {
            base_offset,
            log_path,
            log,
            size,
            offset_index,
            time_index,
            bytes_since_last_index_entry: 0,
            max_timestamp_so_far: -1,
            offset_of_max_timestamp: -1,
            next_offset: base_offset,
            created_ms: now_ms,
            rolling_based_timestamp: None,
            index_interval_bytes: config.index_interval_bytes,
        };
        let mut sane = index_existed && sane1 && sane2 && seg.offset_index.sane_for(size);
        if sane {
            // Find the end by scanning headers from the last index entry (Kafka does the same
            // to learn the next offset), picking up timestamps on the way.
            let start = seg.offset_index.last_entry().map_or(0, |(_, p)| p as u64);
            if let Some((ts, off)) = seg.time_index.last_entry() {
                seg.max_timestamp_so_far = ts;
                seg.offset_of_max_timestamp = off;
            }
            match seg.scan_headers_from(start) {
                Ok(()) => {
                    seg.bytes_since_last_index_entry = size - start;
                }
                Err(_) => sane = false,
            }
            if sane {
                if let Some((_, off)) = seg.time_index.last_entry() {
                    if off >= seg.next_offset && seg.size > 0 {
                        sane = false;
                    }
                }
            }
        }
        Ok((seg, sane))
    }

    fn scan_headers_from(&mut self, mut pos: u64) -> std::io::Result<()> {
        let mut hdr = [0u8; RECORD_BATCH_OVERHEAD];
        while pos < self.size {
            if self.size - pos < RECORD_BATCH_OVERHEAD as u64 {
                return Err(scan_error(self.size));
            }
            self.log_file_io()?.read_exact_at(&mut hdr, pos)?;
            let h = BatchHeader::parse(&hdr);
            if h.magic != 2
                || (h.batch_length as i64) < (RECORD_BATCH_OVERHEAD - LOG_OVERHEAD) as i64
                || pos + h.size() as u64 > self.size
            {
                return Err(scan_error(self.size));
            }
            self.note_batch(&h);
            pos += h.size() as u64;
        }
        Ok(())
    }

    /// Calls `f` with every batch header of the segment, in order (producer state rebuild).
    /// Stops at the first header that does not describe a whole batch inside the file.
    pub fn for_each_header(&self, mut f: impl FnMut(&BatchHeader)) -> Result<()> {
        if self.size < RECORD_BATCH_OVERHEAD as u64 {
            return Ok(());
        }
        // A segment not in use yet keeps no descriptor: read through a temporary one.
        let temporary;
        let file = match self.log.get() {
            Some(f) => f,
            None => {
                temporary = File::open(&self.log_path).ctx(&self.log_path)?;
                &temporary
            }
        };
        let mut hdr = [0u8; RECORD_BATCH_OVERHEAD];
        let mut pos = 0u64;
        while self.size - pos >= RECORD_BATCH_OVERHEAD as u64 {
            file.read_exact_at(&mut hdr, pos).ctx(&self.log_path)?;
            let h = BatchHeader::parse(&hdr);
            if (h.batch_length as i64) < (RECORD_BATCH_OVERHEAD - LOG_OVERHEAD) as i64
                || pos + h.size() as u64 > self.size
            {
                break;
            }
            f(&h);
            pos += h.size() as u64;
        }
        Ok(())
    }

    fn note_batch(&mut self, h: &BatchHeader) {
        if h.max_timestamp > self.max_timestamp_so_far {
            self.max_timestamp_so_far = h.max_timestamp;
            self.offset_of_max_timestamp = h.last_offset();
        }
        if self.rolling_based_timestamp.is_none() {
            self.rolling_based_timestamp = Some(h.max_timestamp);
        }
        self.next_offset = h.next_offset();
    }

    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
    /// The `.log` file, opened now if this is its first use.
    fn log_file(&self) -> Result<&File> {
        self.log_file_io().ctx(&self.log_path)
    }

    fn log_file_io(&self) -> std::io::Result<&File> {
        if let Some(f) = self.log.get() {
            return Ok(f);
        }
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.log_path)?;
        Ok(self.log.get_or_init(|| f))
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Kafka's `shouldRoll`: would appending `size` bytes with offsets up to `last_offset` and
    /// largest timestamp `max_timestamp` need a new segment? Time is measured as Kafka's
    /// `timeWaitedForRoll`: the new timestamp minus the first batch's, or wall clock minus the
    /// creation time when the segment has no timestamps.
    pub fn should_roll(
        &self,
        config: &LogConfig,
        size: u64,
        last_offset: i64,
        max_timestamp: i64,
        now_ms: i64,
    ) -> bool {
        let since = match self.rolling_based_timestamp {
            Some(t) if t >= 0 => max_timestamp - t,
            _ => now_ms - self.created_ms,
        };
        (self.size > 0 && (self.size + size > config.segment_bytes || since >= config.segment_ms))
            || self.offset_index.is_full()
            || self.time_index.is_full()
            || last_offset - self.base_offset > i32::MAX as i64
            || self.size + size > u32::MAX as u64
    }

    /// Appends the bytes of whole batches. `batches` are the headers of what `records` holds.
    pub fn append(&mut self, records: &[u8], batches: &[BatchHeader]) -> Result<()> {
        self.append_parts(&[records], batches)
    }

    /// Appends whole batches given as consecutive pieces (written in order, no copy into one
    /// buffer): the broker passes a patched batch prefix and the rest of the client's bytes.
    pub fn append_parts(&mut self, parts: &[&[u8]], batches: &[BatchHeader]) -> Result<()> {
        let Some(last) = batches.last() else {
            return Ok(());
        };
        let position = self.size;
        let mut at = position;
        for part in parts {
            self.log_file()?
                .write_all_at(part, at)
                .ctx(&self.log_path)?;
            at += part.len() as u64;
        }
        let written = at - position;
        for h in batches {
            self.note_batch(h);
        }
        if self.bytes_since_last_index_entry > self.index_interval_bytes {
            self.offset_index
                .append(last.last_offset(), position as u32)?;
            self.time_index
                .maybe_append(self.max_timestamp_so_far, self.offset_of_max_timestamp)?;
            self.bytes_since_last_index_entry = 0;
        }
        self.bytes_since_last_index_entry += written;
        self.size += written;
        Ok(())
    }

    /// Position and header of the first batch whose last offset is >= `offset`, at or after
    /// byte `from`. `None` when the segment has no such batch.
    pub fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        let (_, pos) = self.offset_index.lookup(offset);
        let mut pos = pos as u64;
        let mut hdr = [0u8; RECORD_BATCH_OVERHEAD];
        while pos + (RECORD_BATCH_OVERHEAD as u64) <= self.size {
            self.log_file()?
                .read_exact_at(&mut hdr, pos)
                .ctx(&self.log_path)?;
            let h = BatchHeader::parse(&hdr);
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.size() as u64;
        }
        Ok(None)
    }

    /// Whole batches starting with the one holding `start_offset`, at most `max_bytes` (or the
    /// first batch whole if `min_one_message`), none starting at or past `max_offset`.
    /// `None` when this segment has nothing at or after `start_offset`.
    pub fn read(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset: Option<i64>,
        min_one_message: bool,
    ) -> Result<Option<(Bytes, i64)>> {
        let Some((pos, first)) = self.find_batch(start_offset)? else {
            return Ok(None);
        };
        if max_offset.is_some_and(|m| first.base_offset >= m) {
            return Ok(Some((Bytes::new(), start_offset)));
        }
        let available = (self.size - pos) as usize;
        let mut want = max_bytes.min(available);
        if want < first.size() {
            if !min_one_message {
                return Ok(Some((Bytes::new(), start_offset)));
            }
            want = first.size();
        }
        let mut buf = read_uninit(self.log_file()?, want, pos).ctx(&self.log_path)?;
        // Walk headers to cut at the last whole batch below max_offset.
        let mut end = 0usize;
        while end + RECORD_BATCH_OVERHEAD <= buf.len() {
            let h = BatchHeader::parse(&buf[end..]);
            if end + h.size() > buf.len() || max_offset.is_some_and(|m| h.base_offset >= m) {
                break;
            }
            end += h.size();
        }
        buf.truncate(end);
        Ok(Some((Bytes::from(buf), start_offset)))
    }

    /// Reads the whole segment file (the cleaner and tests use it).
    pub fn read_all(&self) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.size as usize];
        self.log_file()?
            .read_exact_at(&mut buf, 0)
            .ctx(&self.log_path)?;
        Ok(buf)
    }

    /// Kafka's `LogSegment.recover`: re-reads every batch, checks framing and CRC, rebuilds both
    /// indexes and cuts the file after the last valid batch. Returns the bytes cut.
    pub fn recover(&mut self, max_message_bytes: usize) -> Result<u64> {
        self.offset_index.reset()?;
        self.time_index.reset()?;
        self.bytes_since_last_index_entry = 0;
        self.max_timestamp_so_far = -1;
        self.offset_of_max_timestamp = -1;
        self.next_offset = self.base_offset;
        self.rolling_based_timestamp = None;
        let file_size = std::fs::metadata(&self.log_path).ctx(&self.log_path)?.len();
        let mut pos = 0u64;
        let mut hdr = [0u8; RECORD_BATCH_OVERHEAD];
        let mut buf = Vec::new();
        let mut last_offset_seen = self.base_offset - 1;
        while pos + RECORD_BATCH_OVERHEAD as u64 <= file_size {
            self.log_file()?
                .read_exact_at(&mut hdr, pos)
                .ctx(&self.log_path)?;
            let h = match batch::scan(&hdr) {
                Scan::Corrupt(_) => break,
                _ => BatchHeader::parse(&hdr),
            };
            let size = h.size() as u64;
            if pos + size > file_size
                || h.size() > max_message_bytes.max(RECORD_BATCH_OVERHEAD) + LOG_OVERHEAD
                || h.base_offset <= last_offset_seen
            {
                break;
            }
            buf.resize(h.size(), 0);
            self.log_file()?
                .read_exact_at(&mut buf, pos)
                .ctx(&self.log_path)?;
            if batch::validate_stored_batch(&buf).is_err() {
                break;
            }
            last_offset_seen = h.last_offset();
            self.note_batch(&h);
            if self.bytes_since_last_index_entry > self.index_interval_bytes {
                self.offset_index.append(h.last_offset(), pos as u32)?;
                self.time_index
                    .maybe_append(self.max_timestamp_so_far, self.offset_of_max_timestamp)?;
                self.bytes_since_last_index_entry = 0;
            }
            self.bytes_since_last_index_entry += size;
            pos += size;
        }
        let truncated = file_size - pos;
        if truncated > 0 {
            self.log_file()?.set_len(pos).ctx(&self.log_path)?;
        }
        self.size = pos;
        Ok(truncated)
    }

    /// Cuts the segment before the first batch holding an offset >= `offset` (Kafka:
    /// `truncateTo`). Returns the bytes removed.
    pub fn truncate_to(&mut self, offset: i64) -> Result<u64> {
        let Some((pos, _)) = self.find_batch(offset)? else {
            return Ok(0);
        };
        let removed = self.size - pos;
        self.log_file()?.set_len(pos).ctx(&self.log_path)?;
        self.size = pos;
        self.offset_index.truncate_to(offset)?;
        self.time_index.truncate_to(offset)?;
        // Recompute what the cut removed from our summary by re-walking the headers.
        self.max_timestamp_so_far = -1;
        self.offset_of_max_timestamp = -1;
        self.next_offset = self.base_offset;
        self.rolling_based_timestamp = None;
        self.scan_headers_from(0).ctx(&self.log_path)?;
        let last_pos = self.offset_index.last_entry().map_or(0, |(_, p)| p as u64);
        self.bytes_since_last_index_entry = self.size - last_pos;
        Ok(removed)
    }

    /// The first offset with a timestamp >= `timestamp` in this segment, with that timestamp
    /// and the batch's leader epoch. Exact per record for uncompressed batches; for compressed
    /// ones the batch's base offset and max timestamp (we do not decompress).
    pub fn find_offset_by_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64, i32)>> {
        let start = self.time_index.lookup(timestamp);
        let Some((mut pos, _)) = self.find_batch(start)? else {
            return Ok(None);
        };
        let mut hdr = [0u8; RECORD_BATCH_OVERHEAD];
        while pos + RECORD_BATCH_OVERHEAD as u64 <= self.size {
            self.log_file()?
                .read_exact_at(&mut hdr, pos)
                .ctx(&self.log_path)?;
            let h = BatchHeader::parse(&hdr);
            if h.max_timestamp >= timestamp {
                if h.compression() == 0 && !h.is_log_append_time() {
                    let mut b = vec![0u8; h.size()];
                    self.log_file()?
                        .read_exact_at(&mut b, pos)
                        .ctx(&self.log_path)?;
                    if let Ok(recs) = batch::records(&b[RECORD_BATCH_OVERHEAD..], &h) {
                        for r in recs {
                            let ts = h.base_timestamp + r.timestamp_delta;
                            if ts >= timestamp {
                                return Ok(Some((
                                    h.base_offset + r.offset_delta as i64,
                                    ts,
                                    h.partition_leader_epoch,
                                )));
                            }
                        }
                    }
                }
                return Ok(Some((
                    h.base_offset,
                    h.max_timestamp,
                    h.partition_leader_epoch,
                )));
            }
            pos += h.size() as u64;
        }
        Ok(None)
    }

    /// Called when the segment stops being the active one (Kafka: `onBecomeInactiveSegment`):
    /// record the max timestamp in the time index and trim both index files.
    pub fn on_become_inactive(&mut self) -> Result<()> {
        if self.max_timestamp_so_far > 0 {
            self.time_index
                .maybe_append(self.max_timestamp_so_far, self.offset_of_max_timestamp)?;
        }
        self.offset_index.trim()?;
        self.time_index.trim()
    }

    /// Makes this segment the active one again (after truncation removed later segments).
    pub fn on_become_active(&mut self) -> Result<()> {
        self.offset_index.preallocate()?;
        self.time_index.preallocate()
    }

    /// Largest timestamp for retention; the file's mtime when batches carry none (as Kafka).
    pub fn largest_timestamp(&self) -> i64 {
        if self.max_timestamp_so_far > 0 {
            return self.max_timestamp_so_far;
        }
        std::fs::metadata(&self.log_path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(self.created_ms, |d| d.as_millis() as i64)
    }

    /// fsyncs only the `.log` file. Used for the active segment on every flush: its index
    /// entries need no fsync, because an index entry lost in a crash only makes a lookup scan a
    /// little further, and the loader stops at zeroed (lost) entries and checks the rest.
    pub fn flush_log(&self) -> Result<()> {
        // Never opened: nothing was written through this segment since it was opened.
        match self.log.get() {
            Some(f) => f.sync_data().ctx(&self.log_path),
            None => Ok(()),
        }
    }

    /// fsyncs the `.log` file and both indexes.
    pub fn flush(&self) -> Result<()> {
        self.flush_log()?;
        self.offset_index.flush()?;
        self.time_index.flush()
    }

    /// Removes the segment's files.
    pub fn delete_files(self) -> Result<()> {
        for p in [
            self.log_path.clone(),
            self.offset_index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
        ] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(crate::error::Error::io(p, e)),
            }
        }
        Ok(())
    }
}
