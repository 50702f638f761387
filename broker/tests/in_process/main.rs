//! The replica layer, the ISR rules, the acks=all wait and leader changes, tested on an
//! in-process cluster (see `in_process/harness.rs`): real brokers in this process on an
//! in-memory ZooKeeper, talked to over the wire. Each test takes well under a second.
//!
//! Every test cites the Kafka behaviour it checks. The process-level suites in
//! `testcluster/tests/` stay as they are: they check the same rules with stock clients and a
//! real ZooKeeper.

mod alter_partition_errors;
mod harness;
mod initial_metadata;

use std::time::{Duration, Instant};

use harness::{
    batch, code, produce_acks0, produce_on, stays_false, wait_for, Cluster, Idempotence,
};

use zk::backend::ZkBackend;

const LAG: Duration = Duration::from_millis(300);

// ---- creation and metadata ------------------------------------------------------------------

// Kafka: PartitionStateMachine.initializeLeaderAndIsrForPartitions (the first live replica of
// the assignment leads; the ISR is every live replica; leader epoch 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_is_the_preferred_replica_on_creation() {
    let c = Cluster::start(3).await;
    c.create_topic("t", &[&[2, 1, 3], &[3, 2, 1]], &[]).await;
    assert_eq!(c.leader_isr("t", 0).await, (2, 0, vec![1, 2, 3]));
    assert_eq!(c.leader_isr("t", 1).await, (3, 0, vec![1, 2, 3]));
    for id in 1..=3 {
        let md = c.metadata(id, &["t"]).await;
        assert_eq!(harness::leader_in(&md, "t", 0), Some(2));
        assert_eq!(harness::leader_in(&md, "t", 1), Some(3));
    }
}

// Kafka: KafkaApis.handleCreateTopicsRequest in ZooKeeper mode: only the active controller
// creates topics; another broker answers NOT_CONTROLLER (clients send it to the controller
// Metadata names).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_sent_to_a_broker_that_is_not_the_controller_gets_not_controller() {
    let c = Cluster::start(2).await;
    let controller = c.wait_for_controller().await;
    let other = 3 - controller;
    assert_eq!(
        c.create_topic_via(other, "t", &[&[1, 2]], &[]).await,
        code::NOT_CONTROLLER
    );
    assert!(c.state("t", 0).await.is_none());
    wait_for("Metadata naming the controller", || async {
        let md = c.metadata(other, &[]).await;
        (md.controller_id.0 == controller).then_some(())
    })
    .await;
}

// Kafka: MetadataResponse's leader_epoch (KIP-320): clients learn the leader epoch they then
// send in Fetch's current_leader_epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_reports_the_leader_epoch() {
    let mut c = Cluster::start(3).await;
    c.create_topic("t", &[&[2, 3]], &[]).await;
    c.crash(2).await;
    let epoch = c.wait_leader("t", 0, 3).await;
    assert_eq!(epoch, 1);
    wait_for("metadata leader epoch 1", || async {
        let md = c.metadata(3, &["t"]).await;
        let p = &md.topics[0].partitions[0];
        (p.leader_id.0 == 3 && p.leader_epoch == 1).then_some(())
    })
    .await;
}

// ---- produce: acks 0, 1, all ------------------------------------------------------------------

// Kafka: DelayedProduce / Partition.checkEnoughReplicasReachOffset: acks=all is answered once
// the high watermark has passed the batch, i.e. every ISR member has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_is_answered_once_every_isr_member_has_the_batch() {
    let c = Cluster::start(3).await;
    c.create_topic("t", &[&[1, 2, 3]], &[]).await;
    assert_eq!(c.produce(1, "t", 0, -1, &["a", "b"]).await, (code::NONE, 0));
    // No waiting: the answer already means the high watermark moved.
    let f = c.fetch(1, "t", 0, 0).await;
    assert_eq!(f.high_watermark, 2);
    assert_eq!(f.values(), ["a", "b"]);
    let leader_bytes = c.log_end(1, "t", 0);
    assert!(leader_bytes > 0);
    assert_eq!(c.log_end(2, "t", 0), leader_bytes);
    assert_eq!(c.log_end(3, "t", 0), leader_bytes);
}

// Kafka: Log.append assigns consecutive offsets; ProduceResponse.base_offset is the first one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successive_batches_get_consecutive_offsets() {
    let c = Cluster::start(2).await;
    c.create_topic("t", &[&[1, 2]], &[]).await;
    assert_eq!(
        c.produce(1, "t", 0, -1, &["a", "b", "c"]).await,
        (code::NONE, 0)
    );
    assert_eq!(c.produce(1, "t", 0, -1, &["d"]).await, (code::NONE, 3));
    assert_eq!(c.produce(1, "t", 0, 1, &["e", "f"]).await, (code::NONE, 4));
    c.wait_hw(1, "t", 0, 6).await;
    let f = c.fetch(1, "t", 0, 3).await;
    assert_eq!(f.records[0], (3, "d".to_string()));
}

// Kafka: Partition.appendRecordsToLeader refuses acks=all when the ISR is smaller than
// min.insync.replicas, before appending (NOT_ENOUGH_REPLICAS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_with_isr_below_min_insync_replicas_answers_not_enough_replicas() {
    let mut c = Cluster::start_with(2, &[("min.insync.replicas", "2")]).await;
    c.create_topic("t", &[&[1, 2]], &[]).await;
    c.crash(2).await;
    c.wait_isr("t", 0, &[1]).await;
    c.wait_isr_seen_by(1, "t", 0, &[1]).await;
    let (err, _) = c.produce(1, "t", 0, -1, &["a"]).await;
    assert_eq!(err, code::NOT_ENOUGH_REPLICAS);
    // Nothing was appended.
    let f = c.fetch(1, "t", 0, 0).await;
    assert_eq!((f.high_watermark, f.records.len()), (0, 0));
}

