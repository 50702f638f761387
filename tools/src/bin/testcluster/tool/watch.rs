//! `testcluster watch`: a live stream of what changes in the cluster.
//!
//! Every 100 ms it reads a [`Snapshot`] (ZooKeeper plus process states) and prints the
//! differences. Changes are of two kinds: *causes* (a broker process dies, pauses or starts, a
//! broker's ephemeral znode appears or goes, `/controller` disappears) and *effects* (a
//! controller is elected, the epoch moves, leaders and ISRs change). Each effect line shows the
//! time elapsed since the most recent cause, so a failover's timing can be read directly: e.g.
//! the ZooKeeper session timeout between a SIGKILL and the broker leaving `/brokers/ids`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::tool::snapshot::{self, ids, Snapshot};
use crate::tool::state::{ClusterState, ProcState};

/// How often ZooKeeper is read: fast enough to order events, cheap for a local ensemble.
const TICK: Duration = Duration::from_millis(100);

/// One printed change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub cause: bool,
    pub text: String,
}

fn cause(text: String) -> Change {
    Change { cause: true, text }
}
fn effect(text: String) -> Change {
    Change { cause: false, text }
}

/// The changes from `old` to `new`, causes first.
pub fn diff(old: &Snapshot, new: &Snapshot) -> Vec<Change> {
    let mut out = Vec::new();
    for (id, st) in &new.processes {
        let before = old.processes.get(id).copied();
        if before == Some(*st) {
            continue;
        }
        let text = match (before, st) {
            (_, ProcState::Dead) => format!("broker {id}: process exited"),
            (_, ProcState::Paused) => format!("broker {id}: process paused (SIGSTOP)"),
            (Some(ProcState::Paused), ProcState::Alive) => {
                format!("broker {id}: process resumed (SIGCONT)")
            }
            (_, ProcState::Alive) => format!("broker {id}: process started"),
        };
        out.push(cause(text));
    }
    for id in old.registered.difference(&new.registered) {
        out.push(cause(format!(
            "broker {id} left /brokers/ids (its ZooKeeper session ended)"
        )));
    }
    for id in new.registered.difference(&old.registered) {
        out.push(cause(format!("broker {id} joined /brokers/ids")));
    }
    if old.controller.is_some() && new.controller.is_none() {
        out.push(cause(format!(
            "/controller deleted: broker {} is no longer controller",
            old.controller.unwrap_or(-1)
        )));
    }
    if let Some(c) = new.controller {
        if old.controller != Some(c) {
            out.push(effect(format!(
                "controller: broker {c} elected (controller epoch {})",
                new.epoch.map_or("-".into(), |e| e.to_string())
            )));
        } else if old.epoch != new.epoch {
            out.push(effect(format!(
                "controller epoch {} -> {}",
                old.epoch.unwrap_or(-1),
                new.epoch.unwrap_or(-1)
            )));
        }
    }
    for (topic, parts) in &new.topics {
        let Some(old_parts) = old.topics.get(topic) else {
            out.push(effect(format!(
                "topic {topic} created with {} partitions",
                parts.len()
            )));
            continue;
        };
        for p in parts {
            let Some(o) = old_parts.iter().find(|o| o.partition == p.partition) else {
                out.push(effect(format!(
                    "{topic}-{}: new partition, replicas {} leader {}",
                    p.partition,
                    ids(&p.replicas),
                    p.leader
                )));
                continue;
            };
            let name = format!("{topic}-{}", p.partition);
            if o.leader != p.leader {
                let why = if p.leader < 0 {
                    " (OFFLINE: no live replica in the ISR)".to_string()
                } else if p.leader == p.preferred() {
                    " (the preferred replica)".to_string()
                } else {
                    String::new()
                };
                out.push(effect(format!(
                    "{name}: leader {} -> {} (leader_epoch {}, isr {}){why}",
                    o.leader,
                    p.leader,
                    p.leader_epoch,
                    ids(&p.isr)
                )));
            } else if o.isr != p.isr {
                let verb = if p.isr.len() < o.isr.len() {
                    "shrinks"
                } else {
                    "expands"
                };
                out.push(effect(format!(
                    "{name}: ISR {verb} {} -> {} (leader {})",
                    ids(&o.isr),
                    ids(&p.isr),
                    p.leader
                )));
            }
            if o.replicas != p.replicas {
                out.push(effect(format!(
                    "{name}: replicas {} -> {}",
                    ids(&o.replicas),
                    ids(&p.replicas)
                )));
            }
        }
    }
    for topic in old.topics.keys() {
        if !new.topics.contains_key(topic) {
            out.push(effect(format!("topic {topic} deleted")));
        }
    }
    out.sort_by_key(|c| !c.cause);
    out
}

