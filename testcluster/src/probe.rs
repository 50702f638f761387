//! Small probes tests share: a broker's metrics endpoint (where it listens, one GET, one
//! metric's value) and a kcat producer writing lines to one partition.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

/// The `host:port` a broker's log says its metrics endpoint listens on.
pub fn metrics_address(log: &str) -> Option<String> {
    let line = log
        .lines()
        .find(|l| l.contains("serving metrics on http://"))?;
    let start = line.find("http://")? + "http://".len();
    line[start..].split('/').next().map(str::to_string)
}

/// `GET path` over HTTP/1.1 with `Connection: close`; the whole answer, head included.
pub fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The value of the first sample of Prometheus metric `name` on `page`.
pub fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Produces `lines` (one record each) to `topic`'s `partition` with kcat at `acks`; fails if
/// kcat does not deliver them within its 20 s message timeout.
pub fn kcat_produce(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    acks: &str,
    lines: &str,
) -> anyhow::Result<()> {
    let mut child = crate::command("kcat")
        .args(["-b", bootstrap, "-P", "-t", topic, "-p"])
        .arg(partition.to_string())
        .arg("-X")
        .arg(format!("acks={acks}"))
        .args(["-X", "message.timeout.ms=20000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("kcat has no stdin"))?
        .write_all(lines.as_bytes())?;
    let st = child.wait()?;
    anyhow::ensure!(st.success(), "kcat produce failed: {st}");
    Ok(())
}
