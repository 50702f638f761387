//! `testcluster status`: the cluster as ZooKeeper and the brokers see it, right now.

use std::collections::BTreeMap;
use std::path::Path;

use testcluster::kafka::Client;

use crate::tool::snapshot::{self, ids, Snapshot};
use crate::tool::state::{proc_state, ClusterState, ProcState};

/// What one broker's Metadata answer says: its controller and the leader of each partition.
struct BrokerView {
    controller: i32,
    leaders: BTreeMap<(String, i32), i32>,
}

fn broker_view(address: &str) -> anyhow::Result<BrokerView> {
    let md = Client::connect(address)?.metadata(None)?;
    let mut leaders = BTreeMap::new();
    for t in &md.topics {
        let Some(name) = &t.name else { continue };
        for p in &t.partitions {
            leaders.insert((name.0.to_string(), p.partition_index), p.leader_id.0);
        }
    }
    Ok(BrokerView {
        controller: md.controller_id.0,
        leaders,
    })
}

pub fn run(dir: &Path) -> anyhow::Result<()> {
    let state = ClusterState::load(dir)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let snap: Snapshot = rt.block_on(async {
        let zk = snapshot::connect(&state).await?;
        let s = snapshot::read(&zk, &state).await;
        zk.close().await;
        s
    })?;
    print!("{}", render(&state, &snap));
    Ok(())
}

fn render(state: &ClusterState, snap: &Snapshot) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "ZooKeeper: {}", state.zookeeper_connect);
    for z in &state.zookeeper {
        let _ = writeln!(
            o,
            "  zookeeper {} at 127.0.0.1:{}  {}{}",
            z.id,
            z.port,
            proc_state(z.pid).as_str(),
            z.pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        );
    }
    match (snap.controller, snap.epoch) {
        (Some(c), Some(e)) => {
            let _ = writeln!(o, "Controller: broker {c} (controller epoch {e})");
        }
        (None, e) => {
            let _ = writeln!(
                o,
                "Controller: none registered (/controller is absent; last epoch {})",
                e.map_or("-".into(), |e| e.to_string())
            );
        }
        (Some(c), None) => {
            let _ = writeln!(o, "Controller: broker {c} (no /controller_epoch)");
        }
    }
    let _ = writeln!(o, "Brokers (bootstrap {}):", state.bootstrap_servers);
    let mut views = BTreeMap::new();
    for b in &state.brokers {
        let ps = proc_state(b.pid);
        let registered = snap.registered.contains(&b.id);
        let view = if ps == ProcState::Alive {
            broker_view(&b.address).ok()
        } else {
            None
        };
        let mut line = format!(
            "  broker {} at {}  {}{}  {}",
            b.id,
            b.address,
            ps.as_str(),
            b.pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
            if registered {
                "registered in /brokers/ids"
            } else {
                "not in /brokers/ids"
            }
        );
        if snap.controller == Some(b.id) {
            line.push_str("  [controller]");
        }
        match &view {
            Some(v) => line.push_str(&format!("; its metadata names controller {}", v.controller)),
            None if ps == ProcState::Alive => line.push_str("; Metadata request failed"),
            None => {}
        }
        let _ = writeln!(o, "{line}");
        if let Some(v) = view {
            views.insert(b.id, v);
        }
    }
    if snap.topics.is_empty() {
        let _ = writeln!(o, "Topics: none");
    }
    let (mut offline, mut under) = (0, 0);
    for (topic, parts) in &snap.topics {
        let _ = writeln!(o, "Topic {topic} ({} partitions):", parts.len());
        for p in parts {
            let mut flags = Vec::new();
            if p.offline(&snap.registered) {
                flags.push("OFFLINE".to_string());
                offline += 1;
            }
            if p.under_replicated() {
                flags.push("UNDER-REPLICATED".to_string());
                under += 1;
            }
            if p.leader >= 0 && p.leader != p.preferred() {
                flags.push("not on preferred leader".to_string());
            }
            let disagree: Vec<String> = views
                .iter()
                .filter_map(|(id, v)| {
                    let l = v.leaders.get(&(topic.clone(), p.partition))?;
                    (*l != p.leader).then(|| format!("broker {id} says leader {l}"))
                })
                .collect();
            if !disagree.is_empty() {
                flags.push(format!("metadata lags: {}", disagree.join(", ")));
            }
            let _ = writeln!(
                o,
                "  partition {}  replicas {}  leader {}  leader_epoch {}  isr {}  preferred {}{}",
                p.partition,
                ids(&p.replicas),
                p.leader,
                p.leader_epoch,
                ids(&p.isr),
                p.preferred(),
                if flags.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", flags.join("; "))
                }
            );
        }
    }
    let _ = writeln!(
        o,
        "Offline partitions: {offline}; under-replicated partitions: {under}"
    );
    o
}