// Kafka: LogConfig: a topic's min.insync.replicas override holds for the partition's whole
// life, whatever LeaderAndIsr requests follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topics_min_insync_replicas_override_survives_an_isr_change() {
    let mut c = Cluster::start(2).await;
    c.create_topic("t", &[&[1, 2]], &[("min.insync.replicas", "2")])
        .await;
    c.crash(2).await;
    c.wait_isr("t", 0, &[1]).await;
    c.wait_isr_seen_by(1, "t", 0, &[1]).await;
    let (err, _) = c.produce(1, "t", 0, -1, &["a"]).await;
    assert_eq!(err, code::NOT_ENOUGH_REPLICAS);
}

// Kafka: min.insync.replicas applies to acks=all only; acks=1 is answered by the leader alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_1_ignores_min_insync_replicas() {
    let mut c = Cluster::start_with(2, &[("min.insync.replicas", "2")]).await;
    c.create_topic("t", &[&[1, 2]], &[]).await;
    c.crash(2).await;
    c.wait_isr("t", 0, &[1]).await;
    assert_eq!(c.produce(1, "t", 0, 1, &["a"]).await, (code::NONE, 0));
}

// Kafka: acks=1 is answered right after the leader's append (no DelayedProduce), so a follower
// that is not fetching does not delay it; consumers still see only up to the high watermark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_1_answers_before_followers_have_it() {
    let mut c = Cluster::start(2).await;
    c.create_topic("t", &[&[1, 2]], &[]).await;
    c.freeze(2).await;
    assert_eq!(c.produce(1, "t", 0, 1, &["a"]).await, (code::NONE, 0));
    // Answered while the stuck follower was still in the ISR (an acks=all answer could only
    // come after the leader had removed it, replica.lag.time.max.ms later), and it has nothing.
    assert_eq!(c.leader_isr("t", 0).await.2, [1, 2]);
    assert_eq!(c.log_end(2, "t", 0), 0);
}

// Kafka: acks=0 gets no response at all, and the batch is appended all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_0_appends_without_an_answer() {
    let c = Cluster::start(1).await;
    c.create_topic("t", &[&[1]], &[]).await;
    produce_acks0(c.addr(1), "t", 0, batch(&["a"], None)).await;
    c.wait_hw(1, "t", 0, 1).await;
    assert_eq!(c.fetch(1, "t", 0, 0).await.values(), ["a"]);
}

// Kafka: KafkaApis.handleProduceRequest: acks other than -1, 0, 1 is INVALID_REQUIRED_ACKS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_2_is_refused_as_invalid_required_acks() {
    let c = Cluster::start(1).await;
    c.create_topic("t", &[&[1]], &[]).await;
    let (err, _) = c.produce(1, "t", 0, 2, &["a"]).await;
    assert_eq!(err, code::INVALID_REQUIRED_ACKS);
}

// Kafka: Partition.appendRecordsToLeader: only the leader appends; a follower answers
// NOT_LEADER_OR_FOLLOWER so the client refreshes its metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_to_a_follower_gets_not_leader_or_follower() {
    let c = Cluster::start(2).await;
    c.create_topic("t", &[&[1, 2]], &[]).await;
    let (err, _) = c.produce(2, "t", 0, -1, &["a"]).await;
    assert_eq!(err, code::NOT_LEADER_OR_FOLLOWER);
}

// Kafka: ReplicaManager.appendRecords: a partition this broker does not host at all is
// UNKNOWN_TOPIC_OR_PARTITION.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_to_an_unknown_topic_gets_unknown_topic_or_partition() {
    let c = Cluster::start(1).await;
    let (err, _) = c.produce(1, "nope", 0, 1, &["a"]).await;
    assert_eq!(err, code::UNKNOWN_TOPIC_OR_PARTITION);
}

// ---- the ISR: shrink and expand -----------------------------------------------------------------

// Kafka: Partition.maybeShrinkIsr / isFollowerOutOfSync: a follower that has not caught up for
// replica.lag.time.max.ms leaves the ISR (through AlterPartition), and not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_stops_fetching_leaves_the_isr_after_replica_lag_time_max() {
    let mut c = Cluster::start(3).await;
    c.create_topic("t", &[&[1, 2, 3]], &[]).await;
    assert_eq!(c.produce(1, "t", 0, -1, &["a"]).await.0, code::NONE);
    c.freeze(3).await;
    let frozen = Instant::now();
    // Only a follower that is behind the leader's log end lags.
    assert_eq!(c.produce(1, "t", 0, 1, &["b"]).await.0, code::NONE);
    c.wait_isr("t", 0, &[1, 2]).await;
    assert!(
        frozen.elapsed() >= LAG / 2,
        "shrunk after {:?}",
        frozen.elapsed()
    );
    // The leader's own ISR change keeps the leader epoch (KIP-497 AlterPartition).
    assert_eq!(c.leader_isr("t", 0).await.1, 0);
}

// Kafka: Partition.isFollowerOutOfSync: a follower at the leader's log end is in sync however
// long ago new data arrived; an idle partition keeps its ISR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_caught_up_follower_stays_in_the_isr() {
    let c = Cluster::start(2).await;
    c.create_topic("t", &[&[1, 2]], &[]).await;
    assert_eq!(c.produce(1, "t", 0, -1, &["a"]).await.0, code::NONE);
    let kept = stays_false(LAG * 2, || async { c.leader_isr("t", 0).await.2 != [1, 2] }).await;
    assert!(kept, "the ISR shrank on an idle partition");
}

// Kafka: Partition.maybeExpandIsr: a follower rejoins the ISR once its fetch offset reaches the
// high watermark (and the leader's epoch start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_rejoins_the_isr_when_caught_up() {
    let mut c = Cluster::start(2).await;
    c.create_topic("t", &[&[1, 2]], &[]).await;
    c.freeze(2).await;
    assert_eq!(c.produce(1, "t", 0, 1, &["a", "b"]).await.0, code::NONE);
    c.wait_isr("t", 0, &[1]).await;
    assert_eq!(c.produce(1, "t", 0, -1, &["c"]).await, (code::NONE, 2));
    c.restart(2).await;
    c.wait_isr("t", 0, &[1, 2]).await;
    assert_eq!(c.log_end(2, "t", 0), c.log_end(1, "t", 0));
}

