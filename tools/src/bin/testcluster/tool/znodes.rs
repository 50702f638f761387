//! `testcluster zk [PATH]`: the znodes Kafka keeps under the cluster's chroot, as a tree, each
//! with its data decoded (JSON pretty-printed), like zkCli.sh's `get` on every node at once.
//!
//! Ephemeral znodes (`/controller`, `/brokers/ids/<id>`) are marked: they live as long as
//! their owner's ZooKeeper session, which is how the classic architecture notices a dead
//! broker or controller.

use std::path::Path;

use zk::client::KafkaZkClient;

use crate::tool::snapshot;
use crate::tool::state::ClusterState;

/// One znode: its path, data and whether it is ephemeral.
pub struct Znode {
    pub path: String,
    pub data: Vec<u8>,
    pub ephemeral: bool,
}

/// Children in a readable order: numbers numerically (partitions 2 before 10), then names.
fn sort_children(children: &mut [String]) {
    children.sort_by(|a, b| match (a.parse::<i64>(), b.parse::<i64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        _ => a.cmp(b),
    });
}

fn child_path(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// `path` and every znode below it, depth first, children in order.
pub async fn walk(zk: &KafkaZkClient, path: &str) -> anyhow::Result<Vec<Znode>> {
    let mut out = Vec::new();
    let mut stack = vec![path.to_string()];
    while let Some(p) = stack.pop() {
        // A znode can vanish between listing and reading (a topic being deleted): skip it.
        let Some((data, stat)) = zk.get_data_maybe(&p).await? else {
            if p == path {
                anyhow::bail!("Node does not exist: {path}");
            }
            continue;
        };
        let mut children = zk.get_children_maybe(&p).await?;
        sort_children(&mut children);
        for c in children.iter().rev() {
            stack.push(child_path(&p, c));
        }
        out.push(Znode {
            path: p,
            data,
            ephemeral: stat.ephemeral_owner != 0,
        });
    }
    Ok(out)
}

/// A znode's data for a reader: pretty JSON, else the text, else a byte count.
pub fn decode(data: &[u8]) -> Option<String> {
    if data.is_empty() {
        return None;
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if v.is_object() || v.is_array() {
            let mut out = String::new();
            pretty(&v, 0, &mut out);
            return Some(out);
        }
    }
    match std::str::from_utf8(data) {
        Ok(s) => Some(s.to_string()),
        Err(_) => Some(format!("({} bytes, not text)", data.len())),
    }
}

/// Pretty JSON with objects one key per line and arrays of plain values on one line
/// (`"isr": [1, 3, 2]`), which is how a reader scans replica lists.
fn pretty(v: &serde_json::Value, indent: usize, out: &mut String) {
    use serde_json::Value;
    let pad = |n: usize| "  ".repeat(n);
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push_str("{\n");
            for (i, (k, x)) in m.iter().enumerate() {
                out.push_str(&pad(indent + 1));
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                pretty(x, indent + 1, out);
                out.push_str(if i + 1 < m.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(indent));
            out.push('}');
        }
        Value::Array(a) if a.iter().any(|x| x.is_object() || x.is_array()) => {
            out.push_str("[\n");
            for (i, x) in a.iter().enumerate() {
                out.push_str(&pad(indent + 1));
                pretty(x, indent + 1, out);
                out.push_str(if i + 1 < a.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(indent));
            out.push(']');
        }
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(Value::to_string).collect();
            out.push_str(&format!("[{}]", items.join(", ")));
        }
        other => out.push_str(&other.to_string()),
    }
}

pub fn render(chroot: &str, nodes: &[Znode]) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    for n in nodes {
        let _ = writeln!(
            o,
            "{}{}",
            n.path,
            if n.ephemeral { "  (ephemeral)" } else { "" }
        );
        if let Some(text) = decode(&n.data) {
            for line in text.lines() {
                let _ = writeln!(o, "    {line}");
            }
        }
    }
    let _ = writeln!(
        o,
        "({} znodes under the chroot {})",
        nodes.len(),
        if chroot.is_empty() { "/" } else { chroot }
    );
    o
}

pub fn run(dir: &Path, path: &str) -> anyhow::Result<()> {
    if !path.starts_with('/') || (path.len() > 1 && path.ends_with('/')) {
        anyhow::bail!("Path must start with / and not end with / ({path:?})");
    }
    let state = ClusterState::load(dir)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let nodes = rt.block_on(async {
        let zk = snapshot::connect(&state).await?;
        let r = walk(&zk, path).await;
        zk.close().await;
        r
    })?;
    print!("{}", render(&state.chroot, &nodes));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_sort_numbers_numerically() {
        let mut c: Vec<String> = ["10", "2", "topics", "1", "ids"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        sort_children(&mut c);
        assert_eq!(c, ["1", "2", "10", "ids", "topics"]);
    }

    #[test]
    fn data_is_decoded_for_reading() {
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"7").as_deref(), Some("7"));
        assert_eq!(
            decode(br#"{"brokerid":1}"#).as_deref(),
            Some("{\n  \"brokerid\": 1\n}")
        );
        assert_eq!(
            decode(&[0xff, 0xfe]).as_deref(),
            Some("(2 bytes, not text)")
        );
    }

    #[test]
    fn render_marks_ephemeral_nodes() {
        let nodes = vec![
            Znode {
                path: "/controller".into(),
                data: br#"{"brokerid":2}"#.to_vec(),
                ephemeral: true,
            },
            Znode {
                path: "/controller_epoch".into(),
                data: b"3".to_vec(),
                ephemeral: false,
            },
        ];
        assert_eq!(
            render("/kafka", &nodes),
            "/controller  (ephemeral)\n    {\n      \"brokerid\": 2\n    }\n/controller_epoch\n    3\n(2 znodes under the chroot /kafka)\n"
        );
    }
}
