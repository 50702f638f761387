//! Accepting connections and turning bytes into requests and responses.
//!
//! Kafka concept: every request is a size-prefixed frame (`int32` length, then a request header
//! and a body). A client may pipeline: send many requests without waiting, and Kafka answers
//! them in order on that connection. Kafka classes mirrored: `kafka.network.SocketServer`
//! (acceptor, processors) and `kafka.network.RequestChannel`.
//!
//! How this file keeps Kafka's guarantees:
//! - Order: as in Kafka, the requests of one connection are processed one after the other, in
//!   arrival order (two pipelined produce requests for a partition must append in the order
//!   they were sent). The reader keeps reading ahead (pipelining) into a bounded queue; one
//!   processor task runs each request to completion and writes its answer.
//! - Memory: a frame larger than `socket.request.max.bytes` is refused before it is read (the
//!   connection is closed, as Kafka does), and at most [`MAX_IN_FLIGHT`] requests per
//!   connection are held at once.
//! - Isolation: anything wrong on one connection (garbage, a truncated frame, an unknown api
//!   key, a peer that vanishes) ends that connection with one log line; others carry on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::api;
use crate::api::context::KafkaApis;

/// Requests of one connection being processed or waiting to be written. Kafka mutes a
/// connection after one request (`queued.max.requests` bounds the whole broker); we allow a
/// small window so pipelining clients (librdkafka) keep their throughput.
pub const MAX_IN_FLIGHT: usize = 32;

/// Kafka's `connections.max.idle.ms` default: close a connection idle this long.
pub const CONNECTIONS_MAX_IDLE: Duration = Duration::from_secs(600);

/// Accepts connections until `shutdown` turns true, one task per connection.
/// Returns once no connection task is left (in-flight requests answered).
pub async fn run(
    listener: TcpListener,
    broker: Arc<KafkaApis>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    loop {
        tokio::select! {
            res = listener.accept() => match res {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let broker = broker.clone();
                    let shutdown = shutdown.clone();
                    let done = done_tx.clone();
                    tokio::spawn(async move {
                        handle_connection(stream, peer, broker, shutdown).await;
                        drop(done);
                    });
                }
                Err(e) => {
                    warn!(error = %e, "accept failed; backing off");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    drop(listener);
    drop(done_tx);
    // Every connection task holds a sender; recv returns None when all have finished.
    let _ = tokio::time::timeout(Duration::from_secs(30), done_rx.recv()).await;
    info!("stopped accepting; connections closed");
}

/// A request read from the connection, waiting its turn.
enum Pending {
    /// An answer decided while parsing (ApiVersions with an unknown version).
    Ready(api::Frame),
    Request(Box<api::Request>),
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    Clean,
    Shutdown,
    Closed(String),
}

async fn handle_connection(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<KafkaApis>,
    shutdown: watch::Receiver<bool>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Pending>(MAX_IN_FLIGHT);
    let processor_broker = broker.clone();
    let writer = tokio::spawn(async move {
        let mut staging = BytesMut::with_capacity(COALESCE);
        while let Some(p) = rx.recv().await {
            let answer = match p {
                Pending::Ready(frame) => Some(frame),
                Pending::Request(req) => api::handle(processor_broker.clone(), *req, peer).await,
            };
            if let Some(chunks) = answer {
                if let Err(e) = write_frame(&mut wr, &mut staging, chunks).await {
                    debug!(%peer, error = %e, "client went away before its response");
                    return;
                }
            }
        }
        let _ = wr.shutdown().await;
    });
    let max = broker.config.socket_request_max_bytes;
    let end = read_loop(&mut rd, &tx, max, shutdown).await;
    match &end {
        End::Clean | End::Shutdown => debug!(%peer, ?end, "connection ended"),
        End::Closed(reason) => warn!(%peer, reason = %reason, "closing connection"),
    }
    drop(tx);
    let _ = writer.await;
}

/// Chunks smaller than this are copied together into one write; larger ones (record batches)
/// are written as they are, without a copy.
const COALESCE: usize = 16 * 1024;

async fn write_frame(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    staging: &mut BytesMut,
    chunks: api::Frame,
) -> std::io::Result<()> {
    for c in chunks {
        if c.len() < COALESCE {
            staging.extend_from_slice(&c);
            if staging.len() >= COALESCE {
                wr.write_all(staging).await?;
                staging.clear();
            }
        } else {
            if !staging.is_empty() {
                wr.write_all(staging).await?;
                staging.clear();
            }
            wr.write_all(&c).await?;
        }
    }
    if !staging.is_empty() {
        wr.write_all(staging).await?;
        staging.clear();
    }
    Ok(())
}

async fn read_loop(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    tx: &mpsc::Sender<Pending>,
    max: usize,
    mut shutdown: watch::Receiver<bool>,
) -> End {
    loop {
        let mut len_buf = [0u8; 4];
        let first = tokio::select! {
            r = tokio::time::timeout(CONNECTIONS_MAX_IDLE, rd.read(&mut len_buf)) => r,
            _ = shutdown.changed() => return End::Shutdown,
        };
        let n = match first {
            Err(_) => return End::Closed("idle for connections.max.idle.ms".into()),
            Ok(Err(e)) => return End::Closed(format!("read error: {e}")),
            Ok(Ok(0)) => return End::Clean,
            Ok(Ok(n)) => n,
        };
        if n < 4 {
            if let Err(e) = rd.read_exact(&mut len_buf[n..]).await {
                return End::Closed(format!("peer hung up inside a size prefix: {e}"));
            }
        }
        let len = i32::from_be_bytes(len_buf);
        if len < 0 {
            return End::Closed(format!("negative frame size {len}"));
        }
        let len = len as usize;
        if len > max {
            return End::Closed(format!(
                "request of {len} bytes exceeds socket.request.max.bytes ({max})"
            ));
        }
        if len < 8 {
            return End::Closed(format!(
                "frame of {len} bytes is too short for a request header"
            ));
        }
        // Read into uninitialised capacity (no memset of the frame first).
        let mut buf = BytesMut::with_capacity(len);
        while buf.len() < len {
            let mut limited = (&mut *rd).take((len - buf.len()) as u64);
            match limited.read_buf(&mut buf).await {
                Ok(0) => {
                    return End::Closed(format!(
                        "peer hung up inside a {len}-byte request after {} bytes",
                        buf.len()
                    ))
                }
                Ok(_) => {}
                Err(e) => {
                    return End::Closed(format!("read error inside a {len}-byte request: {e}"))
                }
            }
        }
        let frame: Bytes = buf.freeze();
        let mut peek = &frame[..];
        let api_key = peek.get_i16();
        let api_version = peek.get_i16();
        let req = match api::parse_request(api_key, api_version, frame) {
            Ok(req) => req,
            Err(api::ParseError::Respond(resp)) => {
                // ApiVersions with a version we do not know: answered with v0 and the list.
                if tx.send(Pending::Ready(vec![resp.freeze()])).await.is_err() {
                    return End::Closed("writer gone".into());
                }
                continue;
            }
            Err(api::ParseError::Close(reason)) => return End::Closed(reason),
        };
        if tx.send(Pending::Request(Box::new(req))).await.is_err() {
            return End::Closed("writer gone".into());
        }
    }
}
