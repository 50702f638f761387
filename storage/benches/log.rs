//! Append and read throughput of `Log`, beside `fio` on the same disk with the same block size.
//!
//! Run: `cargo bench -p storage --bench log` (set `CARGO_TARGET_DIR` as usual). The fio
//! reference runs first in the same process (if `fio` is on the PATH) and prints MB/s:
//! buffered sequential write with the batch size as block size (psync engine), the same with
//! an fsync every 1 MiB, and a sequential read of a file that is in the page cache.
//! Data goes to a temp folder under `STORAGE_BENCH_DIR` (default: the system temp dir).

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::path::Path;
use std::time::{Duration, Instant};
use storage::{batch, Log, LogConfig};

/// Keep the disk footprint bounded: start over when the log passes this size (not timed).
const MAX_LOG_BYTES: u64 = 512 * 1024 * 1024;
const FLUSH_EVERY: usize = 1024 * 1024;

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("STORAGE_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

/// A batch of `size` bytes in total (one record).
fn batch_of(size: usize) -> Vec<u8> {
    let overhead = batch::simple_batch(0, 1, 0, 1).len();
    // The record's length varint grows with the value; trim to hit `size` exactly.
    let mut v = size - overhead;
    loop {
        let b = batch::simple_batch(0, 1, v, 1_700_000_000_000);
        if b.len() <= size {
            return b;
        }
        v -= 1;
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 128 * 1024 * 1024,
        ..LogConfig::default()
    }
}

fn fio(dir: &Path, args: &[&str]) -> Option<f64> {
    let out = std::process::Command::new("fio")
        .arg("--name=ref")
        .arg(format!("--directory={}", dir.display()))
        .args([
            "--ioengine=psync",
            "--output-format=terse",
            "--terse-version=3",
        ])
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = text.lines().last()?.split(';').collect();
    // terse v3: field 7 read bandwidth KiB/s, field 48 write bandwidth KiB/s.
    let kib: f64 = if args.iter().any(|a| a.contains("rw=read")) {
        f.get(6)?
    } else {
        f.get(47)?
    }
    .parse()
    .ok()?;
    Some(kib * 1024.0 / 1e6)
}

fn fio_reference() {
    let d = bench_dir();
    println!("fio reference (MB/s), dir {}:", d.path().display());
    // fallocate=none: the file grows with each write, as a log segment does (Kafka's
    // log.preallocate is false); fio's default (native) preallocates the whole file first.
    for fallocate in ["none", "native"] {
        for (bs, fsync) in [("1k", "1024"), ("16k", "64")] {
            let fa = format!("--fallocate={fallocate}");
            let bs_arg = format!("--bs={bs}");
            let w = fio(d.path(), &["--rw=write", &bs_arg, "--size=512m", &fa]);
            let _ = std::fs::remove_file(d.path().join("ref.0.0"));
            let fs = format!("--fsync={fsync}");
            let wf = fio(d.path(), &["--rw=write", &bs_arg, "--size=256m", &fa, &fs]);
            let _ = std::fs::remove_file(d.path().join("ref.0.0"));
            println!(
                "  fio write bs={bs} fallocate={fallocate}: buffered {w:?}, fsync every 1 MiB {wf:?}"
            );
        }
    }
    // Lay the file out, then read it while it is in the page cache.
    fio(d.path(), &["--rw=write", "--bs=1m", "--size=256m"]);
    let r = fio(
        d.path(),
        &[
            "--rw=read",
            "--bs=1m",
            "--size=256m",
            "--invalidate=0",
            "--loops=4",
        ],
    );
    println!("  fio read bs=1m page cache: {r:?}");
    // dd as a second page-cache read reference (fio's psync read is often slower than a copy).
    let f = d.path().join("ref.0.0");
    let t = Instant::now();
    let mut n = 0u64;
    for _ in 0..4 {
        let out = std::process::Command::new("dd")
            .arg(format!("if={}", f.display()))
            .args(["of=/dev/null", "bs=1M", "status=none"])
            .status();
        if out.is_ok_and(|s| s.success()) {
            n += 256 * 1024 * 1024;
        }
    }
    println!(
        "  dd read bs=1M page cache: {:.1}",
        n as f64 / t.elapsed().as_secs_f64() / 1e6
    );
}

fn appends(c: &mut Criterion) {
    fio_reference();
    let mut g = c.benchmark_group("append");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for size in [1024usize, 16 * 1024] {
        let b = batch_of(size);
        for flush in [false, true] {
            let name = if flush {
                "flush_every_1MiB"
            } else {
                "no_flush"
            };
            g.throughput(Throughput::Bytes(b.len() as u64));
            g.bench_with_input(BenchmarkId::new(name, size), &b, |bench, b| {
                let d = bench_dir();
                let mut log = Log::open(&d.path().join("bench-0"), config(), 0, 0, true).unwrap();
                let mut since_flush = 0usize;
                bench.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut start = Instant::now();
                    for _ in 0..iters {
                        log.append_as_leader(BytesMut::from(&b[..]), 0).unwrap();
                        if flush {
                            since_flush += b.len();
                            if since_flush >= FLUSH_EVERY {
                                log.flush().unwrap();
                                since_flush = 0;
                            }
                        }
                        if log.size() > MAX_LOG_BYTES {
                            total += start.elapsed();
                            let leo = log.log_end_offset();
                            log.truncate_fully_and_start_at(leo).unwrap();
                            start = Instant::now();
                        }
                    }
                    total + start.elapsed()
                });
            });
        }
    }
    g.finish();
}

fn reads(c: &mut Criterion) {
    let mut g = c.benchmark_group("read");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    let d = bench_dir();
    let mut log = Log::open(&d.path().join("bench-0"), config(), 0, 0, true).unwrap();
    let b = batch_of(16 * 1024);
    while log.size() < 256 * 1024 * 1024 {
        log.append_as_leader(BytesMut::from(&b[..]), 0).unwrap();
    }
    let leo = log.log_end_offset();
    let max_bytes = 1024 * 1024;
    g.throughput(Throughput::Bytes(max_bytes as u64));
    g.bench_function("sequential_1MiB", |bench| {
        let mut next = 0i64;
        bench.iter(|| {
            if next >= leo {
                next = 0;
            }
            let r = log.read(next, max_bytes, None, true).unwrap();
            let last = batch::BatchHeader::parse(&r.records[r.records.len() - b.len()..]);
            next = last.next_offset();
            r.records.len()
        });
    });
    g.finish();
}

criterion_group!(benches, appends, reads);
criterion_main!(benches);
