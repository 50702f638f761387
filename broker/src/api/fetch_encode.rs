//! Encoding a Fetch response without copying the record batches.
//!
//! Why: the batches a fetch returns are already bytes read from the log; kafka-protocol's
//! encoder would copy each of them into the response buffer, a second copy of every consumed
//! byte. Kafka itself sends them with `sendfile`. Here the response is built as a list of
//! chunks: the small framing parts are encoded (by kafka-protocol, per partition), and each
//! partition's records are appended as the very `Bytes` the log read returned, then written
//! to the socket one after the other.
//!
//! How: each partition carrying records is encoded by kafka-protocol with empty records; the
//! empty records' encoding is the tail of that partition's bytes (`int32 0` up to v11,
//! `uvarint 1` then the tagged-field count `0` in v12), so it is cut off and replaced by the
//! real length prefix, the records chunk and the tagged-field count. The wrapper levels (header,
//! topic name, array counts) are encoded here. The unit test checks the chunks concatenate to
//! exactly kafka-protocol's own encoding for every version we serve; anything unusual (tagged
//! fields set, versions above 12) falls back to the plain encoder.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{FetchResponse, ResponseKind};
use kafka_protocol::protocol::Encodable;

fn put_uvarint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_array_len(buf: &mut BytesMut, len: usize, flexible: bool) {
    if flexible {
        put_uvarint(buf, len as u32 + 1);
    } else {
        buf.put_i32(len as i32);
    }
}

/// A whole response frame (size prefix included) as chunks to write in order.
pub fn encode(correlation_id: i32, version: i16, resp: &FetchResponse) -> Option<Vec<Bytes>> {
    let flexible = version >= 12;
    let plain = || {
        super::frame::encode_response(correlation_id, version, &ResponseKind::Fetch(resp.clone()))
            .map(|b| vec![b.freeze()])
    };
    if !(4..=12).contains(&version)
        || !resp.unknown_tagged_fields.is_empty()
        || !resp.node_endpoints.is_empty()
        || resp
            .responses
            .iter()
            .any(|t| !t.unknown_tagged_fields.is_empty())
    {
        return plain();
    }
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut cur = BytesMut::with_capacity(256);
    cur.put_i32(0); // size, patched below
    cur.put_i32(correlation_id);
    if flexible {
        put_uvarint(&mut cur, 0); // response header v1 tagged fields
    }
    cur.put_i32(resp.throttle_time_ms);
    if version >= 7 {
        cur.put_i16(resp.error_code);
        cur.put_i32(resp.session_id);
    } else if resp.session_id != 0 {
        return plain();
    }
    put_array_len(&mut cur, resp.responses.len(), flexible);
    for t in &resp.responses {
        let name = t.topic.0.as_bytes();
        if flexible {
            put_uvarint(&mut cur, name.len() as u32 + 1);
        } else {
            cur.put_i16(name.len() as i16);
        }
        cur.put_slice(name);
        put_array_len(&mut cur, t.partitions.len(), flexible);
        for p in &t.partitions {
            let records = p.records.as_ref().filter(|r| !r.is_empty());
            let tagged_default = p.unknown_tagged_fields.is_empty()
                && p.diverging_epoch == Default::default()
                && p.current_leader == Default::default()
                && p.snapshot_id == Default::default();
            match records {
                Some(records) if !flexible || tagged_default => {
                    let stub = p.clone().with_records(Some(Bytes::new()));
                    stub.encode(&mut cur, version).ok()?;
                    let tail: &[u8] = if flexible { &[1, 0] } else { &[0, 0, 0, 0] };
                    if !cur.ends_with(tail) {
                        return plain();
                    }
                    cur.truncate(cur.len() - tail.len());
                    if flexible {
                        put_uvarint(&mut cur, records.len() as u32 + 1);
                    } else {
                        cur.put_i32(records.len() as i32);
                    }
                    chunks.push(cur.split().freeze());
                    chunks.push(records.clone());
                    if flexible {
                        put_uvarint(&mut cur, 0);
                    }
                }
                _ => p.encode(&mut cur, version).ok()?,
            }
        }
        if flexible {
            put_uvarint(&mut cur, 0); // topic tagged fields
        }
    }
    if flexible {
        put_uvarint(&mut cur, 0); // response tagged fields
    }
    chunks.push(cur.freeze());
    let total: usize = chunks.iter().map(Bytes::len).sum::<usize>() - 4;
    let mut first = BytesMut::from(&chunks[0][..]);
    first[..4].copy_from_slice(&(total as i32).to_be_bytes());
    chunks[0] = first.freeze();
    Some(chunks)
}

#[cfg(test)]
mod tests {
    // The file's own items by their full path (not `super::*`): scripts/module-cycles reads
    // `super` as the parent module.
    use crate::api::fetch_encode::*;
    use kafka_protocol::messages::fetch_response::{
        FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
    };
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn sample(version: i16) -> FetchResponse {
        let batch = Bytes::from(storage::batch::simple_batch(5, 3, 40, 1_700_000_000_000));
        let p = |i: i32, records: Option<Bytes>| {
            let mut d = PartitionData::default()
                .with_partition_index(i)
                .with_high_watermark(100 + i as i64)
                .with_last_stable_offset(100 + i as i64)
                .with_records(records);
            if version >= 5 {
                d.log_start_offset = 3;
            }
            d
        };
        let mut err = p(9, Some(Bytes::new())).with_error_code(6);
        if version >= 12 {
            err.current_leader = LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(2))
                .with_leader_epoch(4);
        }
        let mut r = FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("orders")))
                .with_partitions(vec![
                    p(0, Some(batch.clone())),
                    p(1, Some(Bytes::new())),
                    err,
                    p(2, Some(batch.clone())),
                ]),
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![p(0, Some(batch))]),
        ]);
        if version >= 7 {
            r.error_code = 0;
        }
        r
    }

    /// The chunks are byte for byte kafka-protocol's encoding, at every version we serve.
    #[test]
    fn chunks_equal_the_plain_encoding() {
        for v in 4..=12 {
            let r = sample(v);
            let plain = crate::api::frame::encode_response(42, v, &ResponseKind::Fetch(r.clone()))
                .expect("plain encoding");
            let chunks = encode(42, v, &r).expect("chunked encoding");
            assert!(chunks.len() > 1, "v{v} should have used the zero-copy path");
            let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            assert_eq!(joined, &plain[..], "fetch v{v}");
        }
    }
}
