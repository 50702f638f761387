//! Encoding a Metadata answer straight from the metadata cache.
//!
//! Why: an all-topics answer for 100,000 partitions built as kafka-protocol's structs costs
//! three `Vec`s per partition (replicas, ISR, offline replicas) plus a `String` per topic, all
//! dropped right after kafka-protocol has walked them into a buffer that starts at 256 bytes
//! and doubles its way to ~4 MB. Issue 4's controller bench asks every broker for exactly that
//! answer in a loop during a failover.
//!
//! How: one pass over the cache, under one read lock, writes the whole frame (size, response
//! header, body) into one buffer reserved for the expected size (about 42 bytes a partition
//! at replication factor 3); each partition is first gathered in a stack buffer and appended
//! in one copy. Nothing is allocated per partition or per topic. The fields, their order and
//! which version carries them follow kafka-protocol 0.15's `MetadataResponse` encoder (v0-v12);
//! the answer's content follows [`super::metadata::build`] (the plain path). The unit test
//! checks the bytes are exactly the plain path's kafka-protocol encoding at every version we
//! serve, with error topics, dead leaders, offline replicas, racks, version-0 filtering and
//! authorized operations. Anything the plain encoder would refuse (a string too long for its
//! length prefix, a version outside 0..=12) returns `None` and the caller falls back to it.

use bytes::Bytes;
use common::ErrorCode;
use uuid::Uuid;

use super::metadata::{is_internal, Options, Wanted, CLUSTER_OPERATIONS, TOPIC_OPERATIONS};
use crate::metadata_cache::{BrokerEntry, Endpoint, MetadataCache, PartitionInfo, View};

/// Not encodable as kafka-protocol would (it would fail too): use the plain path.
struct Unusual;

type Res = Result<(), Unusual>;

/// Where the encoder's bytes go: the answer's buffer, or a partition's [`Scratch`].
trait Sink {
    fn put(&mut self, bytes: &[u8]);
    fn byte(&mut self, b: u8);
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    #[inline]
    fn byte(&mut self, b: u8) {
        self.push(b);
    }
}

/// One partition's bytes, gathered on the stack and appended to the answer at once: a local
/// length stays in a register, where each write to the `Vec` would store its length again.
struct Scratch {
    b: [u8; Scratch::SIZE],
    n: usize,
}

impl Scratch {
    const SIZE: usize = 256;
    /// A partition listing at most this many broker ids (replicas, ISR and offline replicas
    /// together) fits: 14 fixed bytes, 3 length prefixes of at most 5, 4 a broker id, and
    /// the tagged-field count.
    const MAX_IDS: usize = (Self::SIZE - 14 - 15 - 1) / 4;
}

impl Sink for Scratch {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.b[self.n..self.n + bytes.len()].copy_from_slice(bytes);
        self.n += bytes.len();
    }

    #[inline]
    fn byte(&mut self, b: u8) {
        self.b[self.n] = b;
        self.n += 1;
    }
}

struct Enc<'s, S> {
    out: &'s mut S,
    flexible: bool,
}