// Kafka: KafkaController.onBrokerFailure / onReplicasBecomeOffline: a broker whose session
// ends leaves every ISR at once, written by the controller (leader epoch bumped), without
// waiting for replica.lag.time.max.ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_follower_is_removed_from_the_isr_by_the_controller() {
    let mut c = Cluster::start(3).await;
    c.create_topic("t", &[&[1, 2, 3]], &[]).await;
    c.crash(3).await;
    c.wait_isr("t", 0, &[1, 2]).await;
    // The bumped leader epoch says the controller wrote it; the leader's own shrink after
    // replica.lag.time.max.ms (AlterPartition) would have kept epoch 0.
    assert_eq!(c.leader_isr("t", 0).await, (1, 1, vec![1, 2]));
}

// Kafka: DelayedProduce completes when the ISR shrinks: acks=all waits for a stuck follower
// only until it leaves the ISR, then the high watermark (now over a smaller ISR) passes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_waits_for_a_stuck_follower_until_it_leaves_the_isr() {
    let mut c = Cluster::start(2).await;
    c.create_topic("t", &[&[1, 2]], &[]).await;
    c.freeze(2).await;
    let start = Instant::now();
    assert_eq!(c.produce(1, "t", 0, -1, &["a"]).await, (code::NONE, 0));
    assert!(
        start.elapsed() >= LAG / 2,
        "answered after {:?}",
        start.elapsed()
    );
    assert_eq!(c.leader_isr("t", 0).await.2, [1]);
}

// Kafka: Partition.checkEnoughReplicasReachOffset: when the ISR shrank below
// min.insync.replicas while acks=all waited, the answer is NOT_ENOUGH_REPLICAS_AFTER_APPEND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_that_loses_its_isr_while_waiting_answers_not_enough_replicas_after_append() {
    let mut c = Cluster::start_with(2, &[("min.insync.replicas", "2")]).await;
    c.create_topic("t", &[&[1, 2]], &[]).await;
    c.freeze(2).await;
    let (err, _) = c.produce(1, "t", 0, -1, &["a"]).await;
    assert_eq!(err, code::NOT_ENOUGH_REPLICAS_AFTER_APPEND);
}

// ---- consumers and the high watermark ----------------------------------------------------------

// Kafka: Partition.fetchRecords with FetchHighWatermark isolation: consumers never read past
// the high watermark, which waits for every ISR member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_never_read_past_the_high_watermark() {
    let mut c = Cluster::start(2).await;
    c.create_topic("t", &[&[1, 2]], &[]).await;
    c.freeze(2).await;
    assert_eq!(c.produce(1, "t", 0, 1, &["a"]).await.0, code::NONE);
    let f = c.fetch(1, "t", 0, 0).await;
    assert_eq!((f.high_watermark, f.records.len()), (0, 0));
    // Once the stuck follower has left the ISR, the high watermark moves and "a" is readable.
    c.wait_isr("t", 0, &[1]).await;
    c.wait_hw(1, "t", 0, 1).await;
    assert_eq!(c.fetch(1, "t", 0, 0).await.values(), ["a"]);
}

// Kafka: Partition.fetchOffsetForTimestamp: a consumer's LATEST (read_uncommitted) is the high
// watermark, not the log end, so it never points at records it cannot read yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_latest_is_the_high_watermark_not_the_log_end() {
    let mut c = Cluster::start(2).await;
    c.create_topic("t", &[&[1, 2]], &[]).await;
    assert_eq!(c.produce(1, "t", 0, -1, &["a", "b"]).await.0, code::NONE);
    c.freeze(2).await;
    assert_eq!(c.produce(1, "t", 0, 1, &["c"]).await.0, code::NONE);
    assert_eq!(c.list_offset(1, "t", 0, -1).await, (code::NONE, 2));
    assert_eq!(c.list_offset(1, "t", 0, -2).await, (code::NONE, 0));
    // Once the stuck follower has left the ISR, LATEST moves to the log end.
    c.wait_isr("t", 0, &[1]).await;
    wait_for("LATEST 3", || async {
        (c.list_offset(1, "t", 0, -1).await == (code::NONE, 3)).then_some(())
    })
    .await;
}

// Kafka: ReplicaManager.readFromLocalLog: a fetch offset past the log end is
// OFFSET_OUT_OF_RANGE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_past_the_log_end_gets_offset_out_of_range() {
    let c = Cluster::start(1).await;
    c.create_topic("t", &[&[1]], &[]).await;
    assert_eq!(c.produce(1, "t", 0, -1, &["a"]).await.0, code::NONE);
    assert_eq!(
        c.fetch(1, "t", 0, 5).await.error_code,
        code::OFFSET_OUT_OF_RANGE
    );
    assert_eq!(c.fetch(1, "t", 0, 1).await.error_code, code::NONE);
}

// Kafka: DelayedFetch: a consumer's long poll at the log end is answered as soon as a produce
// moves the high watermark, not at max_wait_ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_is_answered_when_data_arrives() {
    let c = Cluster::start(2).await;
    c.create_topic("t", &[&[1, 2]], &[]).await;
    let poll = c.fetch_with(1, "t", 0, 0, -1, 5_000);
    let produce = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.produce(1, "t", 0, -1, &["a"]).await
    };
    let start = Instant::now();
    let (f, p) = tokio::join!(poll, produce);
    assert_eq!(p.0, code::NONE);
    assert_eq!(f.values(), ["a"]);
    assert!(start.elapsed() < Duration::from_secs(2));
}

