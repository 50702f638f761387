//! A minimal Kafka protocol client for broker-to-broker requests (ControlledShutdown to the
//! controller, Fetch from a leader): one connection, one request at a time.
//!
//! Kafka class mirrored: `kafka.server.BrokerBlockingSender` / `NetworkClient`, reduced to what a
//! broker sends. kafka-protocol encodes and decodes; this file only frames.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// One connection to a broker.
pub struct Connection {
    stream: TcpStream,
    correlation_id: i32,
    client_id: String,
    timeout: Duration,
    /// Largest response accepted.
    max_response: usize,
}

impl Connection {
    pub async fn connect(addr: &str, client_id: &str, timeout: Duration) -> Result<Self> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::network(format!("connect to {addr} timed out")))?
            .map_err(|e| Error::network(format!("connect to {addr}: {e}")))?;
        stream.set_nodelay(true).map_err(Error::network)?;
        Ok(Connection {
            stream,
            correlation_id: 0,
            client_id: client_id.to_string(),
            timeout,
            max_response: 512 * 1024 * 1024,
        })
    }

    /// Sends `req` as `key` v`version` and waits for its response.
    pub async fn send<Req, Resp>(&mut self, key: ApiKey, version: i16, req: &Req) -> Result<Resp>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let correlation_id = self.correlation_id;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        let mut buf = BytesMut::with_capacity(128);
        buf.put_i32(0);
        header
            .encode(&mut buf, Req::header_version(version))
            .map_err(Error::network)?;
        req.encode(&mut buf, version).map_err(Error::network)?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let timeout = self.timeout;
        let max = self.max_response;
        let stream = &mut self.stream;
        let mut body = tokio::time::timeout(timeout, async move {
            stream.write_all(&buf).await?;
            let len = stream.read_i32().await?;
            if len < 0 || len as usize > max {
                return Err(Error::network(format!("bad response size {len}")));
            }
            let mut body = BytesMut::zeroed(len as usize);
            stream.read_exact(&mut body).await?;
            Ok::<Bytes, Error>(body.freeze())
        })
        .await
        .map_err(|_| Error::network(format!("{key:?} timed out after {timeout:?}")))??;
        let h = ResponseHeader::decode(&mut body, Resp::header_version(version))
            .map_err(Error::network)?;
        if h.correlation_id != correlation_id {
            return Err(Error::network(format!(
                "correlation id {} does not match request {correlation_id}",
                h.correlation_id
            )));
        }
        let resp = Resp::decode(&mut body, version).map_err(Error::network)?;
        if body.has_remaining() {
            tracing::debug!(extra = body.remaining(), "trailing bytes after response");
        }
        Ok(resp)
    }
}
