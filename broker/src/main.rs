//! `broker <server.properties> [--override key=value ...]`: a Kafka broker in ZooKeeper mode.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// See `broker::alloc`: a hostile array length must not abort the process.
#[global_allocator]
static GLOBAL: broker::alloc::GuardedAlloc = broker::alloc::GuardedAlloc;

/// A Kafka broker in ZooKeeper mode (classic architecture).
///
/// Example:
///   broker config/server.properties --override broker.id=2 --override listeners=PLAINTEXT://127.0.0.1:9093
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Kafka's server.properties file.
    config: PathBuf,
    /// Override a property: `--override key=value` (repeatable), as kafka-server-start.sh.
    #[arg(long = "override", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // Log lines are formatted where they happen and written by a thread of their own, through
    // a buffer flushed whenever no line is waiting: a controller changing 10,000 partitions
    // logs 10,000 state changes, and a write(2) for each, on the controller's thread and in
    // the brokers' request handling, cost more than the changes themselves. Nothing is
    // dropped (a full queue blocks the logger); lines still queued are written when `_log`
    // goes at the end of `main`, and lost only if the process is killed.
    let (writer, _log) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer)
        .init();
    let config = match broker::config::BrokerConfig::load(&args.config, &args.overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            tracing::error!(error = %e, "invalid configuration");
            return std::process::ExitCode::from(2);
        }
    };
    raise_open_file_limit();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let running = match broker::broker::start(config).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "broker failed to start");
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        running.shutdown().await;
        std::process::ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit. Every partition replica keeps its active
/// segment's `.log` open, so a broker hosting many partitions needs many descriptors; Kafka's
/// operations guide asks for a high `ulimit -n` (100,000 or more), and the hard limit is the
/// most an unprivileged process may take.
fn raise_open_file_limit() {
    // SAFETY: getrlimit/setrlimit on this process with a valid struct.
    let (before, after) = unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return;
        }
        let before = r.rlim_cur;
        if r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                r.rlim_cur = before;
            }
        }
        (before, r.rlim_cur)
    };
    tracing::info!(
        soft_before = before,
        soft = after,
        "open file limit (RLIMIT_NOFILE) raised to the hard limit"
    );
}