// Kafka: Partition.localLogWithEpochOrThrow (no follower fetching without a rack, KIP-392): a
// consumer's fetch from a follower gets NOT_LEADER_OR_FOLLOWER.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_from_a_non_leader_gets_not_leader_or_follower() {
    let c = Cluster::start(2).await;
    c.create_topic("t", &[&[1, 2]], &[]).await;
    assert_eq!(
        c.fetch(2, "t", 0, 0).await.error_code,
        code::NOT_LEADER_OR_FOLLOWER
    );
}

// Kafka: Partition.localLogWithEpochOrThrow (KIP-320): a fetch naming an older leader epoch
// than the leader's gets FENCED_LEADER_EPOCH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_with_a_stale_leader_epoch_gets_fenced_leader_epoch() {
    let mut c = Cluster::start(3).await;
    c.create_topic("t", &[&[2, 3]], &[]).await;
    c.crash(2).await;
    let epoch = c.wait_leader("t", 0, 3).await;
    c.wait_metadata_leader(3, "t", 0, 3).await;
    let f = c.fetch_with(3, "t", 0, 0, epoch - 1, 0).await;
    assert_eq!(f.error_code, code::FENCED_LEADER_EPOCH);
    let f = c.fetch_with(3, "t", 0, 0, epoch, 0).await;
    assert_eq!(f.error_code, code::NONE);
}

// Kafka: Partition.localLogWithEpochOrThrow (KIP-320): a leader epoch newer than the broker's
// gets UNKNOWN_LEADER_EPOCH (the broker has not heard of it yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_with_a_newer_leader_epoch_gets_unknown_leader_epoch() {
    let c = Cluster::start(1).await;
    c.create_topic("t", &[&[1]], &[]).await;
    let f = c.fetch_with(1, "t", 0, 0, 7, 0).await;
    assert_eq!(f.error_code, code::UNKNOWN_LEADER_EPOCH);
}

// ---- leader changes -------------------------------------------------------------------------

// Kafka: KafkaController.onBrokerFailure with OfflinePartitionLeaderElectionStrategy: the first
// live ISR member in assignment order becomes leader, with the leader epoch bumped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leader_is_replaced_from_the_isr_with_a_bumped_leader_epoch() {
    let mut c = Cluster::start(3).await;
    c.create_topic("t", &[&[2, 3, 1]], &[]).await;
    c.crash(2).await;
    c.wait_leader("t", 0, 3).await;
    assert_eq!(c.leader_isr("t", 0).await, (3, 1, vec![1, 3]));
    c.wait_metadata_leader(1, "t", 0, 3).await;
}

// Kafka: acks=all's guarantee: a record acknowledged with acks=all is on every ISR member, so
// it survives the leader's crash and the new leader serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_acknowledged_with_acks_all_survive_the_leaders_crash() {
    let mut c = Cluster::start(3).await;
    c.create_topic("t", &[&[2, 3, 1]], &[]).await;
    assert_eq!(
        c.produce(2, "t", 0, -1, &["a", "b", "c"]).await.0,
        code::NONE
    );
    c.crash(2).await;
    c.wait_leader("t", 0, 3).await;
    c.wait_metadata_leader(3, "t", 0, 3).await;
    c.wait_hw(3, "t", 0, 3).await;
    assert_eq!(c.fetch(3, "t", 0, 0).await.values(), ["a", "b", "c"]);
    // The new leader takes produce at once, after the old records.
    assert_eq!(c.produce(3, "t", 0, -1, &["d"]).await, (code::NONE, 3));
}

// Kafka: ReplicaManager.becomeLeaderOrFollower: a broker that is no longer leader answers
// produce with NOT_LEADER_OR_FOLLOWER as soon as it applies the LeaderAndIsr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_former_leader_refuses_produce_after_the_leader_change() {
    let c = Cluster::start(3).await;
    c.create_topic("t", &[&[2, 3]], &[]).await;
    // Move leadership with a reassignment to [3, 2] and a preferred election.
    assert_eq!(
        c.reassign(1, "t", 0, &[3, 2]).await,
        (code::NONE, code::NONE)
    );
    wait_for("assignment [3, 2]", || async {
        (c.assignment("t", 0).await == [3, 2]).then_some(())
    })
    .await;
    assert_eq!(c.elect_leader(1, 0, "t", 0).await, (code::NONE, code::NONE));
    c.wait_leader("t", 0, 3).await;
    wait_for("broker 2 refuses produce", || async {
        (c.produce(2, "t", 0, 1, &["x"]).await.0 == code::NOT_LEADER_OR_FOLLOWER).then_some(())
    })
    .await;
}

// Kafka: the unclean.leader.election.enable=false default of PartitionLeaderElectionAlgorithms
// .offlinePartitionLeaderElection: with every ISR member gone, a live out-of-sync replica is
// not elected and the partition stays offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclean_election_off_leaves_the_partition_offline() {
    let mut c = Cluster::start(3).await;
    c.create_topic("t", &[&[1, 2]], &[]).await;
    c.freeze(2).await;
    assert_eq!(c.produce(1, "t", 0, 1, &["a"]).await.0, code::NONE);
    c.wait_isr("t", 0, &[1]).await;
    c.restart(2).await;
    c.crash(1).await;
    c.wait_leader("t", 0, -1).await;
    let offline = stays_false(LAG, || async { c.leader_isr("t", 0).await.0 != -1 }).await;
    assert!(offline, "an out-of-sync replica was elected");
    // Kafka keeps the last ISR member in the ISR while the partition is offline.
    assert_eq!(c.leader_isr("t", 0).await.2, [1]);
}