impl<S: Sink> Enc<'_, S> {
    #[inline]
    fn i16(&mut self, v: i16) {
        self.out.put(&v.to_be_bytes());
    }

    #[inline]
    fn i32(&mut self, v: i32) {
        self.out.put(&v.to_be_bytes());
    }

    #[inline]
    fn bool(&mut self, v: bool) {
        self.out.byte(v as u8);
    }

    #[inline]
    fn uvarint(&mut self, mut v: u32) {
        // Byte by byte: almost every value here is one byte, and a slice of variable length
        // would cost a `memcpy` call.
        while v >= 0x80 {
            self.out.byte((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.byte(v as u8);
    }

    /// A non-null array's length prefix.
    #[inline]
    fn array_len(&mut self, len: usize) -> Res {
        if self.flexible {
            if len >= u32::MAX as usize {
                return Err(Unusual);
            }
            self.uvarint(len as u32 + 1);
        } else {
            if len > i32::MAX as usize {
                return Err(Unusual);
            }
            self.i32(len as i32);
        }
        Ok(())
    }

    fn string(&mut self, s: Option<&str>) -> Res {
        match (s, self.flexible) {
            (None, true) => self.uvarint(0),
            (None, false) => self.i16(-1),
            (Some(s), true) => {
                if s.len() >= u32::MAX as usize {
                    return Err(Unusual);
                }
                self.uvarint(s.len() as u32 + 1);
                self.out.put(s.as_bytes());
            }
            (Some(s), false) => {
                if s.len() > i16::MAX as usize {
                    return Err(Unusual);
                }
                self.i16(s.len() as i16);
                self.out.put(s.as_bytes());
            }
        }
        Ok(())
    }

    /// The tagged-field count (none) that ends every structure of a flexible version.
    #[inline]
    fn tags(&mut self) {
        if self.flexible {
            self.out.byte(0);
        }
    }

    /// An `int32` array of broker ids (`keep` filters).
    #[inline]
    fn ids(&mut self, ids: &[i32], keep: impl Fn(i32) -> bool) -> Res {
        let n = ids.iter().filter(|r| keep(**r)).count();
        self.array_len(n)?;
        for &r in ids {
            if keep(r) {
                self.i32(r);
            }
        }
        Ok(())
    }
}

/// One answer: what it is made of.
struct Answer<'a> {
    o: &'a Options<'a>,
    view: View<'a>,
    wanted: Option<&'a [Wanted]>,
    brokers: Vec<(&'a BrokerEntry, &'a Endpoint)>,
    correlation_id: i32,
}

impl Answer<'_> {
    fn encode(&self, out: &mut Vec<u8>) -> Res {
        let v = self.o.version;
        let mut e: Enc<'_, Vec<u8>> = Enc {
            out,
            flexible: v >= 9,
        };
        e.i32(0); // frame size, patched by the caller
        e.i32(self.correlation_id);
        e.tags(); // response header v1 from v9
        if v >= 3 {
            e.i32(0); // throttle_time_ms
        }
        e.array_len(self.brokers.len())?;
        for (b, ep) in &self.brokers {
            e.i32(b.id);
            e.string(Some(&ep.host))?;
            e.i32(ep.port);
            if v >= 1 {
                e.string(b.rack.as_deref())?;
            }
            e.tags();
        }
        if v >= 2 {
            e.string(Some(self.o.cluster_id))?;
        }
        if v >= 1 {
            e.i32(self.view.controller_id.unwrap_or(-1));
        }
        match self.wanted {
            None => {
                e.array_len(self.view.topics.len())?;
                for (name, t) in self.view.topics {
                    self.topic(&mut e, name, t.id, t.partitions.iter())?;
                }
            }
            Some(wanted) => {
                e.array_len(wanted.len())?;
                for w in wanted {
                    match w {
                        Wanted::Topic(name) => match self.view.topics.get(name) {
                            Some(t) => self.topic(&mut e, name, t.id, t.partitions.iter())?,
                            None => self.failed(
                                &mut e,
                                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code(),
                                Some(name),
                                Uuid::nil(),
                            )?,
                        },
                        Wanted::Failed { error, name, id } => {
                            self.failed(&mut e, *error, name.as_deref(), *id)?
                        }
                    }
                }
            }
        }
        if (8..=10).contains(&v) {
            e.i32(if self.o.cluster_operations {
                CLUSTER_OPERATIONS
            } else {
                i32::MIN
            });
        }
        e.tags();
        Ok(())
    }

    /// The end of every topic: authorized operations from v8, tagged fields.
    fn topic_tail(&self, e: &mut Enc<'_, Vec<u8>>) {
        if self.o.version >= 8 {
            e.i32(if self.o.topic_operations {
                TOPIC_OPERATIONS
            } else {
                i32::MIN
            });
        }
        e.tags();
    }

    fn topic<'p>(
        &self,
        e: &mut Enc<'_, Vec<u8>>,
        name: &str,
        id: Uuid,
        partitions: impl ExactSizeIterator<Item = (&'p i32, &'p PartitionInfo)>,
    ) -> Res {
        let v = self.o.version;
        e.i16(0);
        e.string(Some(name))?;
        if v >= 10 {
            e.out.put(id.as_bytes());
        }
        if v >= 1 {
            e.bool(is_internal(name));
        }
        e.array_len(partitions.len())?;
        for (idx, p) in partitions {
            if p.replicas.len() + p.isr.len() + p.offline_replicas.len() <= Scratch::MAX_IDS {
                let mut s = Scratch {
                    b: [0; Scratch::SIZE],
                    n: 0,
                };
                self.partition(
                    &mut Enc {
                        out: &mut s,
                        flexible: e.flexible,
                    },
                    *idx,
                    p,
                )?;
                e.out.put(&s.b[..s.n]);
            } else {
                self.partition(e, *idx, p)?;
            }
        }
        self.topic_tail(e);
        Ok(())
    }

    fn partition<S: Sink>(&self, e: &mut Enc<'_, S>, idx: i32, p: &PartitionInfo) -> Res {
        let v = self.o.version;
        let view = self.view;
        let leader_alive = p.leader >= 0 && view.is_alive(p.leader);
        e.i16(if leader_alive {
            0
        } else {
            ErrorCode::LEADER_NOT_AVAILABLE.code()
        });
        e.i32(idx);
        e.i32(if leader_alive { p.leader } else { -1 });
        if v >= 7 {
            e.i32(p.leader_epoch);
        }
        if v == 0 {
            // Version 0 lists only live brokers among replicas and ISR.
            e.ids(&p.replicas, |r| view.is_alive(r))?;
            e.ids(&p.isr, |r| view.is_alive(r))?;
        } else {
            e.ids(&p.replicas, |_| true)?;
            e.ids(&p.isr, |_| true)?;
        }
        if v >= 5 {
            e.ids(&p.offline_replicas, |_| true)?;
        }
        e.tags();
        Ok(())
    }

    fn failed(&self, e: &mut Enc<'_, Vec<u8>>, error: i16, name: Option<&str>, id: Uuid) -> Res {
        let v = self.o.version;
        e.i16(error);
        e.string(name)?;
        if v >= 10 {
            e.out.put(id.as_bytes());
        }
        if v >= 1 {
            e.bool(false);
        }
        e.array_len(0)?;
        self.topic_tail(e);
        Ok(())
    }
}

