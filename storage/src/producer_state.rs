//! Producer state of one partition: what makes a producer with `enable.idempotence` exactly-once
//! per partition.
//!
//! Kafka class mirrored: `ProducerStateManager` / `ProducerStateEntry` / `ProducerAppendInfo`.
//! An idempotent producer stamps every batch with its producer id, producer epoch and the
//! sequence number of the batch's first record (per partition, +1 per record). For each producer
//! id the log remembers its epoch and the metadata of its last five batches
//! ([`NUM_BATCHES_TO_RETAIN`], a producer's `max.in.flight.requests.per.connection` cap). Then:
//!
//! - a batch whose first and last sequence equal a remembered batch's is a **duplicate** (a retry
//!   of a batch that was written but whose answer was lost, e.g. when the leader died): it is not
//!   written again and the producer is answered with the offsets of the first copy;
//! - otherwise the first sequence must follow the last one (`last + 1`, wrapping at `i32::MAX`),
//!   or be 0 for a new epoch, else OUT_OF_ORDER_SEQUENCE_NUMBER;
//! - an epoch older than the one remembered is INVALID_PRODUCER_EPOCH.
//!
//! Followers apply the same updates from the batches they copy, so a follower that becomes leader
//! recognises retries of batches written under the previous leader. That is the whole point of
//! the feature across a failover.
//!
//! Simplification: Kafka snapshots this state into `<offset>.snapshot` files so that loading does
//! not read the whole log; here it is rebuilt at load (and after a truncation) by reading every
//! batch header of the log. Producers are not expired (Kafka: `producer.id.expiration.ms`).

use std::collections::{HashMap, VecDeque};

use crate::batch::BatchHeader;
use crate::error::{Error, Result};

/// Batches remembered per producer (Kafka: `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`).
pub const NUM_BATCHES_TO_RETAIN: usize = 5;
/// `RecordBatch.NO_PRODUCER_ID` / `NO_SEQUENCE`.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_SEQUENCE: i32 = -1;

/// Where one producer's batch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

#[derive(Debug, Clone, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMetadata>,
}

/// What a leader should do with a client's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Not idempotent, or the next batch in sequence: write it.
    Append,
    /// Already in the log: answer with these offsets and write nothing.
    Duplicate(BatchMetadata),
}

/// Last sequence of a batch: `base + last_offset_delta`, wrapping past `i32::MAX` to 0
/// (`DefaultRecordBatch.incrementSequence`).
pub fn last_sequence(base_sequence: i32, last_offset_delta: i32) -> i32 {
    if base_sequence == NO_SEQUENCE {
        return NO_SEQUENCE;
    }
    let sum = base_sequence as i64 + last_offset_delta as i64;
    if sum > i32::MAX as i64 {
        (sum - i32::MAX as i64 - 1) as i32
    } else {
        sum as i32
    }
}

fn in_sequence(last_seq: i32, next_seq: i32) -> bool {
    next_seq as i64 == last_seq as i64 + 1 || (next_seq == 0 && last_seq == i32::MAX)
}

