//! `testcluster`: start a local classic-Kafka cluster (real ZooKeeper + broker processes), look
//! at it, break it and watch it heal. The work is done in [`tool`]; this file parses arguments.

mod tool;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use testcluster::Signal;

use tool::control::{self, Request};

/// A local Kafka cluster in ZooKeeper mode: Apache ZooKeeper from Debian's package and broker
/// processes on 127.0.0.1, data in one folder. `up` runs it; the other commands find it through
/// `<dir>/cluster.json`.
///
/// Examples:
///   testcluster up                          # terminal 1: run a cluster until Ctrl-C
///   testcluster watch                       # terminal 2: stream what changes
///   testcluster status                      # terminal 3: controller, brokers, partitions
///   testcluster topics create --topic demo --partitions 3 --replication-factor 3
///   testcluster kill controller             # SIGKILL the controller; watch the failover
///   testcluster start 1                     # start broker 1 again
#[derive(Parser)]
#[command(version, about, verbatim_doc_comment)]
struct Cli {
    /// The cluster's folder (data, logs, cluster.json).
    #[arg(long, global = true, default_value = "./cluster-data")]
    dir: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start ZooKeeper and the brokers, print their addresses, run until Ctrl-C.
    ///
    /// Writes <dir>/cluster.json (ZooKeeper connect string, every process's port, pid, config
    /// and log) and listens on <dir>/control.sock for kill/start requests. Ctrl-C stops the
    /// brokers by controlled shutdown, then ZooKeeper.
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
        /// Extra broker config, `key=value` (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
    },
    /// Brokers (alive/paused/dead, registered), controller and epoch, every partition.
    ///
    /// Reads ZooKeeper (/controller, /controller_epoch, /brokers/ids, /brokers/topics) and each
    /// live broker's Metadata, and flags offline and under-replicated partitions.
    ///
    /// Examples:
    ///   testcluster status
    ///   testcluster status --dir /tmp/demo
    #[command(verbatim_doc_comment)]
    Status,
    /// Send a signal to a broker, or to whichever broker is the controller.
    ///
    /// KILL crashes it (its ZooKeeper session expires after zookeeper.session.timeout.ms),
    /// TERM stops it by controlled shutdown, STOP pauses it, CONT resumes it.
    ///
    /// Examples:
    ///   testcluster kill controller
    ///   testcluster kill 2 --signal TERM
    ///   testcluster kill controller --signal STOP    # pause: its session expires, it is fenced
    ///   testcluster kill 1 --signal CONT
    #[command(verbatim_doc_comment)]
    Kill {
        /// A broker id, or `controller`.
        target: String,
        /// KILL, TERM, STOP or CONT.
        #[arg(long, default_value = "KILL")]
        signal: String,
    },
    /// Start a stopped broker again with its config, port and data.
    ///
    /// Examples:
    ///   testcluster start 1
    #[command(verbatim_doc_comment)]
    Start {
        /// Broker id.
        broker: i32,
    },
    /// Kill one ZooKeeper server (SIGKILL).
    ///
    /// Examples:
    ///   testcluster zk-kill 1      # with --zk 3 the ensemble keeps a quorum
    #[command(verbatim_doc_comment, name = "zk-kill")]
    ZkKill {
        /// ZooKeeper server id (1..n).
        id: u32,
    },
    /// Start a killed ZooKeeper server again.
    ///
    /// Examples:
    ///   testcluster zk-start 1
    #[command(verbatim_doc_comment, name = "zk-start")]
    ZkStart {
        /// ZooKeeper server id (1..n).
        id: u32,
    },
    /// Stream changes as they happen: processes, /brokers/ids, controller and epoch, leaders, ISRs.
    ///
    /// Each effect line shows the time since the last cause (a process exiting or pausing, a
    /// broker leaving or joining /brokers/ids, /controller deleted).
    ///
    /// Examples:
    ///   testcluster watch
    ///   testcluster watch --seconds 60
    #[command(verbatim_doc_comment)]
    Watch {
        /// Stop after this many seconds (default: until Ctrl-C or the cluster stops).
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Topic administration over the Admin APIs, like kafka-topics.sh.
    #[command(subcommand)]
    Topics(TopicsCmd),
}

