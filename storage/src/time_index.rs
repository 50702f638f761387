//! The time index (`.timeindex`): timestamp to offset.
//!
//! Kafka class mirrored: `org.apache.kafka.storage.internals.log.TimeIndex`. Each 12-byte entry
//! is big-endian `i64 max timestamp so far`, `i32 offset - baseOffset`. Entries are added beside
//! offset index entries, and only when the timestamp grew, so timestamps strictly increase; a
//! lookup for a target timestamp finds the greatest entry whose timestamp is <= target, and the
//! segment scans forward from that offset.
//!
//! Simplification: as for the offset index, entries live in a `Vec` and are written with
//! `pwrite`; the file is preallocated while active and trimmed on roll/close.

use crate::error::{IoContext, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const ENTRY_SIZE: usize = 12;

pub struct TimeIndex {
    path: PathBuf,
    base_offset: i64,
    /// (timestamp, relative offset), timestamps strictly increasing.
    entries: Vec<(i64, u32)>,
    max_entries: usize,
}

impl TimeIndex {
    /// Opens or creates the time index. Returns (index, was_sane).
    pub fn open(path: &Path, base_offset: i64, max_index_bytes: u64) -> Result<(TimeIndex, bool)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .ctx(path)?;
        let len = file.metadata().ctx(path)?.len() as usize;
        let mut entries: Vec<(i64, u32)> = Vec::new();
        let mut sane = len.is_multiple_of(ENTRY_SIZE);
        crate::index::read_entries(&file, path, len, ENTRY_SIZE, |e| {
            let ts = i64::from_be_bytes(e[0..8].try_into().expect("8 bytes"));
            let rel = u32::from_be_bytes(e[8..12].try_into().expect("4 bytes"));
            if ts == 0 && rel == 0 {
                return false; // preallocated space
            }
            if let Some(&(lt, lr)) = entries.last() {
                if ts <= lt || rel < lr {
                    sane = false;
                    return false;
                }
            }
            entries.push((ts, rel));
            true
        })?;
        let max_entries = ((max_index_bytes as usize) / ENTRY_SIZE).max(1);
        Ok((
            TimeIndex {
                path: path.to_path_buf(),
                base_offset,
                entries,
                max_entries,
            },
            sane,
        ))
    }

    fn file(&self) -> Result<File> {
        crate::index::open_for_one_operation(&self.path)
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
    /// The last (timestamp, offset) entry.
    pub fn last_entry(&self) -> Option<(i64, i64)> {
        self.entries
            .last()
            .map(|&(t, r)| (t, self.base_offset + r as i64))
    }

    /// Greatest entry with timestamp <= `timestamp`: the offset to scan from.
    pub fn lookup(&self, timestamp: i64) -> i64 {
        let idx = self.entries.partition_point(|&(t, _)| t <= timestamp);
        if idx == 0 {
            self.base_offset
        } else {
            self.base_offset + self.entries[idx - 1].1 as i64
        }
    }

    /// Adds an entry if the timestamp grew (Kafka: `maybeAppend`).
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64) -> Result<()> {
        let rel = (offset - self.base_offset) as u32;
        if let Some(&(t, r)) = self.entries.last() {
            if timestamp <= t || rel < r {
                return Ok(());
            }
        }
        if self.is_full() || timestamp <= 0 && self.entries.is_empty() && rel == 0 {
            // (0, 0) would read back as preallocated space; Kafka never indexes ts <= 0 usefully.
            return Ok(());
        }
        let mut e = [0u8; ENTRY_SIZE];
        e[0..8].copy_from_slice(&timestamp.to_be_bytes());
        e[8..12].copy_from_slice(&rel.to_be_bytes());
        self.file()?
            .write_all_at(&e, (self.entries.len() * ENTRY_SIZE) as u64)
            .ctx(&self.path)?;
        self.entries.push((timestamp, rel));
        Ok(())
    }

    /// Drops entries for offsets >= `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        let rel = offset - self.base_offset;
        let keep = self.entries.partition_point(|&(_, r)| (r as i64) < rel);
        self.truncate_entries(keep)
    }

    fn truncate_entries(&mut self, keep: usize) -> Result<()> {
        self.entries.truncate(keep);
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
    pub fn preallocate(&mut self) -> Result<()> {
        self.file()?
            .set_len((self.max_entries * ENTRY_SIZE) as u64)
            .ctx(&self.path)
    }
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