// Kafka: offlinePartitionLeaderElection with unclean.leader.election.enable=true, then
// Partition.makeFollower + the fetcher's truncation (KIP-101/279): the old leader, back as a
// follower, truncates its log to the new leader's epoch end and copies the new leader's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclean_election_on_elects_an_out_of_sync_replica_and_the_old_leader_truncates() {
    // The broker-wide setting: the controller does not read the topic-level override (a
    // simplification stated in controller/src/partition_state.rs).
    let mut c = Cluster::start_with(3, &[("unclean.leader.election.enable", "true")]).await;
    c.create_topic(
        "t",
        &[&[1, 2]],
        &[("unclean.leader.election.enable", "true")],
    )
    .await;
    c.freeze(2).await;
    assert_eq!(
        c.produce(1, "t", 0, 1, &["lost-1", "lost-2"]).await.0,
        code::NONE
    );
    c.wait_isr("t", 0, &[1]).await;
    c.restart(2).await;
    c.crash(1).await;
    let epoch = c.wait_leader("t", 0, 2).await;
    assert!(epoch >= 1);
    c.wait_metadata_leader(2, "t", 0, 2).await;
    wait_for("produce on the new leader", || async {
        (c.produce(2, "t", 0, 1, &["kept"]).await.0 == code::NONE).then_some(())
    })
    .await;
    c.restart(1).await;
    c.wait_isr("t", 0, &[1, 2]).await;
    // Broker 1 dropped "lost-1" and "lost-2" and now holds what broker 2 holds.
    wait_for("broker 1's log equals broker 2's", || async {
        (c.log_end(1, "t", 0) == c.log_end(2, "t", 0)).then_some(())
    })
    .await;
    assert_eq!(c.fetch(2, "t", 0, 0).await.values(), ["kept"]);
}

// Kafka: KafkaApis.handleElectLeaders with PreferredReplicaPartitionLeaderElectionStrategy:
// leadership moves back to the first replica of the assignment once it is in the ISR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_election_moves_leadership_back_to_the_preferred_replica() {
    let mut c = Cluster::start(3).await;
    c.create_topic("t", &[&[2, 3]], &[]).await;
    c.crash(2).await;
    let failover_epoch = c.wait_leader("t", 0, 3).await;
    c.restart(2).await;
    c.wait_isr("t", 0, &[2, 3]).await;
    // The rejoin was the leader's AlterPartition, which keeps the leader epoch.
    assert_eq!(c.leader_isr("t", 0).await.0, 3);
    let before = c.leader_isr("t", 0).await.1;
    assert!(before >= failover_epoch);
    assert_eq!(c.elect_leader(1, 0, "t", 0).await, (code::NONE, code::NONE));
    let epoch = c.wait_leader("t", 0, 2).await;
    assert_eq!(epoch, before + 1);
}

// Kafka: ElectLeaders with ElectionType.UNCLEAN (KIP-460): the admin may elect an out-of-sync
// replica of an offline partition even with unclean.leader.election.enable off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unclean_election_asked_by_the_admin_elects_an_out_of_sync_replica() {
    let mut c = Cluster::start(3).await;
    c.create_topic("t", &[&[2, 3]], &[]).await;
    c.freeze(3).await;
    assert_eq!(c.produce(2, "t", 0, 1, &["a"]).await.0, code::NONE);
    c.wait_isr("t", 0, &[2]).await;
    c.restart(3).await;
    c.crash(2).await;
    c.wait_leader("t", 0, -1).await;
    assert_eq!(c.elect_leader(1, 1, "t", 0).await, (code::NONE, code::NONE));
    c.wait_leader("t", 0, 3).await;
    assert_eq!(c.leader_isr("t", 0).await.2, [3]);
}

// Kafka: ElectLeaders answers ELECTION_NOT_NEEDED when the preferred replica already leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_election_when_the_preferred_replica_leads_is_not_needed() {
    let c = Cluster::start(2).await;
    c.create_topic("t", &[&[2, 1]], &[]).await;
    let (top, p) = c.elect_leader(1, 0, "t", 0).await;
    assert_eq!((top, p), (code::NONE, code::ELECTION_NOT_NEEDED));
    assert_eq!(c.leader_isr("t", 0).await.1, 0);
}

// ---- controlled shutdown and controller failover ------------------------------------------------

// Kafka: KafkaServer.controlledShutdown / KafkaController.doControlledShutdown: before a broker
// stops, the controller moves its leaderships to other ISR members, so when shutdown returns
// the partition already has a live leader (no offline window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controlled_shutdown_moves_leadership_away_first() {
    let mut c = Cluster::start(3).await;
    let controller = c.wait_for_controller().await;
    let (a, b) = match controller {
        1 => (2, 3),
        2 => (1, 3),
        _ => (1, 2),
    };
    c.create_topic("t", &[&[a, b]], &[]).await;
    c.stop(a).await;
    // No waiting: the leadership moved while `a` was still running.
    assert_eq!(c.leader_isr("t", 0).await, (b, 1, vec![b]));
    assert!(!c.broker_registered(a).await);
    assert_eq!(c.produce(b, "t", 0, -1, &["x"]).await.0, code::NONE);
}

// Kafka: KafkaController.onControllerResignation + a new election: when the controller's
// broker shuts down cleanly, another broker takes /controller with a bumped controller epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_controllers_broker_elects_another_controller() {
    let mut c = Cluster::start(3).await;
    let old = c.wait_for_controller().await;
    let (_, epoch) = c.zk.get_controller_epoch().await.unwrap().unwrap();
    let epoch_before = epoch;
    c.stop(old).await;
    let new = wait_for("a new controller", || async {
        c.controller_id().await.filter(|id| *id != old)
    })
    .await;
    assert_ne!(new, old);
    let (now, _) = c.zk.get_controller_epoch().await.unwrap().unwrap();
    assert!(now > epoch_before - 1 && now >= 2, "controller epoch {now}");
}

// Kafka: KafkaController.onControllerFailover: a new controller keeps the leaders it finds in
// ZooKeeper (no election for partitions whose leader is alive, leader epochs unchanged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_failover_keeps_leaders() {
    let mut c = Cluster::start(3).await;
    let old = c.wait_for_controller().await;
    let others: Vec<i32> = (1..=3).filter(|b| *b != old).collect();
    c.create_topic("t", &[&[others[0], others[1]]], &[]).await;
    let before = c.leader_isr("t", 0).await;
    c.crash(old).await;
    wait_for("a new controller", || async {
        c.controller_id().await.filter(|id| *id != old)
    })
    .await;
    let kept = stays_false(Duration::from_millis(200), || async {
        c.leader_isr("t", 0).await != before
    })
    .await;
    assert!(
        kept,
        "the failover changed {:?}",
        c.leader_isr("t", 0).await
    );
    assert_eq!(c.produce(others[0], "t", 0, -1, &["x"]).await.0, code::NONE);
}

