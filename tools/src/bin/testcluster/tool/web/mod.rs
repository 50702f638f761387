//! The live web view `testcluster up` serves on 127.0.0.1: one HTML page (no build step,
//! embedded in the binary), a server-sent-events stream of snapshots and timeline lines, and
//! POST /action for the buttons (the same requests as the control socket).
//!
//! Each SSE connection reads ZooKeeper every 300 ms on its own thread and sends a snapshot only
//! when it changed, so an idle page costs one small read loop, not a polling storm from the
//! browser. Simplified: a hand-written HTTP/1.1 server (one request per connection).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::tool::control::Request;
use crate::tool::snapshot::{self, Snapshot};
use crate::tool::state::ClusterState;
use crate::tool::watch;

const PAGE: &str = include_str!("page.html");

/// Something the web view asks the owning `up` thread to do.
pub type ActionSender = mpsc::Sender<(Request, mpsc::Sender<Result<String, String>>)>;

/// Binds 127.0.0.1 on a free port and serves in the background; returns the URL.
pub fn serve(dir: PathBuf, actions: ActionSender) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/", listener.local_addr()?);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let dir = dir.clone();
            let actions = actions.clone();
            std::thread::spawn(move || {
                let _ = handle(conn, &dir, &actions);
            });
        }
    });
    Ok(url)
}

fn respond(mut s: TcpStream, status: &str, ctype: &str, body: &str) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn handle(s: TcpStream, dir: &std::path::Path, actions: &ActionSender) -> anyhow::Result<()> {
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0).min(1024);
            }
        }
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match (method, path) {
        ("GET", "/") => respond(s, "200 OK", "text/html; charset=utf-8", PAGE)?,
        ("GET", "/events") => events(s, dir)?,
        ("POST", "/action") => {
            let mut body = vec![0u8; len];
            r.read_exact(&mut body)?;
            let text = String::from_utf8_lossy(&body).trim().to_string();
            let answer = if text.starts_with("elect") {
                crate::tool::topics::elect(dir, false, None, None)
                    .map(|_| "preferred leader election requested for every partition".into())
                    .map_err(|e| e.to_string())
            } else {
                match Request::decode(&text) {
                    Ok(req) => {
                        let (tx, rx) = mpsc::channel();
                        actions
                            .send((req, tx))
                            .map_err(|_| "testcluster up is stopping".to_string())
                            .and_then(|_| rx.recv().map_err(|_| "no answer".to_string()))
                            .and_then(|r| r)
                    }
                    Err(e) => Err(e),
                }
            };
            match answer {
                Ok(m) => respond(s, "200 OK", "text/plain", &m)?,
                Err(e) => respond(s, "400 Bad Request", "text/plain", &e)?,
            }
        }
        _ => respond(s, "404 Not Found", "text/plain", "not found")?,
    }
    Ok(())
}

fn to_json(snap: &Snapshot, state: &ClusterState, znodes: &[(String, String)]) -> String {
    let topics: serde_json::Map<String, serde_json::Value> = snap
        .topics
        .iter()
        .map(|(t, parts)| {
            let ps: Vec<_> = parts
                .iter()
                .map(|p| {
                    serde_json::json!({"partition": p.partition, "replicas": p.replicas,
                        "leader": p.leader, "leader_epoch": p.leader_epoch, "isr": p.isr,
                        "preferred": p.preferred(), "offline": p.offline(&snap.registered),
                        "under_replicated": p.under_replicated()})
                })
                .collect();
            (t.clone(), serde_json::Value::Array(ps))
        })
        .collect();
    let brokers: Vec<_> = state
        .brokers
        .iter()
        .map(|b| {
            serde_json::json!({"id": b.id, "address": b.address, "pid": b.pid,
                "process": snap.processes.get(&b.id).map_or("dead", |p| p.as_str()),
                "registered": snap.registered.contains(&b.id)})
        })
        .collect();
    serde_json::json!({"controller": snap.controller, "epoch": snap.epoch, "brokers": brokers,
        "topics": topics, "zookeeper_connect": state.zookeeper_connect,
        "znodes": znodes.iter().map(|(p, d)| serde_json::json!({"path": p, "data": d})).collect::<Vec<_>>()})
    .to_string()
}

/// The znodes Kafka wrote that the page shows, with their data as text.
async fn znodes(zk: &zk::client::KafkaZkClient, snap: &Snapshot) -> Vec<(String, String)> {
    let mut paths = vec!["/controller".to_string(), "/controller_epoch".to_string()];
    paths.extend(
        snap.registered
            .iter()
            .map(|id| format!("/brokers/ids/{id}")),
    );
    for (t, parts) in &snap.topics {
        paths.push(format!("/brokers/topics/{t}"));
        for p in parts {
            paths.push(format!(
                "/brokers/topics/{t}/partitions/{}/state",
                p.partition
            ));
        }
    }
    let mut out = Vec::new();
    for p in paths {
        if let Ok(Some((d, _))) = zk.get_data_maybe(&p).await {
            out.push((p, String::from_utf8_lossy(&d).into_owned()));
        }
    }
    out
}

fn events(mut s: TcpStream, dir: &std::path::Path) -> anyhow::Result<()> {
    s.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut state = ClusterState::load(dir)?;
    let zk = rt.block_on(snapshot::connect(&state))?;
    let start = Instant::now();
    let mut prev: Option<Snapshot> = None;
    let mut last_json = String::new();
    let mut last_cause: Option<(Instant, String)> = None;
    let mut idle = 0u32;
    loop {
        if let Ok(st) = ClusterState::load(dir) {
            state = st;
        }
        let read = rt.block_on(async {
            let snap = tokio::time::timeout(Duration::from_secs(5), snapshot::read(&zk, &state))
                .await
                .ok()?
                .ok()?;
            let z = znodes(&zk, &snap).await;
            Some((snap, z))
        });
        if let Some((snap, z)) = read {
            if let Some(p) = &prev {
                let now = Instant::now();
                for ch in watch::diff(p, &snap) {
                    let since = last_cause
                        .as_ref()
                        .map(|(at, what)| {
                            format!(
                                " (+{:.3}s after: {what})",
                                now.duration_since(*at).as_secs_f64()
                            )
                        })
                        .unwrap_or_default();
                    let line =
                        format!("[{:.3}s] {}{since}", start.elapsed().as_secs_f64(), ch.text);
                    if ch.cause {
                        last_cause = Some((now, ch.text.clone()));
                    }
                    write!(
                        s,
                        "event: timeline\ndata: {}\n\n",
                        serde_json::Value::String(line)
                    )?;
                }
            }
            let json = to_json(&snap, &state, &z);
            if json != last_json {
                write!(s, "event: snapshot\ndata: {json}\n\n")?;
                last_json = json;
                idle = 0;
            } else {
                // A comment line every ~10 s notices a closed page (the write fails).
                idle += 1;
                if idle.is_multiple_of(33) {
                    s.write_all(b": keep-alive\n\n")?;
                }
            }
            prev = Some(snap);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
