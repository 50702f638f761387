//! The records the coordinator writes to `__consumer_offsets`, and the log it writes them to.
//!
//! Kafka concept: `__consumer_offsets` is a compacted topic; a record's key says what it is
//! about and its value the latest state, so compaction keeps exactly the current offsets and
//! group metadata. A key starts with an int16 key version: 0 or 1 is an offset commit
//! (group, topic, partition), 2 is a group's metadata (group). A null value is a tombstone.
//! Kafka classes mirrored: `GroupMetadataManager.offsetCommitKey/offsetCommitValue/
//! groupMetadataKey/groupMetadataValue/readMessageKey` and the generated
//! `OffsetCommitKey`, `OffsetCommitValue`, `GroupMetadataKey`, `GroupMetadataValue`.
//!
//! We write what Kafka 3.x writes: OffsetCommitKey v1, OffsetCommitValue v3 (no expire
//! timestamp), GroupMetadataKey v2, GroupMetadataValue v3 (non-flexible: int16 string
//! lengths, int32 bytes lengths and array counts). We read values v0-3 of both; the flexible
//! v4 values (written by Kafka 3.5+ only when told to) are refused with a clear log line.

use std::future::Future;
use std::pin::Pin;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A boxed future, so [`GroupLog`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The broker's log for `__consumer_offsets`, as the coordinator needs it.
///
/// Contract: `append` returns once the batch is committed as `__consumer_offsets` requires
/// (Kafka appends with acks=all), or a Kafka error code (e.g. NOT_LEADER_OR_FOLLOWER,
/// NOT_ENOUGH_REPLICAS, REQUEST_TIMED_OUT, MESSAGE_TOO_LARGE) that the coordinator maps the way
/// Kafka's `GroupMetadataManager` does. `read` returns every batch of the partition from its
/// log start, uncompressed, concatenated as stored (v2 record batches).
pub trait GroupLog: Send + Sync + 'static {
    fn append(&self, partition: i32, batch: Bytes) -> BoxFuture<'_, Result<(), i16>>;
    fn read(&self, partition: i32) -> BoxFuture<'_, Result<Bytes, i16>>;
}

/// An offset commit, keyed by (group, topic, partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitRecord {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    /// `None` is a tombstone (the offset was deleted).
    pub value: Option<OffsetValue>,
}

/// OffsetCommitValue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// GroupMetadataValue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp: i64,
    pub members: Vec<MemberValue>,
}

/// GroupMetadataValue's MemberMetadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout: i32,
    pub session_timeout: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// One decoded `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Offset(OffsetCommitRecord),
    /// A group's metadata; `None` is a tombstone (the group was deleted).
    Group(String, Option<GroupValue>),
}

fn put_str(b: &mut BytesMut, s: &str) {
    // Group ids, topics and member ids are far below 32 KiB (the protocol caps them too).
    b.put_i16(s.len().min(i16::MAX as usize) as i16);
    b.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

fn get_i16(b: &mut Bytes) -> Option<i16> {
    (b.remaining() >= 2).then(|| b.get_i16())
}
fn get_i32(b: &mut Bytes) -> Option<i32> {
    (b.remaining() >= 4).then(|| b.get_i32())
}
fn get_i64(b: &mut Bytes) -> Option<i64> {
    (b.remaining() >= 8).then(|| b.get_i64())
}
fn get_nullable_str(b: &mut Bytes) -> Option<Option<String>> {
    let len = get_i16(b)?;
    if len < 0 {
        return Some(None);
    }
    let len = len as usize;
    if b.remaining() < len {
        return None;
    }
    let s = String::from_utf8(b.split_to(len).to_vec()).ok()?;
    Some(Some(s))
}
fn get_str(b: &mut Bytes) -> Option<String> {
    get_nullable_str(b)?
}
fn get_bytes(b: &mut Bytes) -> Option<Bytes> {
    let len = get_i32(b)?;
    if len < 0 {
        return Some(Bytes::new());
    }
    let len = len as usize;
    (b.remaining() >= len).then(|| b.split_to(len))
}

/// OffsetCommitKey v1.
pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(1);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

/// OffsetCommitValue v3.
pub fn offset_value(v: &OffsetValue) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    b.put_i64(v.offset);
    b.put_i32(v.leader_epoch);
    put_str(&mut b, &v.metadata);
    b.put_i64(v.commit_timestamp);
    b.freeze()
}