// Kafka: KafkaZkClient.registerControllerAndIncrementControllerEpoch: every new controller
// bumps /controller_epoch, and its LeaderAndIsr writes carry that epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_failover_bumps_the_controller_epoch_of_later_state_changes() {
    let mut c = Cluster::start(3).await;
    let old = c.wait_for_controller().await;
    let others: Vec<i32> = (1..=3).filter(|b| *b != old).collect();
    c.create_topic("t", &[&[others[0], others[1]]], &[]).await;
    let first = c.state("t", 0).await.unwrap().controller_epoch;
    c.crash(old).await;
    wait_for("a new controller", || async {
        c.controller_id().await.filter(|id| *id != old)
    })
    .await;
    let (controller_epoch, _) = c.zk.get_controller_epoch().await.unwrap().unwrap();
    assert_eq!(controller_epoch, first + 1);
    // A leader change now is written under the new controller epoch.
    c.crash(others[0]).await;
    c.wait_leader("t", 0, others[1]).await;
    let (now, _) = c.zk.get_controller_epoch().await.unwrap().unwrap();
    assert!(now > first);
    assert_eq!(c.state("t", 0).await.unwrap().controller_epoch, now);
}

// Kafka: KafkaServer.startup registers /brokers/ids/<id> (ephemeral); the ZooKeeper session's
// end removes it (KafkaController.onBrokerFailure starts from that).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_brokers_registration_vanishes_and_comes_back_on_restart() {
    let mut c = Cluster::start(2).await;
    assert!(c.broker_registered(2).await);
    c.crash(2).await;
    assert!(!c.broker_registered(2).await);
    c.restart(2).await;
    assert!(c.broker_registered(2).await);
}

// ---- StopReplica, reassignment ----------------------------------------------------------------

// Kafka: TopicDeletionManager + ReplicaManager.stopReplicas(deletePartition = true): deleting a
// topic removes its log from every replica and its znodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_topic_removes_its_logs_from_every_replica() {
    let c = Cluster::start(2).await;
    c.create_topic("t", &[&[1, 2]], &[]).await;
    assert_eq!(c.produce(1, "t", 0, -1, &["a"]).await.0, code::NONE);
    assert!(c.log_dir(1).join("t-0").exists() && c.log_dir(2).join("t-0").exists());
    assert_eq!(c.delete_topic(1, "t").await, code::NONE);
    // The folder is renamed `<topic>-<partition>.<id>-delete` under the log's lock before it
    // is removed, as Kafka does, so a leader-epoch checkpoint written meanwhile cannot leave it
    // behind (it did, about once in six runs, before the rename).
    let left = |b: i32| {
        std::fs::read_dir(c.log_dir(b)).map_or(0, |d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("t-0"))
                .count()
        })
    };
    wait_for("the folders of t-0 gone", || async {
        (left(1) == 0 && left(2) == 0).then_some(())
    })
    .await;
    wait_for("the topic znode gone", || async {
        c.zk.get_topic_assignment("t")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

// Kafka: KafkaController.onPartitionReassignment: the new replicas catch up and join the ISR,
// then the old ones are dropped (StopReplica with deletion) and the assignment is the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reassignment_moves_the_replicas_and_deletes_the_old_log() {
    let c = Cluster::start(3).await;
    c.create_topic("t", &[&[1, 2]], &[]).await;
    assert_eq!(c.produce(1, "t", 0, -1, &["a", "b"]).await.0, code::NONE);
    let controller = c.wait_for_controller().await;
    assert_eq!(
        c.reassign(controller, "t", 0, &[2, 3]).await,
        (code::NONE, code::NONE)
    );
    wait_for("assignment [2, 3]", || async {
        (c.assignment("t", 0).await == [2, 3]).then_some(())
    })
    .await;
    c.wait_isr("t", 0, &[2, 3]).await;
    c.wait_leader("t", 0, 2).await;
    wait_for("broker 1's log of t-0 deleted", || async {
        (!c.log_dir(1).join("t-0").exists()).then_some(())
    })
    .await;
    c.wait_metadata_leader(2, "t", 0, 2).await;
    c.wait_hw(2, "t", 0, 2).await;
    assert_eq!(c.log_end(3, "t", 0), c.log_end(2, "t", 0));
}

// ---- idempotent producer ----------------------------------------------------------------------

// Kafka: ProducerStateManager / ProducerAppendInfo: a retried batch (same producer id, epoch
// and sequence as one of the last five) is not appended again; the answer repeats its offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_producers_retried_batch_is_not_appended_twice() {
    let c = Cluster::start(2).await;
    c.create_topic("t", &[&[1, 2]], &[]).await;
    let (err, producer_id, producer_epoch) = c.init_producer_id(1).await;
    assert_eq!(err, code::NONE);
    let idem = |base_sequence| {
        Some(Idempotence {
            producer_id,
            producer_epoch,
            base_sequence,
        })
    };
    let mut conn = c.connect(1).await;
    let first = produce_on(&mut conn, "t", 0, -1, batch(&["a", "b"], idem(0))).await;
    assert_eq!(first, (code::NONE, 0));
    let retry = produce_on(&mut conn, "t", 0, -1, batch(&["a", "b"], idem(0))).await;
    assert_eq!(retry, (code::NONE, 0));
    let next = produce_on(&mut conn, "t", 0, -1, batch(&["c"], idem(2))).await;
    assert_eq!(next, (code::NONE, 2));
    assert_eq!(c.fetch(1, "t", 0, 0).await.values(), ["a", "b", "c"]);
}

