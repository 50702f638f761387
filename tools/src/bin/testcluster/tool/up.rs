//! `testcluster up`: starts the cluster and owns its processes until Ctrl-C.
//!
//! One thread (the caller's) owns the [`Cluster`] and handles, one at a time, the stop signal
//! and the requests arriving on the control socket, so no lock is needed (the controller's
//! single event queue, in miniature). Every 500 ms it reaps exited children and rewrites
//! `cluster.json` when a pid changed.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use testcluster::{Cluster, ClusterOptions, Signal};

use crate::tool::control::{signal_name, Request};
use crate::tool::state::{BrokerState, ClusterState, ZkServerState, CONTROL_SOCKET, STATE_FILE};

/// What the owning thread reacts to.
enum UpEvent {
    Stop,
    Control(Request, mpsc::Sender<Result<String, String>>),
}

pub struct UpArgs {
    pub brokers: i32,
    pub zk: u32,
    pub dir: PathBuf,
    pub config: Vec<String>,
}

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let UpArgs {
        brokers,
        zk,
        dir,
        config,
    } = args;
    let mut opts = ClusterOptions::default().brokers(brokers);
    opts.zk_nodes = zk;
    opts.dir = Some(dir.clone());
    opts.chroot = Some("/kafka".into());
    for kv in &config {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--config {kv:?}: expected key=value"))?;
        opts.broker_config.insert(k.trim().into(), v.trim().into());
    }
    std::fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;
    if let Ok(s) = ClusterState::load(&dir) {
        anyhow::bail!(
            "a cluster already runs in {} (testcluster up pid {}); stop it first or use another --dir",
            dir.display(),
            s.up_pid
        );
    }
    println!(
        "[testcluster] starting ZooKeeper ({zk} server{}) and {brokers} brokers in {}",
        if zk == 1 { "" } else { "s" },
        dir.display()
    );
    let (tx, rx) = mpsc::channel::<UpEvent>();
    stop_on_signal(tx.clone())?;
    let mut c = Cluster::start(opts)?;
    let socket = dir.join(CONTROL_SOCKET);
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", socket.display()))?;
    serve_control(listener, tx.clone());
    // The web view's buttons go through the same owning thread as the control socket.
    let (web_tx, web_rx) = mpsc::channel::<(Request, mpsc::Sender<Result<String, String>>)>();
    std::thread::spawn(move || {
        for (req, reply) in web_rx {
            if tx.send(UpEvent::Control(req, reply)).is_err() {
                break;
            }
        }
    });
    let web_url = match crate::tool::web::serve(dir.clone(), web_tx) {
        Ok(u) => Some(u),
        Err(e) => {
            eprintln!("[testcluster] no web view: {e}");
            None
        }
    };
    let mut last = write_state(&mut c, &dir, &socket, &web_url)?;

    let (controller, epoch) = c.controller().unwrap_or((-1, -1));
    println!("[testcluster] ZooKeeper connect: {}", c.zookeeper_connect());
    for s in &c.zk.servers {
        println!(
            "[testcluster]   zookeeper {} at 127.0.0.1:{} (pid {}, config {})",
            s.id,
            s.client_port,
            s.pid().unwrap_or(0),
            s.config_path().display()
        );
    }
    println!("[testcluster] bootstrap servers: {}", c.bootstrap());
    for b in &c.brokers {
        println!(
            "[testcluster]   broker {} at {} (pid {}, log {})",
            b.id,
            b.address(),
            b.pid().unwrap_or(0),
            b.log_file.display()
        );
    }
    println!("[testcluster] controller: broker {controller} (epoch {epoch})");
    println!(
        "[testcluster] state file: {}",
        dir.join(STATE_FILE).display()
    );
    let d = dir.display();
    if let Some(u) = &web_url {
        println!("[testcluster] web view: {u}");
    }
    println!("[testcluster] try: testcluster status --dir {d}");
    println!("[testcluster]      testcluster watch --dir {d}   (in another terminal)");
    println!("[testcluster]      testcluster kill controller --dir {d}");
    println!("[testcluster]      kcat -b {} -L", c.bootstrap());
    println!("[testcluster] running; Ctrl-C stops everything");

    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(UpEvent::Stop) => break,
            Ok(UpEvent::Control(req, reply)) => {
                let answer = handle(&mut c, &req);
                match &answer {
                    Ok(m) => println!("[testcluster] {}: {m}", req.encode()),
                    Err(e) => println!("[testcluster] {}: error: {e}", req.encode()),
                }
                let _ = reply.send(answer);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        match write_state_if_changed(&mut c, &dir, &socket, &web_url, &last) {
            Ok(Some(new)) => last = new,
            Ok(None) => {}
            Err(e) => eprintln!("[testcluster] cannot write the state file: {e}"),
        }
    }

    println!("[testcluster] stopping brokers (controlled shutdown)");
    let _ = std::fs::remove_file(&socket);
    for b in &mut c.brokers {
        if b.is_running() {
            // A paused broker would sit on SIGTERM: resume it first.
            b.signal(Signal::Cont);
            b.signal(Signal::Term);
        }
    }
    for b in &mut c.brokers {
        if !b.is_running() {
            continue;
        }
        match b.wait_exit(Duration::from_secs(60)) {
            Ok(code) => println!("[testcluster]   broker {} exited ({code:?})", b.id),
            Err(e) => {
                println!("[testcluster]   broker {}: {e}; killing it", b.id);
                b.kill();
            }
        }
    }
    println!("[testcluster] stopping ZooKeeper");
    drop(c);
    let _ = std::fs::remove_file(dir.join(STATE_FILE));
    println!("[testcluster] stopped");
    Ok(())
}