/// GroupMetadataKey v2.
pub fn group_key(group: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(2);
    put_str(&mut b, group);
    b.freeze()
}

/// GroupMetadataValue v3.
pub fn group_value(v: &GroupValue) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    put_str(&mut b, &v.protocol_type);
    b.put_i32(v.generation);
    put_nullable_str(&mut b, v.protocol.as_deref());
    put_nullable_str(&mut b, v.leader.as_deref());
    b.put_i64(v.current_state_timestamp);
    b.put_i32(v.members.len() as i32);
    for m in &v.members {
        put_str(&mut b, &m.member_id);
        put_nullable_str(&mut b, m.group_instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout);
        b.put_i32(m.session_timeout);
        put_bytes(&mut b, &m.subscription);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

/// Decodes one record's key and value; `None` when it is not one we understand (unknown or
/// flexible versions, truncated bytes).
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Option<Record> {
    let mut k = Bytes::copy_from_slice(key);
    match get_i16(&mut k)? {
        0 | 1 => {
            let group = get_str(&mut k)?;
            let topic = get_str(&mut k)?;
            let partition = get_i32(&mut k)?;
            let value = match value {
                None => None,
                Some(v) => Some(decode_offset_value(Bytes::copy_from_slice(v))?),
            };
            Some(Record::Offset(OffsetCommitRecord {
                group,
                topic,
                partition,
                value,
            }))
        }
        2 => {
            let group = get_str(&mut k)?;
            let value = match value {
                None => None,
                Some(v) => Some(decode_group_value(Bytes::copy_from_slice(v))?),
            };
            Some(Record::Group(group, value))
        }
        _ => None,
    }
}

fn decode_offset_value(mut b: Bytes) -> Option<OffsetValue> {
    let version = get_i16(&mut b)?;
    if !(0..=3).contains(&version) {
        return None;
    }
    let offset = get_i64(&mut b)?;
    let leader_epoch = if version >= 3 { get_i32(&mut b)? } else { -1 };
    let metadata = get_str(&mut b)?;
    let commit_timestamp = get_i64(&mut b)?;
    if version == 1 {
        get_i64(&mut b)?; // expireTimestamp
    }
    Some(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

fn decode_group_value(mut b: Bytes) -> Option<GroupValue> {
    let version = get_i16(&mut b)?;
    if !(0..=3).contains(&version) {
        return None;
    }
    let protocol_type = get_str(&mut b)?;
    let generation = get_i32(&mut b)?;
    let protocol = get_nullable_str(&mut b)?;
    let leader = get_nullable_str(&mut b)?;
    let current_state_timestamp = if version >= 2 { get_i64(&mut b)? } else { -1 };
    let n = get_i32(&mut b)?.max(0) as usize;
    let mut members = Vec::with_capacity(n.min(b.remaining()));
    for _ in 0..n {
        let member_id = get_str(&mut b)?;
        let group_instance_id = if version >= 3 {
            get_nullable_str(&mut b)?
        } else {
            None
        };
        let client_id = get_str(&mut b)?;
        let client_host = get_str(&mut b)?;
        let session_after = version == 0;
        let rebalance_timeout = if session_after { -1 } else { get_i32(&mut b)? };
        let session_timeout = get_i32(&mut b)?;
        let subscription = get_bytes(&mut b)?;
        let assignment = get_bytes(&mut b)?;
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout: if session_after {
                session_timeout
            } else {
                rebalance_timeout
            },
            session_timeout,
            subscription,
            assignment,
        });
    }
    Some(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp,
        members,
    })
}

