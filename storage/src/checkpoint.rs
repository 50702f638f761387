//! Checkpoint files: small text files rewritten atomically.
//!
//! Kafka classes mirrored: `CheckpointFile` with `OffsetCheckpointFile` (the per-dir
//! `recovery-point-offset-checkpoint`, `replication-offset-checkpoint`,
//! `log-start-offset-checkpoint`, entries `<topic> <partition> <offset>`) and
//! `LeaderEpochCheckpointFile` (per partition `leader-epoch-checkpoint`, entries
//! `<epoch> <startOffset>`). Format: a version line (0), a count line, then one entry per line.
//!
//! Invariant: a reader sees the old file or the new one, never a mix: we write `<name>.tmp`,
//! fsync it, rename it over the old file and fsync the folder so the rename itself is durable.

use crate::error::{Error, IoContext, Result};
use std::io::Write;
use std::path::Path;

pub const RECOVERY_POINT_CHECKPOINT: &str = "recovery-point-offset-checkpoint";
pub const REPLICATION_OFFSET_CHECKPOINT: &str = "replication-offset-checkpoint";
pub const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset-checkpoint";
pub const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";

/// The version every checkpoint file starts with.
pub const CHECKPOINT_VERSION: i32 = 0;

/// Writes `contents` to `path` atomically (tmp, fsync, rename, fsync dir).
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp).ctx(&tmp)?;
        f.write_all(contents).ctx(&tmp)?;
        f.sync_all().ctx(&tmp)?;
    }
    std::fs::rename(&tmp, path).ctx(path)?;
    if let Some(dir) = path.parent() {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// fsync of a folder, making renames and creations in it durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).ctx(dir)
}

/// Renders the version and count lines and one line per entry.
pub fn render<I: IntoIterator<Item = String>>(entries: I) -> String {
    let lines: Vec<String> = entries.into_iter().collect();
    let mut s = format!("{CHECKPOINT_VERSION}\n{}\n", lines.len());
    for l in lines {
        s.push_str(&l);
        s.push('\n');
    }
    s
}

/// Parses a checkpoint into its entry lines, split on spaces, each with `fields` fields.
/// A missing file is an empty checkpoint.
pub fn parse(path: &Path, fields: usize) -> Result<Vec<Vec<String>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let malformed = |what: &str| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("malformed checkpoint file: {what}"),
        ),
    };
    let mut lines = text.lines();
    let version = lines.next().ok_or_else(|| malformed("no version line"))?;
    if version.trim() != CHECKPOINT_VERSION.to_string() {
        return Err(malformed(&format!("unrecognised version {version}")));
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| malformed("bad count line"))?;
    let mut out = Vec::with_capacity(count);
    for l in lines.by_ref().take(count) {
        let parts: Vec<String> = l.split(' ').map(str::to_owned).collect();
        if parts.len() != fields {
            return Err(malformed(&format!("entry {l:?}")));
        }
        out.push(parts);
    }
    if out.len() != count {
        return Err(malformed("fewer entries than the count line says"));
    }
    Ok(out)
}

/// `<topic> <partition> <offset>` files.
pub struct OffsetCheckpointFile;

impl OffsetCheckpointFile {
    pub fn write(path: &Path, entries: &[(String, i32, i64)]) -> Result<()> {
        let body = render(entries.iter().map(|(t, p, o)| format!("{t} {p} {o}")));
        write_atomically(path, body.as_bytes())
    }

    pub fn read(path: &Path) -> Result<Vec<(String, i32, i64)>> {
        parse(path, 3)?
            .into_iter()
            .map(|f| {
                let p = f[1].parse().ok();
                let o = f[2].parse().ok();
                match (p, o) {
                    (Some(p), Some(o)) => Ok((f[0].clone(), p, o)),
                    _ => Err(Error::Io {
                        path: path.to_path_buf(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("malformed checkpoint entry {:?}", f.join(" ")),
                        ),
                    }),
                }
            })
            .collect()
    }
}

/// `<epoch> <startOffset>` file.
pub struct LeaderEpochCheckpointFile;

impl LeaderEpochCheckpointFile {
    pub fn write(path: &Path, entries: &[(i32, i64)]) -> Result<()> {
        let body = render(entries.iter().map(|(e, o)| format!("{e} {o}")));
        write_atomically(path, body.as_bytes())
    }

    /// Writes `entries` to `<path>.staged.tmp` without fsync (see
    /// `LeaderEpochFileCache::stage_pending`); a leftover is removed when the log opens, as
    /// every `.tmp` file is.
    pub fn stage(path: &Path, entries: &[(i32, i64)]) -> Result<()> {
        let staged = Self::staged_path(path);
        let body = render(entries.iter().map(|(e, o)| format!("{e} {o}")));
        std::fs::write(&staged, body.as_bytes()).ctx(&staged)
    }

    /// Renames the staged file over `path` (the caller synced the filesystem before, and
    /// syncs it again after).
    pub fn commit_staged(path: &Path) -> Result<()> {
        std::fs::rename(Self::staged_path(path), path).ctx(path)
    }

    fn staged_path(path: &Path) -> std::path::PathBuf {
        let mut p = path.as_os_str().to_owned();
        p.push(".staged.tmp");
        std::path::PathBuf::from(p)
    }

    pub fn read(path: &Path) -> Result<Vec<(i32, i64)>> {
        parse(path, 2)?
            .into_iter()
            .map(|f| match (f[0].parse(), f[1].parse()) {
                (Ok(e), Ok(o)) => Ok((e, o)),
                _ => Err(Error::Io {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("malformed leader epoch entry {:?}", f.join(" ")),
                    ),
                }),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's documented example of a leader-epoch-checkpoint.
    #[test]
    fn leader_epoch_checkpoint_has_kafkas_exact_text() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(LEADER_EPOCH_CHECKPOINT);
        LeaderEpochCheckpointFile::write(&p, &[(0, 0), (3, 1042)]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "0\n2\n0 0\n3 1042\n");
        assert_eq!(
            LeaderEpochCheckpointFile::read(&p).unwrap(),
            vec![(0, 0), (3, 1042)]
        );
        assert!(!d.path().join("leader-epoch-checkpoint.tmp").exists());
    }

    #[test]
    fn offset_checkpoint_round_trips_and_rejects_garbage() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(RECOVERY_POINT_CHECKPOINT);
        let e = vec![("my-topic".to_string(), 0, 42), ("t".to_string(), 3, 7)];
        OffsetCheckpointFile::write(&p, &e).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "0\n2\nmy-topic 0 42\nt 3 7\n"
        );
        assert_eq!(OffsetCheckpointFile::read(&p).unwrap(), e);
        std::fs::write(&p, "0\n2\nmy-topic 0 42\n").unwrap();
        assert!(OffsetCheckpointFile::read(&p).is_err());
        assert!(OffsetCheckpointFile::read(&d.path().join("absent"))
            .unwrap()
            .is_empty());
    }
}