#[derive(Subcommand)]
enum TopicsCmd {
    /// List topic names.
    ///
    /// Examples:
    ///   testcluster topics list
    #[command(verbatim_doc_comment)]
    List,
    /// Partitions with leader, replicas and ISR (kafka-topics.sh --describe).
    ///
    /// Examples:
    ///   testcluster topics describe
    ///   testcluster topics describe --topic demo
    #[command(verbatim_doc_comment)]
    Describe {
        #[arg(long)]
        topic: Option<String>,
    },
    /// Create a topic (CreateTopics, sent to the controller).
    ///
    /// Examples:
    ///   testcluster topics create --topic demo --partitions 3 --replication-factor 3
    ///   testcluster topics create --topic logs --partitions 6 --config retention.ms=60000
    #[command(verbatim_doc_comment)]
    Create {
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        #[arg(long, default_value_t = 1)]
        replication_factor: i16,
        /// Topic config, `key=value` (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
    },
    /// Delete a topic (DeleteTopics).
    ///
    /// Examples:
    ///   testcluster topics delete --topic demo
    #[command(verbatim_doc_comment)]
    Delete {
        #[arg(long)]
        topic: String,
    },
    /// Raise a topic's partition count to N (CreatePartitions; N is the new total).
    ///
    /// Examples:
    ///   testcluster topics add-partitions --topic demo --partitions 6
    #[command(verbatim_doc_comment, name = "add-partitions")]
    AddPartitions {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partitions: i32,
    },
    /// Leader election (ElectLeaders), like kafka-leader-election.sh.
    ///
    /// Examples:
    ///   testcluster topics elect --preferred                 # every partition
    ///   testcluster topics elect --preferred --topic demo --partition 0
    ///   testcluster topics elect --unclean --topic demo --partition 1
    #[command(verbatim_doc_comment)]
    Elect {
        /// Move leadership back to the preferred (first) replica.
        #[arg(long, conflicts_with = "unclean")]
        preferred: bool,
        /// Elect a live replica outside the ISR when no ISR member is alive (may lose data).
        #[arg(long)]
        unclean: bool,
        #[arg(long)]
        topic: Option<String>,
        #[arg(long, requires = "topic")]
        partition: Option<i32>,
    },
}

fn key_values(kvs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    kvs.iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| anyhow::anyhow!("--config {kv:?}: expected key=value"))
        })
        .collect()
}

fn ask(dir: &std::path::Path, req: Request) -> anyhow::Result<()> {
    println!("{}", control::send(dir, &req)?);
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("{e}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = cli.dir;
    match cli.command {
        Cmd::Up {
            brokers,
            zk,
            config,
        } => tool::up::run(tool::up::UpArgs {
            brokers,
            zk,
            dir,
            config,
        }),
        Cmd::Status => tool::status::run(&dir),
        Cmd::Kill { target, signal } => {
            let signal = Signal::parse(&signal).ok_or_else(|| {
                anyhow::anyhow!("--signal {signal:?}: expected KILL, TERM, STOP or CONT")
            })?;
            let broker = if target == "controller" {
                None
            } else {
                Some(target.parse::<i32>().map_err(|_| {
                    anyhow::anyhow!("{target:?}: expected a broker id or `controller`")
                })?)
            };
            ask(&dir, Request::Kill { broker, signal })
        }
        Cmd::Start { broker } => ask(&dir, Request::Start { broker }),
        Cmd::ZkKill { id } => ask(&dir, Request::ZkKill { id }),
        Cmd::ZkStart { id } => ask(&dir, Request::ZkStart { id }),
        Cmd::Watch { seconds } => tool::watch::run(&dir, seconds.map(Duration::from_secs)),
        Cmd::Topics(t) => match t {
            TopicsCmd::List => tool::topics::list(&dir),
            TopicsCmd::Describe { topic } => tool::topics::describe(&dir, topic.as_deref()),
            TopicsCmd::Create {
                topic,
                partitions,
                replication_factor,
                config,
            } => tool::topics::create(
                &dir,
                &topic,
                partitions,
                replication_factor,
                &key_values(&config)?,
            ),
            TopicsCmd::Delete { topic } => tool::topics::delete(&dir, &topic),
            TopicsCmd::AddPartitions { topic, partitions } => {
                tool::topics::add_partitions(&dir, &topic, partitions)
            }
            TopicsCmd::Elect {
                preferred,
                unclean,
                topic,
                partition,
            } => {
                if !preferred && !unclean {
                    anyhow::bail!("say which election: --preferred or --unclean");
                }
                tool::topics::elect(&dir, unclean, topic.as_deref(), partition)
            }
        },
    }
}