/// Builds one uncompressed v2 batch (offsets assigned by the log) from key/value pairs.
pub fn batch(records: &[(Bytes, Option<Bytes>)], timestamp_ms: i64) -> Bytes {
    let new: Vec<storage::batch::NewRecord<'_>> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| storage::batch::NewRecord {
            offset_delta: i as i32,
            timestamp: timestamp_ms,
            key: Some(k.as_ref()),
            value: v.as_deref(),
        })
        .collect();
    Bytes::from(storage::batch::build_batch(0, -1, &new))
}

/// Decodes every record of a partition's batches, in log order. Compressed or corrupt batches
/// and records we do not understand are skipped and counted in the second result.
pub fn decode_batches(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut out = Vec::new();
    let mut skipped = 0;
    let Ok(batches) = storage::batch::split_batches(bytes) else {
        return (out, 1);
    };
    for pos in batches {
        let h = pos.header;
        let start = pos.position + storage::batch::RECORD_BATCH_OVERHEAD;
        let end = pos.position + h.size();
        if h.compression() != 0 || h.is_control() || start > end || end > bytes.len() {
            skipped += 1;
            continue;
        }
        match storage::batch::records(&bytes[start..end], &h) {
            Ok(rs) => {
                for r in rs {
                    match r.key.and_then(|k| decode(k, r.value)) {
                        Some(rec) => out.push(rec),
                        None => skipped += 1,
                    }
                }
            }
            Err(_) => skipped += 1,
        }
    }
    (out, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OffsetCommitKey v1 / Value v3 bytes, laid out field by field as Kafka writes them.
    #[test]
    fn offset_commit_record_layout_matches_kafka() {
        let k = offset_key("g", "t", 3);
        assert_eq!(k.as_ref(), b"\x00\x01\x00\x01g\x00\x01t\x00\x00\x00\x03");
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 7,
            metadata: "m".into(),
            commit_timestamp: 1000,
        };
        let bytes = offset_value(&v);
        let mut want = vec![0, 3];
        want.extend_from_slice(&42i64.to_be_bytes());
        want.extend_from_slice(&7i32.to_be_bytes());
        want.extend_from_slice(b"\x00\x01m");
        want.extend_from_slice(&1000i64.to_be_bytes());
        assert_eq!(bytes.as_ref(), &want[..]);
        let rec = decode(&k, Some(&bytes)).unwrap();
        assert_eq!(
            rec,
            Record::Offset(OffsetCommitRecord {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(v)
            })
        );
        // A tombstone.
        assert!(matches!(
            decode(&k, None),
            Some(Record::Offset(OffsetCommitRecord { value: None, .. }))
        ));
    }

    #[test]
    fn group_metadata_round_trips_and_flexible_versions_are_refused() {
        let v = GroupValue {
            protocol_type: "consumer".into(),
            generation: 4,
            protocol: Some("range".into()),
            leader: None,
            current_state_timestamp: 123,
            members: vec![MemberValue {
                member_id: "c-1".into(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout: 5000,
                session_timeout: 10000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        let k = group_key("g");
        assert_eq!(k.as_ref(), b"\x00\x02\x00\x01g");
        let bytes = group_value(&v);
        assert_eq!(
            decode(&k, Some(&bytes)),
            Some(Record::Group("g".into(), Some(v)))
        );
        let mut flexible = bytes.to_vec();
        flexible[1] = 4;
        assert_eq!(decode(&k, Some(&flexible)), None);
        // Truncated values never panic.
        for n in 0..bytes.len() {
            assert_eq!(decode(&k, Some(&bytes[..n])), None);
        }
    }

    #[test]
    fn batches_round_trip() {
        let recs = vec![
            (
                offset_key("g", "t", 0),
                Some(offset_value(&OffsetValue {
                    offset: 1,
                    leader_epoch: -1,
                    metadata: String::new(),
                    commit_timestamp: 5,
                })),
            ),
            (group_key("g"), None),
        ];
        let mut log = batch(&recs, 5).to_vec();
        log.extend_from_slice(&batch(&recs[..1], 6));
        let (decoded, skipped) = decode_batches(&log);
        assert_eq!(skipped, 0);
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[1], Record::Group("g".into(), None));
    }
}
