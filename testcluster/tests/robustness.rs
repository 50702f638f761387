//! Bad input never takes a broker down: garbage, truncated, oversized and hostile frames each
//! get a closed connection (or Kafka's error answer), and other clients keep being served.

use std::time::Duration;

use testcluster::kafka::Client;
use testcluster::{Cluster, ClusterOptions};

fn frame(api_key: i16, version: i16, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    let mut inner = Vec::new();
    inner.extend_from_slice(&api_key.to_be_bytes());
    inner.extend_from_slice(&version.to_be_bytes());
    inner.extend_from_slice(&77i32.to_be_bytes());
    inner.extend_from_slice(&4i16.to_be_bytes());
    inner.extend_from_slice(b"evil");
    inner.extend_from_slice(body);
    f.extend_from_slice(&(inner.len() as i32).to_be_bytes());
    f.extend_from_slice(&inner);
    f
}

#[test]
fn malformed_frames_close_only_their_connection() {
    let mut c = Cluster::start(ClusterOptions::default().brokers(1)).expect("cluster");
    let addr = c.broker(1).address();
    // A healthy client opened before the abuse, used after each case.
    let mut good = Client::connect(&addr).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "garbage",
            b"\xde\xad\xbe\xef\xde\xad\xbe\xef garbage garbage".to_vec(),
        ),
        ("negative size", (-5i32).to_be_bytes().to_vec()),
        (
            "size over socket.request.max.bytes",
            i32::MAX.to_be_bytes().to_vec(),
        ),
        (
            "frame shorter than a header",
            [0, 0, 0, 3, 1, 2, 3].to_vec(),
        ),
        ("unknown api key", frame(999, 0, b"")),
        ("unsupported version", frame(3, 99, b"")),
        ("truncated Metadata body", frame(3, 1, &[0, 0, 0, 5, 0])),
        // Arrays claiming 2^31-1 elements in a few bytes (kafka-protocol would size a Vec
        // from them): must not take the process down.
        ("hostile array length", frame(3, 1, &i32::MAX.to_be_bytes())),
        (
            "hostile compact array length",
            frame(
                0,
                9,
                &[0, 0, 0, 1, 0, 0, 3, 232, 0xff, 0xff, 0xff, 0xff, 0x07],
            ),
        ),
    ];
    for (name, bytes) in cases {
        let mut bad = Client::connect(&addr).unwrap();
        bad.write_raw(&bytes).unwrap();
        assert!(
            bad.closed_by_peer(Duration::from_secs(10)),
            "{name}: the broker should close the connection"
        );
        assert!(c.broker(1).is_running(), "{name}: the broker died");
        let md = good
            .metadata(None)
            .unwrap_or_else(|e| panic!("after {name}: {e}"));
        assert_eq!(md.brokers.len(), 1, "after {name}");
    }
    // A peer that stalls mid-request and vanishes.
    let mut stall = Client::connect(&addr).unwrap();
    stall.write_raw(&100i32.to_be_bytes()).unwrap();
    stall.write_raw(b"abc").unwrap();
    drop(stall);
    // ApiVersions with a version we do not know is answered (UNSUPPORTED_VERSION, v0 body).
    let mut av = Client::connect(&addr).unwrap();
    av.write_raw(&frame(18, 99, b"")).unwrap();
    let answer = av.read_frame().expect("ApiVersions v99 is answered");
    assert_eq!(&answer[..4], &77i32.to_be_bytes(), "correlation id");
    assert_eq!(&answer[4..6], &35i16.to_be_bytes(), "UNSUPPORTED_VERSION");
    assert!(c.broker(1).is_running());
    assert!(good.api_versions().is_ok());
    let log = c.broker(1).log();
    assert!(log.contains("closing connection"), "each case is logged");
}
