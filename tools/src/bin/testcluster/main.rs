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
///   seq 1 10 | testcluster produce demo     # console producer; `consume demo --from-beginning`
///   testcluster reassign propose --topics demo --brokers 1,2 --output plan.json
///   testcluster zk /brokers                 # Kafka's znodes, decoded
#[derive(Parser)]
// `name`: clap's default is the package's name, now `tools`; `--version` prints this one.
#[command(name = "testcluster", version, about, verbatim_doc_comment)]
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
    /// Partition reassignment, like kafka-reassign-partitions.sh (propose, execute, verify, cancel).
    ///
    /// A plan is kafka-reassign-partitions.sh's JSON:
    ///   {"version":1,"partitions":[{"topic":"demo","partition":0,"replicas":[2,3],"log_dirs":["any","any"]}]}
    ///
    /// Examples:
    ///   testcluster reassign propose --topics demo --brokers 2,3 --output plan.json
    ///   testcluster reassign execute --plan plan.json
    ///   testcluster reassign verify --plan plan.json
    ///   testcluster reassign cancel --plan plan.json
    #[command(subcommand, verbatim_doc_comment)]
    Reassign(ReassignCmd),
    /// Console producer (like kafka-console-producer.sh): one record per stdin line.
    ///
    /// Runs librdkafka (the client inside kcat and confluent-kafka). Waits for every
    /// acknowledgement; exits 1 if a record was not acknowledged.
    ///
    /// Examples:
    ///   seq 1 100 | testcluster produce demo
    ///   printf 'user1:login\nuser2:logout\n' | testcluster produce demo --key-separator :
    ///   testcluster produce demo --acks 1          # then type lines; Ctrl-D to finish
    #[command(verbatim_doc_comment)]
    Produce {
        /// Topic to write to.
        topic: String,
        /// Each line is KEY<SEP>VALUE, split at the first SEP (Kafka's parse.key=true).
        #[arg(long, value_name = "SEP")]
        key_separator: Option<String>,
        /// Acknowledgements to wait for: 0, 1 or all.
        #[arg(long, default_value = "all")]
        acks: String,
    },
    /// Console consumer (like kafka-console-consumer.sh), in a consumer group.
    ///
    /// Without --group it joins a throw-away group and commits nothing; with --group it
    /// commits what it printed, so the group's next consumer continues after it. Prints
    /// "Processed a total of N messages" to stderr when it stops (--max-messages,
    /// --timeout-ms without a record, or Ctrl-C).
    ///
    /// Examples:
    ///   testcluster consume demo --from-beginning
    ///   testcluster consume demo --group readers --from-beginning --max-messages 10 --print-key
    ///   testcluster consume demo --from-beginning --timeout-ms 5000
    #[command(verbatim_doc_comment)]
    Consume {
        /// Topic to read.
        topic: String,
        /// Consumer group (JoinGroup/SyncGroup/OffsetCommit on the group coordinator).
        #[arg(long)]
        group: Option<String>,
        /// Start at the earliest offset when the group has no committed offset.
        #[arg(long)]
        from_beginning: bool,
        /// Stop after this many records.
        #[arg(long)]
        max_messages: Option<u64>,
        /// Print each record's key (or null) before its value.
        #[arg(long)]
        print_key: bool,
        /// Between key and value with --print-key.
        #[arg(long, default_value = "\\t", value_name = "SEP")]
        key_separator: String,
        /// Stop when no record arrives for this long.
        #[arg(long, value_name = "MS")]
        timeout_ms: Option<u64>,
    },
    /// The znodes Kafka wrote under the cluster's chroot, with their data decoded.
    ///
    /// Like zkCli.sh's `get` on a whole subtree; JSON is pretty-printed and ephemeral znodes
    /// (owned by a live ZooKeeper session) are marked.
    ///
    /// Examples:
    ///   testcluster zk                              # everything
    ///   testcluster zk /brokers/ids                 # registered brokers
    ///   testcluster zk /controller                  # who is controller
    ///   testcluster zk /brokers/topics/demo         # assignment, partition states
    #[command(verbatim_doc_comment)]
    Zk {
        /// Where to start, inside the chroot.
        #[arg(default_value = "/")]
        path: String,
    },
}