// Kafka: ProducerAppendInfo.checkSequence: a sequence that skips ahead is
// OUT_OF_ORDER_SEQUENCE_NUMBER and nothing is appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_producers_sequence_gap_is_out_of_order() {
    let c = Cluster::start(1).await;
    c.create_topic("t", &[&[1]], &[]).await;
    let (_, producer_id, producer_epoch) = c.init_producer_id(1).await;
    let idem = |base_sequence| {
        Some(Idempotence {
            producer_id,
            producer_epoch,
            base_sequence,
        })
    };
    let mut conn = c.connect(1).await;
    assert_eq!(
        produce_on(&mut conn, "t", 0, 1, batch(&["a"], idem(0)))
            .await
            .0,
        code::NONE
    );
    let (err, _) = produce_on(&mut conn, "t", 0, 1, batch(&["z"], idem(5))).await;
    assert_eq!(err, code::OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert_eq!(c.fetch(1, "t", 0, 0).await.values(), ["a"]);
}

// Kafka: the producer state is replicated with the log (ProducerStateManager on followers), so
// a retry sent to the new leader after a failover is still recognised as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_idempotent_batch_is_a_duplicate_on_the_new_leader_too() {
    let mut c = Cluster::start(3).await;
    c.create_topic("t", &[&[2, 3]], &[]).await;
    let (_, producer_id, producer_epoch) = c.init_producer_id(2).await;
    let idem = Some(Idempotence {
        producer_id,
        producer_epoch,
        base_sequence: 0,
    });
    let mut conn = c.connect(2).await;
    assert_eq!(
        produce_on(&mut conn, "t", 0, -1, batch(&["a"], idem)).await,
        (code::NONE, 0)
    );
    drop(conn);
    c.crash(2).await;
    c.wait_leader("t", 0, 3).await;
    c.wait_metadata_leader(3, "t", 0, 3).await;
    let mut conn = c.connect(3).await;
    let retry = produce_on(&mut conn, "t", 0, -1, batch(&["a"], idem)).await;
    assert_eq!(retry, (code::NONE, 0));
    c.wait_hw(3, "t", 0, 1).await;
    assert_eq!(c.fetch(3, "t", 0, 0).await.values(), ["a"]);
}

// ---- compressed batches -----------------------------------------------------------------------

// Kafka: LogValidator.validateMessagesAndAssignOffsetsCompressed. The leader decompresses a
// producer's compressed batch and reads every record before appending it: noise behind a
// correct CRC-32C is refused (CORRUPT_MESSAGE here; see storage/src/compression.rs) and never
// reaches a consumer, while batches written by another implementation of each codec
// (kafka-protocol's) are stored, replicated and read back intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_compressed_batches_are_refused_and_consumers_read_to_the_end() {
    use kafka_protocol::records::Compression;
    use storage::compression::{self, Codec};
    let c = Cluster::start(3).await;
    c.create_topic("z", &[&[1, 2, 3]], &[]).await;
    let mut conn = c.connect(1).await;
    assert_eq!(
        produce_on(&mut conn, "z", 0, -1, batch(&["first"], None)).await,
        (code::NONE, 0)
    );
    let mut expected = vec!["first".to_string()];
    let codecs = [
        (Codec::Gzip, Compression::Gzip),
        (Codec::Snappy, Compression::Snappy),
        (Codec::Lz4, Compression::Lz4),
        (Codec::Zstd, Compression::Zstd),
    ];
    for (i, (codec, kp)) in codecs.into_iter().enumerate() {
        let plain = batch(&["never stored"], None);
        let noise: Vec<u8> = (0..200u32)
            .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i as u32) >> 13) as u8)
            .collect();
        let corrupt = compression::with_payload(&plain, codec, &noise);
        let refused = produce_on(&mut conn, "z", 0, -1, corrupt.into()).await;
        assert_eq!(refused, (code::CORRUPT_MESSAGE, -1), "{}", codec.name());
        let values: Vec<String> = (0..3).map(|k| format!("{}-{k}", codec.name())).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let valid = harness::batch_compressed(&refs, None, kp);
        let parts = storage::batch::split_batches(&valid).unwrap();
        assert_eq!(parts.len(), 1, "one batch");
        assert_eq!(parts[0].header.record_count, 3);
        assert_eq!(parts[0].header.compression(), codec.id());
        let stored = produce_on(&mut conn, "z", 0, -1, valid).await;
        assert_eq!(
            stored,
            (code::NONE, expected.len() as i64),
            "{}",
            codec.name()
        );
        expected.extend(values);
    }
    let end = expected.len() as i64;
    c.wait_hw(1, "z", 0, end).await;
    // A consumer reads from offset 0 to the end: every batch decompresses.
    let f = c.fetch(1, "z", 0, 0).await;
    assert_eq!(f.error_code, code::NONE);
    assert_eq!(f.values(), expected);
    // The followers hold the same bytes (the producer's compressed batches, as sent).
    wait_for("followers' logs equal the leader's", || async {
        let sizes: Vec<u64> = (1..=3).map(|id| c.log_end(id, "z", 0)).collect();
        (sizes[0] > 0 && sizes.iter().all(|s| *s == sizes[0])).then_some(())
    })
    .await;
}

// ---- restarts ---------------------------------------------------------------------------------

// Kafka: LogManager.loadLogs after a clean shutdown (recovery point checkpointed): a restarted
// broker serves what it had, with the high watermark it checkpointed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleanly_restarted_broker_keeps_its_log() {
    let mut c = Cluster::start(1).await;
    c.create_topic("t", &[&[1]], &[]).await;
    assert_eq!(c.produce(1, "t", 0, -1, &["a", "b"]).await.0, code::NONE);
    c.stop(1).await;
    c.restart(1).await;
    c.wait_metadata_leader(1, "t", 0, 1).await;
    c.wait_hw(1, "t", 0, 2).await;
    assert_eq!(c.fetch(1, "t", 0, 0).await.values(), ["a", "b"]);
    assert_eq!(c.produce(1, "t", 0, -1, &["c"]).await, (code::NONE, 2));
}