/// The whole Metadata response frame (size prefix included) for `wanted` (`None`: every
/// topic), written from the cache under one read lock; `None` when the plain encoder must be
/// used instead.
pub fn encode(
    cache: &MetadataCache,
    o: &Options<'_>,
    wanted: Option<&[Wanted]>,
    correlation_id: i32,
) -> Option<Bytes> {
    if !(0..=12).contains(&o.version) {
        return None;
    }
    cache.with_view(|view| {
        let brokers = view
            .brokers
            .values()
            .filter_map(|b| {
                let ep = b.endpoints.iter().find(|e| e.listener == o.listener)?;
                Some((b, ep))
            })
            .collect();
        let answer = Answer {
            o,
            view,
            wanted,
            brokers,
            correlation_id,
        };
        // Room for replication factor 3 without growing. Only an estimate: the buffer grows
        // if it is short, and pages reserved but never written cost nothing. (Counting the
        // exact size first was slower: the answer is bound by reading the cache from memory,
        // and a counting pass reads it twice.)
        let partitions: usize = match wanted {
            None => view.topics.values().map(|t| t.partitions.len()).sum(),
            Some(w) => w
                .iter()
                .map(|w| match w {
                    Wanted::Topic(n) => view.topics.get(n).map_or(0, |t| t.partitions.len()),
                    Wanted::Failed { .. } => 0,
                })
                .sum(),
        };
        let mut buf = Vec::with_capacity(4096 + partitions * 64);
        answer.encode(&mut buf).ok()?;
        let body_len = i32::try_from(buf.len() - 4).ok()?;
        buf[..4].copy_from_slice(&body_len.to_be_bytes());
        Some(Bytes::from(buf))
    })
}