pub fn run(dir: &Path, duration: Option<Duration>) -> anyhow::Result<()> {
    let state = ClusterState::load(dir)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let zk = snapshot::connect(&state).await?;
        let start = Instant::now();
        let mut state = state;
        let mut prev = snapshot::read(&zk, &state).await?;
        println!(
            "[{:>9.3}s] watching {} (controller {}, epoch {}, brokers registered {:?}); Ctrl-C to stop",
            0.0,
            state.zookeeper_connect,
            prev.controller.map_or("none".into(), |c| c.to_string()),
            prev.epoch.map_or("-".into(), |e| e.to_string()),
            prev.registered
        );
        let mut last_cause: Option<(Instant, String)> = None;
        let mut zk_down = false;
        loop {
            if duration.is_some_and(|d| start.elapsed() >= d) {
                break;
            }
            tokio::time::sleep(TICK).await;
            match ClusterState::load(dir) {
                Ok(s) => state = s,
                Err(_) => {
                    println!(
                        "[{:>9.3}s] the cluster stopped (no state file)",
                        start.elapsed().as_secs_f64()
                    );
                    break;
                }
            }
            let next = match tokio::time::timeout(Duration::from_secs(5), snapshot::read(&zk, &state)).await {
                Ok(Ok(s)) => {
                    if zk_down {
                        println!("[{:>9.3}s] ZooKeeper answers again", start.elapsed().as_secs_f64());
                        zk_down = false;
                    }
                    s
                }
                _ => {
                    if !zk_down {
                        println!("[{:>9.3}s] ZooKeeper does not answer", start.elapsed().as_secs_f64());
                        zk_down = true;
                    }
                    continue;
                }
            };
            let now = Instant::now();
            for ch in diff(&prev, &next) {
                let t = start.elapsed().as_secs_f64();
                if ch.cause {
                    // A cause may itself follow an earlier one (a SIGKILL, then the session
                    // expiry that removes /brokers/ids/<id>): show that gap too.
                    match &last_cause {
                        Some((at, what)) if now.duration_since(*at) < Duration::from_secs(120) => {
                            println!(
                                "[{t:>9.3}s] {}   (+{:.3}s after: {what})",
                                ch.text,
                                now.duration_since(*at).as_secs_f64()
                            )
                        }
                        _ => println!("[{t:>9.3}s] {}", ch.text),
                    }
                    last_cause = Some((now, ch.text));
                } else {
                    match &last_cause {
                        Some((at, what)) => println!(
                            "[{t:>9.3}s]   {}   (+{:.3}s after: {what})",
                            ch.text,
                            now.duration_since(*at).as_secs_f64()
                        ),
                        None => println!("[{t:>9.3}s]   {}", ch.text),
                    }
                }
            }
            prev = next;
        }
        zk.close().await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tool::snapshot::PartitionView;

    fn snap(controller: i32, epoch: i32, leader: i32, isr: Vec<i32>) -> Snapshot {
        let mut s = Snapshot {
            controller: Some(controller),
            epoch: Some(epoch),
            ..Default::default()
        };
        s.registered = [1, 2, 3].into_iter().collect();
        s.topics.insert(
            "t".into(),
            vec![PartitionView {
                partition: 0,
                replicas: vec![1, 2, 3],
                leader,
                leader_epoch: 0,
                isr,
            }],
        );
        s
    }

    #[test]
    fn failover_is_reported_as_causes_then_effects() {
        let old = snap(1, 1, 1, vec![1, 2, 3]);
        let mut new = snap(2, 2, 2, vec![2, 3]);
        new.registered.remove(&1);
        let ch = diff(&old, &new);
        assert!(ch[0].cause && ch[0].text.contains("broker 1 left"));
        assert!(ch
            .iter()
            .any(|c| !c.cause && c.text.contains("broker 2 elected (controller epoch 2)")));
        assert!(ch.iter().any(|c| c.text.contains("t-0: leader 1 -> 2")));
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn isr_change_without_leader_change() {
        let ch = diff(&snap(1, 1, 1, vec![1, 2, 3]), &snap(1, 1, 1, vec![1, 3]));
        assert_eq!(ch.len(), 1);
        assert!(ch[0].text.contains("ISR shrinks [1,2,3] -> [1,3]"));
    }
}