/// Performs one control request on the owned processes.
fn handle(c: &mut Cluster, req: &Request) -> Result<String, String> {
    match *req {
        Request::Kill { broker, signal } => {
            let id = match broker {
                Some(id) => id,
                None => {
                    c.controller()
                        .ok_or("no controller registered in ZooKeeper right now")?
                        .0
                }
            };
            let b = c
                .brokers
                .iter_mut()
                .find(|b| b.id == id)
                .ok_or_else(|| format!("no broker {id} in this cluster"))?;
            if !b.is_running() {
                return Err(format!("broker {id} is not running"));
            }
            let pid = b.pid().unwrap_or(0);
            b.signal(signal);
            if signal == Signal::Kill {
                // Reap it now so `status` sees it dead at once.
                let _ = b.wait_exit(Duration::from_secs(10));
            }
            let what = match signal {
                Signal::Kill => "killed (crash, no controlled shutdown)",
                Signal::Term => "asked to stop (controlled shutdown)",
                Signal::Stop => "paused",
                Signal::Cont => "resumed",
            };
            Ok(format!(
                "broker {id} (pid {pid}) {what} with SIG{}",
                signal_name(signal)
            ))
        }
        Request::Start { broker } => {
            let b = c
                .brokers
                .iter_mut()
                .find(|b| b.id == broker)
                .ok_or_else(|| format!("no broker {broker} in this cluster"))?;
            if b.is_running() {
                return Err(format!(
                    "broker {broker} is already running (if paused: testcluster kill {broker} --signal CONT)"
                ));
            }
            b.restart().map_err(|e| e.to_string())?;
            Ok(format!(
                "broker {broker} started (pid {}, config {})",
                b.pid().unwrap_or(0),
                b.config.display()
            ))
        }
        Request::ZkKill { id } => {
            let s =
                c.zk.server(id)
                    .ok_or_else(|| format!("no ZooKeeper server {id}"))?;
            if !s.is_running() {
                return Err(format!("ZooKeeper server {id} is not running"));
            }
            let pid = s.pid().unwrap_or(0);
            s.kill();
            Ok(format!("ZooKeeper server {id} (pid {pid}) killed"))
        }
        Request::ZkStart { id } => {
            let s =
                c.zk.server(id)
                    .ok_or_else(|| format!("no ZooKeeper server {id}"))?;
            if s.is_running() {
                return Err(format!("ZooKeeper server {id} is already running"));
            }
            s.kill(); // reaps a server that exited by itself
            s.start().map_err(|e| e.to_string())?;
            Ok(format!(
                "ZooKeeper server {id} started (pid {})",
                s.pid().unwrap_or(0)
            ))
        }
    }
}

fn snapshot_state(c: &mut Cluster, socket: &Path, web_url: &Option<String>) -> ClusterState {
    let zookeeper =
        c.zk.servers
            .iter_mut()
            .map(|s| ZkServerState {
                id: s.id,
                port: s.client_port,
                pid: if s.is_running() { s.pid() } else { None },
                config: s.config_path().to_path_buf(),
                dir: s.dir.clone(),
            })
            .collect();
    let brokers = c
        .brokers
        .iter_mut()
        .map(|b| BrokerState {
            id: b.id,
            port: b.port,
            address: b.address(),
            pid: if b.is_running() { b.pid() } else { None },
            config: b.config.clone(),
            log: b.log_file.clone(),
        })
        .collect();
    ClusterState {
        up_pid: std::process::id(),
        zookeeper_connect: c.zookeeper_connect(),
        chroot: c.chroot.clone(),
        bootstrap_servers: c.bootstrap(),
        web_url: web_url.clone(),
        control_socket: socket.to_path_buf(),
        zookeeper,
        brokers,
    }
}

fn write_state(
    c: &mut Cluster,
    dir: &Path,
    socket: &Path,
    web_url: &Option<String>,
) -> anyhow::Result<String> {
    let s = snapshot_state(c, socket, web_url);
    s.save(dir)?;
    Ok(serde_json::to_string(&s)?)
}

fn write_state_if_changed(
    c: &mut Cluster,
    dir: &Path,
    socket: &Path,
    web_url: &Option<String>,
    last: &str,
) -> anyhow::Result<Option<String>> {
    let s = snapshot_state(c, socket, web_url);
    let text = serde_json::to_string(&s)?;
    if text == last {
        return Ok(None);
    }
    s.save(dir)?;
    Ok(Some(text))
}

/// Accepts control connections on their own thread; each request goes to the owning thread.
fn serve_control(listener: UnixListener, tx: mpsc::Sender<UpEvent>) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut line = String::new();
                let answer = match BufReader::new(&conn).read_line(&mut line) {
                    Ok(_) => match Request::decode(line.trim()) {
                        Ok(req) => {
                            let (rtx, rrx) = mpsc::channel();
                            if tx.send(UpEvent::Control(req, rtx)).is_err() {
                                Err("testcluster up is stopping".to_string())
                            } else {
                                rrx.recv()
                                    .unwrap_or_else(|_| Err("testcluster up is stopping".into()))
                            }
                        }
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e.to_string()),
                };
                let line = match answer {
                    Ok(m) => format!("ok {m}\n"),
                    Err(e) => format!("error {e}\n"),
                };
                let _ = conn.write_all(line.as_bytes());
            });
        }
    });
}

/// SIGINT and SIGTERM send [`UpEvent::Stop`].
fn stop_on_signal(tx: mpsc::Sender<UpEvent>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            let _ = tx.send(UpEvent::Stop);
        });
    });
    Ok(())
}
