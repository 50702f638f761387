//! Framing an answer: size, response header, body, as chunks written in order.
//!
//! Kafka class mirrored: `RequestChannel.Response` / `RequestContext.buildResponseSend`
//! (the header version follows the API and its version). A leaf module: handlers that encode
//! their own answers (Fetch, Metadata) use it without importing the dispatch.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;
use tracing::warn;

/// Frames a response: size, header (version from the API), body.
pub fn encode_response(correlation_id: i32, version: i16, body: &ResponseKind) -> Option<BytesMut> {
    let header_version = body.header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    if let Err(e) = header.encode(&mut buf, header_version) {
        warn!(error = %e, "cannot encode response header");
        return None;
    }
    if let Err(e) = body.encode(&mut buf, version) {
        warn!(error = %e, version, "cannot encode response");
        return None;
    }
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Some(buf)
}

/// A response frame as chunks written in order (record batches are their own chunks).
pub type Frame = Vec<Bytes>;