#[cfg(test)]
mod tests {
    // The file's own items by their full path (not `super::*`): scripts/module-cycles reads
    // `super` as the parent module.
    use crate::api::metadata::build;
    use crate::api::metadata_encode::*;
    use kafka_protocol::messages::update_metadata_request::{
        UpdateMetadataBroker, UpdateMetadataEndpoint, UpdateMetadataPartitionState,
        UpdateMetadataTopicState,
    };
    use kafka_protocol::messages::{
        BrokerId, MetadataResponse, ResponseHeader, ResponseKind, TopicName, UpdateMetadataRequest,
    };
    use kafka_protocol::protocol::{Decodable, StrBytes};

    fn broker(id: i32, listener: &'static str, rack: Option<&str>) -> UpdateMetadataBroker {
        UpdateMetadataBroker::default()
            .with_id(BrokerId(id))
            .with_endpoints(vec![UpdateMetadataEndpoint::default()
                .with_host(StrBytes::from_string(format!("host-{id}.example")))
                .with_port(9090 + id)
                .with_listener(StrBytes::from_static_str(listener))])
            .with_rack(rack.map(|r| StrBytes::from_string(r.to_string())))
    }

    fn partition(
        topic: &str,
        index: i32,
        leader: i32,
        replicas: &[i32],
        isr: &[i32],
        offline: &[i32],
    ) -> UpdateMetadataPartitionState {
        let ids = |v: &[i32]| v.iter().map(|r| BrokerId(*r)).collect::<Vec<_>>();
        UpdateMetadataPartitionState::default()
            .with_topic_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_index(index)
            .with_controller_epoch(3)
            .with_leader(BrokerId(leader))
            .with_leader_epoch(index + 4)
            .with_isr(ids(isr))
            .with_zk_version(1)
            .with_replicas(ids(replicas))
            .with_offline_replicas(ids(offline))
    }

    fn wide(ids: std::ops::RangeInclusive<i32>) -> Vec<i32> {
        ids.collect()
    }