// Kafka: LogManager.loadLogs with recovery after an unclean shutdown: a crashed single-replica
// broker comes back with every acknowledged record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_and_restarted_broker_keeps_acknowledged_records() {
    let mut c = Cluster::start(1).await;
    c.create_topic("t", &[&[1]], &[]).await;
    assert_eq!(c.produce(1, "t", 0, -1, &["a", "b"]).await.0, code::NONE);
    c.crash(1).await;
    c.restart(1).await;
    c.wait_metadata_leader(1, "t", 0, 1).await;
    c.wait_hw(1, "t", 0, 2).await;
    assert_eq!(c.fetch(1, "t", 0, 0).await.values(), ["a", "b"]);
}

// ---- ZooKeeper session loss -------------------------------------------------------------------

// Kafka: KafkaController's session expiration handler, then RegisterBrokerAndReelect, with
// KAFKA-7165's registration check: after its session expired, a broker whose old
// `/brokers/ids/<id>` is still held by that session (ZooKeeper has not deleted it yet) waits,
// never giving up, until it goes; then it registers with a new broker epoch, and the controller
// treats it as a restarted broker (onBrokerFailure, then onBrokerStartup: it loses its
// leadership and comes back as a follower in every ISR). Meanwhile, as in Kafka, its leader
// keeps answering acks=1 produce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_whose_session_expired_waits_for_its_old_registration_then_comes_back_restarted() {
    let c = Cluster::start(3).await;
    c.create_topic("t", &[&[2, 1, 3], &[1, 2, 3]], &[]).await;
    let (old_epoch, old_owner) = c.registration(2).await.unwrap();
    let old = c.lose_session(2);
    assert_eq!(old.session_id(), old_owner);
    wait_for("broker 2 on a new session", || async {
        (c.session_of(2).session_id() != old_owner).then_some(())
    })
    .await;
    // It does not take over, delete or give up on the old registration while it is held.
    let held = stays_false(Duration::from_millis(400), || async {
        c.registration(2).await != Some((old_epoch, old_owner))
    })
    .await;
    assert!(held, "the registration of the old session changed");
    let gauge = "kafka_server_KafkaServer_ZooKeeperRegistered";
    assert!(
        c.metrics_page(2).contains(&format!("{gauge} 0")),
        "the registered gauge while unregistered"
    );
    assert_eq!(
        c.produce(2, "t", 0, 1, &["while-unregistered"]).await.0,
        code::NONE
    );
    // ZooKeeper expires the old session, late: its znode goes and the broker registers.
    old.expire();
    let (new_epoch, new_owner) = wait_for("broker 2 registered again", || async {
        c.registration(2).await.filter(|(e, _)| *e != old_epoch)
    })
    .await;
    assert!(new_epoch > old_epoch, "a new broker epoch");
    assert_eq!(new_owner, c.session_of(2).session_id());
    wait_for("the registered gauge back at 1", || async {
        c.metrics_page(2)
            .contains(&format!("{gauge} 1"))
            .then_some(())
    })
    .await;
    // The controller saw it fail (leadership of t-0 moved, leader epoch bumped) and start again
    // (it is a follower in both ISRs).
    let (leader, leader_epoch, _) = wait_for("t-0 led by another broker", || async {
        let s = c.leader_isr("t", 0).await;
        (s.0 != 2).then_some(s)
    })
    .await;
    assert!(leader_epoch > 0 && leader != 2);
    c.wait_isr("t", 0, &[1, 2, 3]).await;
    c.wait_isr("t", 1, &[1, 2, 3]).await;
    assert_eq!(
        c.produce(leader, "t", 0, -1, &["after"]).await.0,
        code::NONE
    );
}

// Kafka elects a controller only on a broker whose current session has registered (startup
// and RegisterBrokerAndReelect register first). A broker whose session expired and whose old
// registration is still held contests nothing, even when `/controller` is gone and nobody else
// is left; once registered again it wins, with itself among the live brokers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_without_a_registration_of_its_session_never_becomes_controller() {
    let mut c = Cluster::start(2).await;
    assert_eq!(c.wait_for_controller().await, 1);
    let old = c.lose_session(2);
    let old_owner = old.session_id();
    wait_for("broker 2 on a new session", || async {
        (c.session_of(2).session_id() != old_owner).then_some(())
    })
    .await;
    c.crash(1).await;
    // What its /controller watch would do: contest.
    c.poke_election(2);
    let none = stays_false(Duration::from_millis(500), || async {
        c.controller_id().await.is_some()
    })
    .await;
    assert!(none, "an unregistered broker became controller");
    old.expire();
    assert_eq!(c.wait_for_controller().await, 2);
    // It counts itself live: it can lead a new partition.
    c.create_topic("t", &[&[2]], &[]).await;
    assert_eq!(c.produce(2, "t", 0, -1, &["x"]).await.0, code::NONE);
}

// Issue 22 (Kafka's leader keeps serving without its session, but the controller no longer
// counts it): a leader whose session expired and is not registered again answers acks=1 but
// does not grow the ISR: a follower that catches up meanwhile is not proposed; once the leader
// is gone and another leads, the follower rejoins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_leader_does_not_expand_the_isr() {
    let mut c = Cluster::start(3).await;
    c.create_topic("t", &[&[2, 1, 3]], &[]).await;
    c.freeze(3).await;
    assert_eq!(c.produce(2, "t", 0, 1, &["a"]).await.0, code::NONE);
    c.wait_isr("t", 0, &[1, 2]).await;
    let old = c.lose_session(2);
    c.restart(3).await;
    assert_eq!(c.produce(2, "t", 0, 1, &["b"]).await.0, code::NONE);
    let held = stays_false(Duration::from_millis(500), || async {
        c.leader_isr("t", 0).await.2.contains(&3)
    })
    .await;
    assert!(held, "an unregistered leader expanded the ISR");
    old.expire();
    c.wait_isr("t", 0, &[1, 2, 3]).await;
}