#[derive(Subcommand)]
enum ReassignCmd {
    /// Propose a plan moving TOPICS onto BROKERS (kafka-reassign-partitions.sh --generate).
    ///
    /// Prints the current assignment (keep it to roll back) and the proposal, both as plans.
    /// Replicas are spread round-robin as Kafka does; the replication factor is kept.
    ///
    /// Examples:
    ///   testcluster reassign propose --topics demo --brokers 1,2,3
    ///   testcluster reassign propose --topics demo,logs --brokers 2,3 --output plan.json
    #[command(verbatim_doc_comment)]
    Propose {
        /// Comma-separated topic names.
        #[arg(long, value_delimiter = ',', required = true)]
        topics: Vec<String>,
        /// Comma-separated broker ids to place the replicas on.
        #[arg(long, value_delimiter = ',', required = true)]
        brokers: Vec<i32>,
        /// Also write the proposed plan to this file.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Start the moves of a plan (AlterPartitionReassignments, on the controller).
    ///
    /// Examples:
    ///   testcluster reassign execute --plan plan.json
    ///   testcluster reassign execute --plan more.json --additional
    #[command(verbatim_doc_comment)]
    Execute {
        #[arg(long, value_name = "FILE")]
        plan: PathBuf,
        /// Start even though other reassignments are in progress.
        #[arg(long)]
        additional: bool,
    },
    /// Is each partition of a plan moved, still moving, or neither?
    ///
    /// Examples:
    ///   testcluster reassign verify --plan plan.json
    #[command(verbatim_doc_comment)]
    Verify {
        #[arg(long, value_name = "FILE")]
        plan: PathBuf,
    },
    /// Cancel the plan's moves still in progress (the original replicas come back).
    ///
    /// Examples:
    ///   testcluster reassign cancel --plan plan.json
    #[command(verbatim_doc_comment)]
    Cancel {
        #[arg(long, value_name = "FILE")]
        plan: PathBuf,
    },
    /// The reassignments in progress, with adding and removing replicas.
    ///
    /// Examples:
    ///   testcluster reassign list
    #[command(verbatim_doc_comment)]
    List,
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

/// `\t` and `\n` typed on a command line, as Kafka's tools read them in separators.
fn unescape(s: &str) -> String {
    s.replace("\\t", "\t").replace("\\n", "\n")
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
        Cmd::Reassign(r) => match r {
            ReassignCmd::Propose {
                topics,
                brokers,
                output,
            } => tool::reassign::propose(&dir, &topics, &brokers, output.as_deref()),
            ReassignCmd::Execute { plan, additional } => {
                tool::reassign::execute(&dir, &plan, additional)
            }
            ReassignCmd::Verify { plan } => tool::reassign::verify(&dir, &plan),
            ReassignCmd::Cancel { plan } => tool::reassign::cancel(&dir, &plan),
            ReassignCmd::List => tool::reassign::list(&dir),
        },
        Cmd::Produce {
            topic,
            key_separator,
            acks,
        } => tool::console::produce(
            &dir,
            tool::console::ProduceArgs {
                topic,
                key_separator,
                acks,
            },
        ),
        Cmd::Consume {
            topic,
            group,
            from_beginning,
            max_messages,
            print_key,
            key_separator,
            timeout_ms,
        } => tool::console::consume(
            &dir,
            tool::console::ConsumeArgs {
                topic,
                group,
                from_beginning,
                max_messages,
                print_key,
                key_separator: unescape(&key_separator),
                timeout_ms,
            },
        ),
        Cmd::Zk { path } => tool::znodes::run(&dir, &path),
    }
}