    /// Live brokers 1 (rack), 2 (no rack), 3 (no PLAINTEXT endpoint); 4 and 5 are dead.
    /// Topics: "orders" (healthy, a dead leader, leader -1, an offline replica, a dead
    /// follower), "__consumer_offsets" (internal), "legacy" (no topic id), "wide" (a partition
    /// with 60 broker ids, written without the scratch buffer).
    fn cache(controller: Option<i32>) -> MetadataCache {
        let c = MetadataCache::new();
        let mut req = UpdateMetadataRequest::default()
            .with_controller_epoch(3)
            .with_live_brokers(vec![
                broker(1, "PLAINTEXT", Some("rack-a")),
                broker(2, "PLAINTEXT", None),
                broker(3, "INTERNAL", Some("rack-b")),
            ])
            .with_topic_states(vec![
                UpdateMetadataTopicState::default()
                    .with_topic_name(TopicName(StrBytes::from_static_str("orders")))
                    .with_topic_id(Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788))
                    .with_partition_states(vec![
                        partition("orders", 0, 1, &[1, 2, 3], &[1, 2, 3], &[]),
                        partition("orders", 1, 4, &[4, 1, 2], &[4, 1], &[]),
                        partition("orders", 2, -1, &[5, 4], &[], &[5]),
                        partition("orders", 3, 2, &[2, 5, 1], &[2, 1], &[5]),
                        partition("orders", 300, 2, &[2], &[2], &[]),
                    ]),
                UpdateMetadataTopicState::default()
                    .with_topic_name(TopicName(StrBytes::from_static_str("__consumer_offsets")))
                    .with_topic_id(Uuid::from_u128(9))
                    .with_partition_states(vec![partition(
                        "__consumer_offsets",
                        0,
                        2,
                        &[2, 1],
                        &[2, 1],
                        &[],
                    )]),
            ])
            .with_ungrouped_partition_states(vec![
                partition("legacy", 0, 1, &[1], &[1], &[]),
                // More broker ids than a partition's scratch buffer takes.
                partition("wide", 0, 2, &wide(1..=30), &wide(1..=20), &wide(21..=30)),
                partition("wide", 1, 1, &[1, 2], &[1], &[2]),
            ]);
        if let Some(id) = controller {
            req.controller_id = BrokerId(id);
        }
        c.update(&req);
        c
    }

    fn wanted_with_errors() -> Vec<Wanted> {
        vec![
            Wanted::Topic("orders".into()),
            Wanted::Topic("deleted-meanwhile".into()),
            Wanted::Failed {
                error: ErrorCode::UNKNOWN_TOPIC_ID.code(),
                name: None,
                id: Uuid::from_u128(77),
            },
            Wanted::Failed {
                error: ErrorCode::LEADER_NOT_AVAILABLE.code(),
                name: Some("auto-created".into()),
                id: Uuid::nil(),
            },
            Wanted::Failed {
                error: ErrorCode::INVALID_TOPIC_EXCEPTION.code(),
                name: Some("bad name!".into()),
                id: Uuid::nil(),
            },
            Wanted::Topic("__consumer_offsets".into()),
        ]
    }

    fn options(version: i16, ops: bool) -> Options<'static> {
        Options {
            version,
            listener: "PLAINTEXT",
            cluster_id: "Xy7-cluster-id",
            topic_operations: ops,
            cluster_operations: ops,
        }
    }

    fn plain(c: &MetadataCache, o: &Options<'_>, wanted: Option<&[Wanted]>, cid: i32) -> Vec<u8> {
        let resp = build(c, o, wanted);
        crate::api::frame::encode_response(cid, o.version, &ResponseKind::Metadata(resp))
            .expect("plain encoding")
            .to_vec()
    }

    /// The direct bytes are byte for byte kafka-protocol's encoding of the plain answer, at
    /// every version we serve, for all topics and for a list with every kind of error.
    #[test]
    fn direct_equals_the_plain_encoding() {
        let (lo, hi) =
            crate::api::api_versions::supported_range(kafka_protocol::messages::ApiKey::Metadata)
                .expect("Metadata is served");
        assert_eq!(
            (lo, hi),
            (0, 12),
            "update this test and the encoder together"
        );
        let wanted = wanted_with_errors();
        let mut compared = 0;
        for controller in [Some(2), None] {
            let c = cache(controller);
            for v in lo..=hi {
                for ops in [false, true] {
                    for w in [None, Some(&wanted[..])] {
                        let o = options(v, ops);
                        let direct = encode(&c, &o, w, 0x0102_0304).expect("direct encoding");
                        let plain = plain(&c, &o, w, 0x0102_0304);
                        assert_eq!(
                            &direct[..],
                            &plain[..],
                            "v{v} ops={ops} all={} controller={controller:?}",
                            w.is_none()
                        );
                        compared += 1;
                    }
                }
            }
        }
        assert_eq!(compared, 2 * 13 * 2 * 2);
    }

    /// The content, read back with kafka-protocol's decoder (so the plain path the test above
    /// compares against is itself checked).
    #[test]
    fn answer_content() {
        let c = cache(Some(2));
        let wanted = wanted_with_errors();
        let decode = |v: i16, w: Option<&[Wanted]>, ops: bool| {
            let mut b = encode(&c, &options(v, ops), w, 5).unwrap().slice(4..);
            let h = ResponseHeader::decode(&mut b, if v >= 9 { 1 } else { 0 }).unwrap();
            assert_eq!(h.correlation_id, 5);
            let r = MetadataResponse::decode(&mut b, v).unwrap();
            assert!(b.is_empty(), "v{v}: trailing bytes");
            r
        };
        let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
        let r = decode(12, None, false);
        let brokers: Vec<i32> = r.brokers.iter().map(|b| b.node_id.0).collect();
        assert_eq!(brokers, [1, 2], "broker 3 has no PLAINTEXT endpoint");
        assert_eq!(r.brokers[0].rack.as_deref(), Some("rack-a"));
        assert_eq!(r.brokers[1].rack, None);
        assert_eq!(r.controller_id.0, 2);
        assert_eq!(r.cluster_id.as_deref(), Some("Xy7-cluster-id"));
        let names: Vec<&str> = r
            .topics
            .iter()
            .map(|t| t.name.as_ref().unwrap().0.as_str())
            .collect();
        assert_eq!(names, ["__consumer_offsets", "legacy", "orders", "wide"]);
        let wide = &r.topics[3].partitions;
        const { assert!(30 + 20 + 10 > Scratch::MAX_IDS) };
        assert_eq!(wide[0].replica_nodes.len(), 30);
        assert_eq!(
            ids(&wide[0].offline_replicas),
            (21..=30).collect::<Vec<_>>()
        );
        assert_eq!(ids(&wide[1].isr_nodes), [1]);
        assert!(r.topics[0].is_internal && !r.topics[2].is_internal);
        assert_eq!(r.topics[1].topic_id, Uuid::nil());
        assert_eq!(r.topics[0].topic_authorized_operations, i32::MIN);
        let orders = &r.topics[2];
        assert_eq!(
            orders.topic_id,
            Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788)
        );
        let p: Vec<(i32, i16, i32, i32)> = orders
            .partitions
            .iter()
            .map(|p| {
                (
                    p.partition_index,
                    p.error_code,
                    p.leader_id.0,
                    p.leader_epoch,
                )
            })
            .collect();
        assert_eq!(
            p,
            [
                (0, 0, 1, 4),
                (1, 5, -1, 5),
                (2, 5, -1, 6),
                (3, 0, 2, 7),
                (300, 0, 2, 304)
            ]
        );
        assert_eq!(ids(&orders.partitions[3].replica_nodes), [2, 5, 1]);
        assert_eq!(ids(&orders.partitions[3].offline_replicas), [5]);

        // Version 0: dead replicas and ISR members are left out, no rack, no controller.
        let r0 = decode(0, None, false);
        let o0 = &r0.topics[2];
        assert_eq!(ids(&o0.partitions[1].replica_nodes), [1, 2]);
        assert_eq!(ids(&o0.partitions[1].isr_nodes), [1]);
        assert!(o0.partitions[2].replica_nodes.is_empty());
        assert_eq!(ids(&o0.partitions[3].replica_nodes), [2, 1]);
        assert_eq!(o0.partitions[3].leader_epoch, -1);
        assert_eq!(r0.controller_id.0, -1);

        // Errors, in the request's order, and authorized operations.
        let r = decode(10, Some(&wanted), true);
        let errs: Vec<(i16, Option<&str>, Uuid, usize)> = r
            .topics
            .iter()
            .map(|t| {
                (
                    t.error_code,
                    t.name.as_ref().map(|n| n.0.as_str()),
                    t.topic_id,
                    t.partitions.len(),
                )
            })
            .collect();
        assert_eq!(
            errs,
            [
                (
                    0,
                    Some("orders"),
                    Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788),
                    5
                ),
                (3, Some("deleted-meanwhile"), Uuid::nil(), 0),
                (100, None, Uuid::from_u128(77), 0),
                (5, Some("auto-created"), Uuid::nil(), 0),
                (17, Some("bad name!"), Uuid::nil(), 0),
                (0, Some("__consumer_offsets"), Uuid::from_u128(9), 1),
            ]
        );
        assert!(r
            .topics
            .iter()
            .all(|t| t.topic_authorized_operations == TOPIC_OPERATIONS));
        assert_eq!(r.cluster_authorized_operations, CLUSTER_OPERATIONS);
    }

    /// A string the plain encoder cannot length-prefix is left to it (which refuses it).
    #[test]
    fn too_long_a_string_falls_back() {
        let c = cache(Some(1));
        let long = "x".repeat(40_000);
        let o = Options {
            cluster_id: &long,
            ..options(8, false)
        };
        assert!(encode(&c, &o, None, 1).is_none());
        let resp = build(&c, &o, None);
        assert!(crate::api::frame::encode_response(1, 8, &ResponseKind::Metadata(resp)).is_none());
        // Compact strings (v9+) carry it; both paths agree.
        let o = Options {
            cluster_id: &long,
            ..options(9, false)
        };
        assert_eq!(
            &encode(&c, &o, None, 1).unwrap()[..],
            &plain(&c, &o, None, 1)[..]
        );
    }
}
