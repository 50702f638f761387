//! The leader epoch cache: which leader epoch wrote which offsets.
//!
//! Kafka class mirrored: `LeaderEpochFileCache`. Entries `(epoch, start_offset)` with both
//! strictly increasing; an entry is added when a batch with a newer partitionLeaderEpoch is
//! appended. OffsetsForLeaderEpoch asks for the end offset of an epoch: the start offset of the
//! next greater epoch, or the log end offset for the latest epoch. A follower truncates to it.
//! The cache is persisted in `leader-epoch-checkpoint` after every change.
//!
//! Invariant: entries are strictly increasing in epoch and in start offset; after truncation no
//! entry starts at or past the log end offset, and no entry lies wholly before the log start.

use crate::checkpoint::LeaderEpochCheckpointFile;
use crate::error::Result;
use std::path::{Path, PathBuf};

pub struct LeaderEpochFileCache {
    path: PathBuf,
    entries: Vec<(i32, i64)>,
    /// Changes so far; a staged write is committed only if it is still the latest.
    writes: u64,
}

impl LeaderEpochFileCache {
    pub fn load(path: &Path) -> Result<LeaderEpochFileCache> {
        let mut entries = LeaderEpochCheckpointFile::read(path)?;
        entries.dedup();
        Ok(LeaderEpochFileCache {
            path: path.to_path_buf(),
            entries,
            writes: 0,
        })
    }

    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    /// Records that `epoch` starts at `start_offset` (Kafka: `assign`). Ignored when not newer.
    /// Entries with a start offset >= this one but an older epoch are removed, as Kafka does.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<bool> {
        if let Some(&(e, _)) = self.entries.last() {
            if epoch <= e {
                return Ok(false);
            }
        }
        self.entries.retain(|&(_, o)| o < start_offset);
        self.entries.push((epoch, start_offset));
        self.persist()?;
        Ok(true)
    }

    /// [`Self::assign`] without writing the checkpoint; the caller persists once after many
    /// (recovery rebuilding entries from batches).
    pub fn assign_in_memory(&mut self, epoch: i32, start_offset: i64) -> bool {
        if let Some(&(e, _)) = self.entries.last() {
            if epoch <= e {
                return false;
            }
        }
        self.entries.retain(|&(_, o)| o < start_offset);
        self.entries.push((epoch, start_offset));
        true
    }

    /// Writes the checkpoint with the current entries (durably).
    pub fn flush(&mut self) -> Result<()> {
        self.persist()
    }

    /// OffsetsForLeaderEpoch: (epoch, end offset). For an unknown epoch below the first entry,
    /// (-1, -1); for the latest epoch, the log end offset; otherwise the start offset of the first
    /// greater epoch, paired with the greatest epoch <= the one asked for.
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> (i32, i64) {
        match self.entries.last() {
            None => (-1, -1),
            Some(&(latest, _)) if epoch == latest => (latest, log_end_offset),
            Some(&(latest, _)) if epoch > latest => (-1, -1),
            _ => {
                let i = self.entries.partition_point(|&(e, _)| e <= epoch);
                if i == 0 {
                    (-1, -1)
                } else {
                    (self.entries[i - 1].0, self.entries[i].1)
                }
            }
        }
    }

    /// The epoch that wrote `offset`.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        let i = self.entries.partition_point(|&(_, o)| o <= offset);
        (i > 0).then(|| self.entries[i - 1].0)
    }

    /// Removes entries starting at or past `end_offset` (log truncated).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> Result<()> {
        let before = self.entries.len();
        self.entries.retain(|&(_, o)| o < end_offset);
        if self.entries.len() != before {
            self.persist()?;
        }
        Ok(())
    }

    /// Removes entries wholly before `start_offset`; the one covering it moves to it.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> Result<()> {
        let i = self.entries.partition_point(|&(_, o)| o <= start_offset);
        if i == 0 {
            return Ok(());
        }
        let epoch = self.entries[i - 1].0;
        let changed = i > 1 || self.entries[0].1 != start_offset;
        self.entries.drain(..i);
        self.entries.insert(0, (epoch, start_offset));
        if changed {
            self.persist()?;
        }
        Ok(())
    }

    pub fn clear(&mut self) -> Result<()> {
        self.entries.clear();
        self.persist()
    }

    fn persist(&mut self) -> Result<()> {
        self.writes += 1;
        LeaderEpochCheckpointFile::write(&self.path, &self.entries)
    }

    /// [`Self::assign`] in three steps, for many partitions at once: the entry changes now (in
    /// memory only) and the returned ticket is later given to [`Self::stage_pending`] (write the
    /// new checkpoint, unsynced, beside the old one) and [`Self::commit_staged`] (rename it),
    /// with a filesystem sync after each: two syncs replace two fsyncs per partition, and no
    /// checkpoint is ever replaced by contents that are not yet durable. `None`: not newer.
    pub fn assign_pending(&mut self, epoch: i32, start_offset: i64) -> Option<u64> {
        if !self.assign_in_memory(epoch, start_offset) {
            return None;
        }
        self.writes += 1;
        Some(self.writes)
    }

    /// Writes the staged checkpoint for `ticket` (see [`Self::assign_pending`]). False, and
    /// nothing written, if the cache was written since: that write carried these entries.
    pub fn stage_pending(&mut self, ticket: u64) -> Result<bool> {
        if ticket != self.writes {
            return Ok(false);
        }
        LeaderEpochCheckpointFile::stage(&self.path, &self.entries)?;
        Ok(true)
    }

    /// Installs the checkpoint staged by [`Self::stage_pending`] under `ticket`. If the cache
    /// changed since, that later change wrote (or staged) the newer contents itself and this
    /// is a no-op; if the staged file is gone, the current entries are written synchronously.
    pub fn commit_staged(&mut self, ticket: u64) -> Result<()> {
        if ticket != self.writes {
            return Ok(());
        }
        if LeaderEpochCheckpointFile::commit_staged(&self.path).is_err() {
            self.persist()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Kafka: LeaderEpochFileCacheTest (end offset lookup, truncation from both ends).
    #[test]
    fn end_offset_for_epoch_follows_kafka_rules() {
        let d = tempfile::tempdir().unwrap();
        let mut c = LeaderEpochFileCache::load(&d.path().join("leader-epoch-checkpoint")).unwrap();
        assert_eq!(c.end_offset_for(0, 0), (-1, -1));
        c.assign(0, 0).unwrap();
        c.assign(2, 10).unwrap();
        c.assign(4, 25).unwrap();
        assert!(!c.assign(3, 30).unwrap(), "an older epoch is ignored");
        assert_eq!(c.end_offset_for(0, 40), (0, 10));
        assert_eq!(c.end_offset_for(1, 40), (0, 10));
        assert_eq!(c.end_offset_for(2, 40), (2, 25));
        assert_eq!(c.end_offset_for(4, 40), (4, 40));
        assert_eq!(c.end_offset_for(5, 40), (-1, -1));
        c.truncate_from_end(25).unwrap();
        assert_eq!(c.entries(), &[(0, 0), (2, 10)]);
        c.truncate_from_start(12).unwrap();
        assert_eq!(c.entries(), &[(2, 12)]);
        let again = LeaderEpochFileCache::load(&d.path().join("leader-epoch-checkpoint")).unwrap();
        assert_eq!(again.entries(), &[(2, 12)]);
    }

    #[test]
    fn pending_assignment_reaches_the_file_only_when_staged_and_committed() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("leader-epoch-checkpoint");
        let mut c = LeaderEpochFileCache::load(&path).unwrap();
        c.assign(1, 0).unwrap();
        let t = c.assign_pending(3, 7).expect("newer epoch");
        assert_eq!(c.entries(), &[(1, 0), (3, 7)], "the cache changes at once");
        assert_eq!(c.assign_pending(2, 9), None, "an older epoch is ignored");
        assert!(c.stage_pending(t).unwrap());
        assert_eq!(
            LeaderEpochFileCache::load(&path).unwrap().entries(),
            &[(1, 0)],
            "the checkpoint keeps its old contents until the commit"
        );
        c.commit_staged(t).unwrap();
        assert_eq!(
            LeaderEpochFileCache::load(&path).unwrap().entries(),
            &[(1, 0), (3, 7)]
        );
        // A synchronous change after the pending one wins; the stale ticket is then a no-op,
        // before staging as after it.
        let stale = c.assign_pending(5, 9).unwrap();
        c.assign(6, 12).unwrap();
        assert!(!c.stage_pending(stale).unwrap());
        c.commit_staged(stale).unwrap();
        let staged_then_stale = c.assign_pending(7, 15).unwrap();
        assert!(c.stage_pending(staged_then_stale).unwrap());
        c.truncate_from_end(14).unwrap();
        c.commit_staged(staged_then_stale).unwrap();
        assert_eq!(
            LeaderEpochFileCache::load(&path).unwrap().entries(),
            &[(1, 0), (3, 7), (5, 9), (6, 12)]
        );
    }
}
