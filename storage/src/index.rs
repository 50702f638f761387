//! The sparse offset index (`.index`): offset to file position.
//!
//! Kafka class mirrored: `org.apache.kafka.storage.internals.log.OffsetIndex`. Each 8-byte entry
//! is big-endian `i32 offset - baseOffset`, `i32 position in .log`. An entry is added when more
//! than `index.interval.bytes` were appended since the last one; it maps the last offset of that
//! append to the position where the append started. A lookup finds the greatest entry whose
//! offset is <= the target by binary search; the reader then scans a few batch headers.
//!
//! Invariant: entries strictly increase in both offset and position, and every position is a
//! batch boundary inside the `.log` file.
//!
//! Simplification: Kafka memory-maps the file; we keep the entries in a `Vec` (the index is at
//! most `segment.index.bytes`) and write each new entry with one `pwrite`, opening the file for
//! each operation rather than holding a descriptor (see `file`). The file is
//! preallocated to `segment.index.bytes` (rounded down to the entry size) while the segment is
//! active and trimmed to its entries when the segment rolls or the log closes, as Kafka does.

use crate::error::{IoContext, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const ENTRY_SIZE: usize = 8;

pub struct OffsetIndex {
    path: PathBuf,
    base_offset: i64,
    /// (relative offset, position), strictly increasing.
    entries: Vec<(u32, u32)>,
    max_entries: usize,
}

/// Bytes read per `pread` when loading an index.
const READ_CHUNK: usize = 64 * 1024;

/// Feeds the whole entries of the first `len` bytes of an index file to `f`, in order, until
/// `f` returns false. Reads in chunks, so loading an active segment's index, preallocated to
/// `segment.index.bytes` (10 MiB by default) but mostly empty, reads only up to its first
/// empty entry instead of the whole file (Kafka maps the file and pays nothing for the tail).
pub(crate) fn read_entries(
    file: &File,
    path: &Path,
    len: usize,
    entry_size: usize,
    mut f: impl FnMut(&[u8]) -> bool,
) -> Result<()> {
    let whole = len - len % entry_size;
    let chunk = (READ_CHUNK / entry_size).max(1) * entry_size;
    let mut buf = vec![0u8; chunk.min(whole)];
    let mut at = 0;
    while at < whole {
        let n = chunk.min(whole - at);
        file.read_exact_at(&mut buf[..n], at as u64).ctx(path)?;
        for e in buf[..n].chunks_exact(entry_size) {
            if !f(e) {
                return Ok(());
            }
        }
        at += n;
    }
    Ok(())
}

/// An index file (offset or time), opened for this one operation. No descriptor is kept
/// between operations (Kafka keeps a memory map and closes the file): a broker with tens of
/// thousands of partitions would otherwise hold three descriptors per segment. Entries are
/// written once per `index.interval.bytes` appended, so the open is rare.
pub(crate) fn open_for_one_operation(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .ctx(path)
}

impl OffsetIndex {
    /// Opens or creates the index, loading valid entries. Returns (index, was_sane).
    pub fn open(
        path: &Path,
        base_offset: i64,
        max_index_bytes: u64,
    ) -> Result<(OffsetIndex, bool)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .ctx(path)?;
        let len = file.metadata().ctx(path)?.len() as usize;
        let mut entries: Vec<(u32, u32)> = Vec::new();
        let mut sane = len.is_multiple_of(ENTRY_SIZE);
        read_entries(&file, path, len, ENTRY_SIZE, |e| {
            let rel = u32::from_be_bytes(e[0..4].try_into().expect("4 bytes"));
            let pos = u32::from_be_bytes(e[4..8].try_into().expect("4 bytes"));
            // No entry ever has position 0 (the first append of a segment is never indexed),
            // so a zero entry is preallocated space: the end of the entries.
            if pos == 0 {
                return false;
            }
            if let Some(&(lr, lp)) = entries.last() {
                if rel <= lr || pos <= lp {
                    sane = false;
                    return false;
                }
            }
            entries.push((rel, pos));
            true
        })?;
        let max_entries = ((max_index_bytes as usize) / ENTRY_SIZE).max(1);
        Ok((
            OffsetIndex {
                path: path.to_path_buf(),
                base_offset,
                entries,
                max_entries,
            },
            sane,
        ))
    }

    fn file(&self) -> Result<File> {
        open_for_one_operation(&self.path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn entries(&self) -> usize {
        self.entries.len()
    }
    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries
    }
    pub fn last_entry(&self) -> Option<(i64, u32)> {
        self.entries
            .last()
            .map(|&(r, p)| (self.base_offset + r as i64, p))
    }

    /// Checks entries against the `.log` size (Kafka: `sanityCheck`).
    pub fn sane_for(&self, log_size: u64) -> bool {
        self.entries.iter().all(|&(_, p)| (p as u64) < log_size)
    }

    /// Position to start scanning for `offset`: the greatest entry <= offset, else 0.
    pub fn lookup(&self, offset: i64) -> (i64, u32) {
        let rel = offset - self.base_offset;
        let idx = self.entries.partition_point(|&(r, _)| (r as i64) <= rel);
        if idx == 0 {
            (self.base_offset, 0)
        } else {
            let (r, p) = self.entries[idx - 1];
            (self.base_offset + r as i64, p)
        }
    }

    /// Appends an entry; ignored unless it is past the last one (as Kafka refuses it).
    pub fn append(&mut self, offset: i64, position: u32) -> Result<()> {
        let rel = (offset - self.base_offset) as u32;
        if let Some(&(r, p)) = self.entries.last() {
            if rel <= r || position <= p {
                return Ok(());
            }
        }
        if self.is_full() {
            return Ok(());
        }
        let mut e = [0u8; ENTRY_SIZE];
        e[0..4].copy_from_slice(&rel.to_be_bytes());
        e[4..8].copy_from_slice(&position.to_be_bytes());
        self.file()?
            .write_all_at(&e, (self.entries.len() * ENTRY_SIZE) as u64)
            .ctx(&self.path)?;
        self.entries.push((rel, position));
        Ok(())
    }

    /// Drops entries for offsets >= `offset` (truncation).
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        let rel = offset - self.base_offset;
        let keep = self.entries.partition_point(|&(r, _)| (r as i64) < rel);
        self.truncate_entries(keep)
    }

    fn truncate_entries(&mut self, keep: usize) -> Result<()> {
        self.entries.truncate(keep);
        // Zero the tail so a reopen does not see stale entries in preallocated space.
        let file = self.file()?;
        let len = file.metadata().ctx(&self.path)?.len();
        let used = (keep * ENTRY_SIZE) as u64;
        file.set_len(used).ctx(&self.path)?;
        if len > used {
            file.set_len(len).ctx(&self.path)?;
        }
        Ok(())
    }

    pub fn reset(&mut self) -> Result<()> {
        self.truncate_entries(0)
    }

    /// Preallocates the file to `segment.index.bytes` (active segment).
    pub fn preallocate(&mut self) -> Result<()> {
        self.file()?
            .set_len((self.max_entries * ENTRY_SIZE) as u64)
            .ctx(&self.path)
    }

    /// Trims the file to its entries (segment rolled or log closed).
    pub fn trim(&mut self) -> Result<()> {
        self.file()?
            .set_len((self.entries.len() * ENTRY_SIZE) as u64)
            .ctx(&self.path)
    }

    pub fn flush(&self) -> Result<()> {
        self.file()?.sync_data().ctx(&self.path)
    }

    pub fn rename_to(&mut self, path: &Path) -> Result<()> {
        std::fs::rename(&self.path, path).ctx(path)?;
        self.path = path.to_path_buf();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopening_reads_entries_across_chunks_and_stops_at_preallocated_space() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("00000000000000000100.index");
        let n = READ_CHUNK / ENTRY_SIZE + 1_000; // more than one read chunk
        {
            let (mut idx, sane) = OffsetIndex::open(&path, 100, 1 << 20).unwrap();
            assert!(sane);
            idx.preallocate().unwrap();
            for i in 0..n as i64 {
                idx.append(100 + i, 10 + i as u32 * 4).unwrap();
            }
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
        let (idx, sane) = OffsetIndex::open(&path, 100, 1 << 20).unwrap();
        assert!(sane);
        assert_eq!(idx.entries(), n);
        assert_eq!(
            idx.last_entry(),
            Some((100 + n as i64 - 1, 10 + (n as u32 - 1) * 4))
        );
        assert_eq!(idx.lookup(100 + 5_000), (100 + 5_000, 10 + 5_000 * 4));

        // A preallocated, empty index (a fresh active segment) opens with no entries.
        let empty = d.path().join("00000000000000000000.index");
        let (mut e, _) = OffsetIndex::open(&empty, 0, 10 << 20).unwrap();
        e.preallocate().unwrap();
        drop(e);
        let (e, sane) = OffsetIndex::open(&empty, 0, 10 << 20).unwrap();
        assert!(sane);
        assert_eq!(e.entries(), 0);
    }
}