/// Producer ids to their epoch and last batches, for one partition.
#[derive(Debug, Default, Clone)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStateManager {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of producers with state.
    pub fn len(&self) -> usize {
        self.producers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Forgets everything (before a rebuild).
    pub fn clear(&mut self) {
        self.producers.clear();
    }

    /// The checks a leader makes on a client's batch before writing it (Kafka:
    /// `UnifiedLog.analyzeAndValidateProducerState` with origin Client).
    pub fn check(&self, topic: &str, partition: i32, h: &BatchHeader) -> Result<SequenceCheck> {
        if h.producer_id == NO_PRODUCER_ID || h.is_control() {
            return Ok(SequenceCheck::Append);
        }
        if h.base_sequence < 0 {
            return Err(Error::InvalidRecord(format!(
                "batch of producer {} has no sequence number",
                h.producer_id
            )));
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            // No state (a new producer, or its batches were deleted): any sequence is accepted.
            return Ok(SequenceCheck::Append);
        };
        let first_seq = h.base_sequence;
        let last_seq = last_sequence(first_seq, h.last_offset_delta);
        if h.producer_epoch < entry.epoch {
            return Err(Error::InvalidProducerEpoch(format!(
                "producer {} epoch {} is older than the current epoch {} ({topic}-{partition})",
                h.producer_id, h.producer_epoch, entry.epoch
            )));
        }
        if h.producer_epoch == entry.epoch {
            if let Some(dup) = entry
                .batches
                .iter()
                .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
            {
                return Ok(SequenceCheck::Duplicate(*dup));
            }
            if let Some(last) = entry.batches.back() {
                if !in_sequence(last.last_seq, first_seq) {
                    return Err(Error::OutOfOrderSequence(format!(
                        "producer {} epoch {}: sequence {first_seq} does not follow {} ({topic}-{partition})",
                        h.producer_id, h.producer_epoch, last.last_seq
                    )));
                }
            }
        } else if first_seq != 0 {
            return Err(Error::OutOfOrderSequence(format!(
                "producer {}: new epoch {} must start at sequence 0, not {first_seq} ({topic}-{partition})",
                h.producer_id, h.producer_epoch
            )));
        }
        Ok(SequenceCheck::Append)
    }

    /// Records a batch that is now in the log (leader or follower), with its final offsets.
    pub fn update(&mut self, h: &BatchHeader) {
        if h.producer_id == NO_PRODUCER_ID || h.is_control() || h.base_sequence < 0 {
            return;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
            });
        if h.producer_epoch < entry.epoch {
            // A follower copying a leader's log never sees this; ignore rather than regress.
            return;
        }
        if h.producer_epoch > entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(BatchMetadata {
            first_seq: h.base_sequence,
            last_seq: last_sequence(h.base_sequence, h.last_offset_delta),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
            max_timestamp: h.max_timestamp,
        });
        while entry.batches.len() > NUM_BATCHES_TO_RETAIN {
            entry.batches.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 1,
            max_timestamp: 1,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: count,
        }
    }

    #[test]
    fn in_order_batches_append_and_a_retry_is_a_duplicate_with_the_first_offsets() {
        let mut s = ProducerStateManager::new();
        let b1 = header(7, 0, 0, 10, 100);
        assert_eq!(s.check("t", 0, &b1).unwrap(), SequenceCheck::Append);
        s.update(&b1);
        let b2 = header(7, 0, 10, 5, 110);
        assert_eq!(s.check("t", 0, &b2).unwrap(), SequenceCheck::Append);
        s.update(&b2);
        // The retry of b1 arrives later (its offsets in the request are the client's, 0).
        match s.check("t", 0, &header(7, 0, 0, 10, 0)).unwrap() {
            SequenceCheck::Duplicate(m) => {
                assert_eq!((m.first_offset, m.last_offset), (100, 109));
            }
            other => panic!("expected a duplicate, got {other:?}"),
        }
    }

    #[test]
    fn a_gap_or_an_overlap_is_out_of_order() {
        let mut s = ProducerStateManager::new();
        s.update(&header(7, 0, 0, 10, 0));
        let gap = s.check("t", 0, &header(7, 0, 11, 1, 0)).unwrap_err();
        assert_eq!(gap.kafka_error_code(), 45);
        let overlap = s.check("t", 0, &header(7, 0, 5, 10, 0)).unwrap_err();
        assert_eq!(overlap.kafka_error_code(), 45);
    }

    #[test]
    fn epochs_fence_and_restart_sequences() {
        let mut s = ProducerStateManager::new();
        s.update(&header(7, 3, 0, 1, 0));
        assert_eq!(
            s.check("t", 0, &header(7, 2, 1, 1, 0))
                .unwrap_err()
                .kafka_error_code(),
            47
        );
        assert_eq!(
            s.check("t", 0, &header(7, 4, 5, 1, 0))
                .unwrap_err()
                .kafka_error_code(),
            45
        );
        assert_eq!(
            s.check("t", 0, &header(7, 4, 0, 1, 0)).unwrap(),
            SequenceCheck::Append
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered_and_unknown_producers_start_anywhere() {
        let mut s = ProducerStateManager::new();
        for i in 0..7 {
            s.update(&header(9, 0, i, 1, i as i64));
        }
        assert!(matches!(
            s.check("t", 0, &header(9, 0, 6, 1, 0)).unwrap(),
            SequenceCheck::Duplicate(_)
        ));
        // Sequence 1 is older than the remembered window: not a known duplicate, and out of order.
        assert!(s.check("t", 0, &header(9, 0, 1, 1, 0)).is_err());
        assert_eq!(
            s.check("t", 0, &header(10, 0, 42, 1, 0)).unwrap(),
            SequenceCheck::Append
        );
        assert_eq!(
            s.check("t", 0, &header(-1, -1, -1, 1, 0)).unwrap(),
            SequenceCheck::Append
        );
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(last_sequence(i32::MAX - 1, 3), 1);
        let mut s = ProducerStateManager::new();
        s.update(&header(1, 0, i32::MAX - 1, 2, 0));
        assert_eq!(
            s.check("t", 0, &header(1, 0, 0, 1, 2)).unwrap(),
            SequenceCheck::Append
        );
    }
}
