//! The control socket: how `kill`, `start`, `zk-kill` and `zk-start` ask `testcluster up` to act.
//!
//! `up` started every ZooKeeper and broker process, so it alone can reap them and start them
//! again with the same config; the other commands send it one request line on the Unix socket
//! `<dir>/control.sock` and print the one-line answer (`ok ...` or `error ...`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::tool::state::ClusterState;
use testcluster::Signal;

/// One request to `up`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Signal a broker (`None` = whichever broker is the controller now).
    Kill {
        broker: Option<i32>,
        signal: Signal,
    },
    Start {
        broker: i32,
    },
    ZkKill {
        id: u32,
    },
    ZkStart {
        id: u32,
    },
}

pub fn signal_name(s: Signal) -> &'static str {
    match s {
        Signal::Term => "TERM",
        Signal::Kill => "KILL",
        Signal::Stop => "STOP",
        Signal::Cont => "CONT",
    }
}

impl Request {
    pub fn encode(&self) -> String {
        match self {
            Request::Kill { broker, signal } => format!(
                "kill {} {}",
                broker.map_or("controller".to_string(), |b| b.to_string()),
                signal_name(*signal)
            ),
            Request::Start { broker } => format!("start {broker}"),
            Request::ZkKill { id } => format!("zk-kill {id}"),
            Request::ZkStart { id } => format!("zk-start {id}"),
        }
    }

    pub fn decode(line: &str) -> Result<Request, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let num = |w: Option<&&str>| -> Result<i64, String> {
            w.ok_or("missing id")?
                .parse::<i64>()
                .map_err(|_| format!("bad id in {line:?}"))
        };
        match words.first().copied() {
            Some("kill") => {
                let broker = match words.get(1).copied() {
                    Some("controller") => None,
                    _ => Some(num(words.get(1))? as i32),
                };
                let signal = Signal::parse(words.get(2).copied().unwrap_or("KILL"))
                    .ok_or_else(|| format!("bad signal in {line:?}"))?;
                Ok(Request::Kill { broker, signal })
            }
            Some("start") => Ok(Request::Start {
                broker: num(words.get(1))? as i32,
            }),
            Some("zk-kill") => Ok(Request::ZkKill {
                id: num(words.get(1))? as u32,
            }),
            Some("zk-start") => Ok(Request::ZkStart {
                id: num(words.get(1))? as u32,
            }),
            _ => Err(format!("unknown request {line:?}")),
        }
    }
}

/// Sends `req` to the `up` running in `dir`; returns its answer text, or an error with it.
pub fn send(dir: &Path, req: &Request) -> anyhow::Result<String> {
    let state = ClusterState::load(dir)?;
    let mut s = UnixStream::connect(&state.control_socket).map_err(|e| {
        anyhow::anyhow!(
            "cannot reach `testcluster up` at {}: {e}",
            state.control_socket.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    writeln!(s, "{}", req.encode())?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    let line = line.trim_end();
    if let Some(ok) = line.strip_prefix("ok ") {
        Ok(ok.to_string())
    } else if let Some(err) = line.strip_prefix("error ") {
        anyhow::bail!("{err}")
    } else {
        anyhow::bail!("unexpected answer from `testcluster up`: {line:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for r in [
            Request::Kill {
                broker: None,
                signal: Signal::Kill,
            },
            Request::Kill {
                broker: Some(2),
                signal: Signal::Stop,
            },
            Request::Start { broker: 3 },
            Request::ZkKill { id: 1 },
            Request::ZkStart { id: 2 },
        ] {
            assert_eq!(Request::decode(&r.encode()), Ok(r));
        }
        assert!(Request::decode("kill x").is_err());
        assert!(Request::decode("reboot").is_err());
    }
}
