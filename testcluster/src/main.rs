//! `testcluster`: start a local classic-Kafka cluster (real ZooKeeper + broker processes).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use testcluster::{Cluster, ClusterOptions};

/// A local Kafka cluster in ZooKeeper mode: Apache ZooKeeper from Debian's package and broker
/// processes on 127.0.0.1, data in one folder.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start ZooKeeper and the brokers, print their addresses, run until Ctrl-C.
    ///
    /// Examples:
    ///   testcluster up                      # 1 ZooKeeper, 3 brokers, data in ./cluster-data
    ///   testcluster up --brokers 5 --zk 3   # a 3-node ZooKeeper ensemble and 5 brokers
    ///   testcluster up --dir /tmp/demo --config num.partitions=6
    #[command(verbatim_doc_comment)]
    Up {
        /// Number of brokers.
        #[arg(long, default_value_t = 3)]
        brokers: i32,
        /// Number of ZooKeeper servers (1 = standalone, 3 = ensemble).
        #[arg(long, default_value_t = 1)]
        zk: u32,
        /// Folder for ZooKeeper and broker data (kept between runs).
        #[arg(long, default_value = "./cluster-data")]
        dir: PathBuf,
        /// Extra broker config, `key=value` (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Up {
            brokers,
            zk,
            dir,
            config,
        } => up(brokers, zk, dir, config),
    }
}

fn up(brokers: i32, zk: u32, dir: PathBuf, config: Vec<String>) -> anyhow::Result<()> {
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
    // ZooKeeper keeps its data between runs; a fresh ensemble size would not match it.
    println!(
        "[testcluster] starting ZooKeeper ({zk} server{}) and {brokers} brokers in {}",
        if zk == 1 { "" } else { "s" },
        dir.display()
    );
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    ctrlc_channel(stop_tx)?;
    let mut c = Cluster::start(opts)?;
    let (controller, epoch) = c.controller().unwrap_or((-1, -1));
    println!("[testcluster] ZooKeeper connect: {}", c.zookeeper_connect());
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
    println!("[testcluster] try: kcat -b {} -L", c.bootstrap());
    println!("[testcluster] running; Ctrl-C stops everything");
    let _ = stop_rx.recv();
    println!("[testcluster] stopping brokers (controlled shutdown)");
    for b in &mut c.brokers {
        b.signal(testcluster::Signal::Term);
    }
    for b in &mut c.brokers {
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
    println!("[testcluster] stopped");
    Ok(())
}

/// SIGINT and SIGTERM send on `tx` (the main thread waits on the other end).
fn ctrlc_channel(tx: std::sync::mpsc::Sender<()>) -> anyhow::Result<()> {
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
            let _ = tx.send(());
        });
    });
    Ok(())
}
