//! Broker CPU time read from `/proc/<pid>/stat`.
//!
//! Fields 14 and 15 of `stat` (utime, stime) count the clock ticks a process has spent in user
//! and kernel mode, over all its threads. Sampling them before and after a phase and dividing by
//! `sysconf(_SC_CLK_TCK)` gives the CPU seconds the broker spent on that phase, whatever the
//! client (which shares the machine) was doing meanwhile.

use anyhow::Context;

/// A set of broker processes whose CPU time is summed.
#[derive(Debug, Clone)]
pub struct BrokerCpu {
    pids: Vec<u32>,
    ticks_per_second: f64,
}

impl BrokerCpu {
    pub fn new(pids: Vec<u32>) -> BrokerCpu {
        // SAFETY: sysconf has no preconditions.
        let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        BrokerCpu {
            pids,
            ticks_per_second: if tck > 0 { tck as f64 } else { 100.0 },
        }
    }

    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// CPU seconds used so far, split into user mode (the broker's own code) and kernel mode
    /// (system calls: socket copies, page-cache writes and reads, scheduling).
    pub fn user_and_system(&self) -> anyhow::Result<(f64, f64)> {
        let (mut user, mut system) = (0u64, 0u64);
        for pid in &self.pids {
            let (u, s) = process_ticks(*pid)?;
            user += u;
            system += s;
        }
        Ok((
            user as f64 / self.ticks_per_second,
            system as f64 / self.ticks_per_second,
        ))
    }
}

/// (utime, stime) of one process, in clock ticks.
fn process_ticks(pid: u32) -> anyhow::Result<(u64, u64)> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat_ticks(&text).with_context(|| format!("parsing {path}"))
}

/// The command name (field 2) sits in parentheses and may hold spaces or parentheses itself,
/// so fields are counted from the last `)`: state is field 3, utime 14 and stime 15.
fn parse_stat_ticks(text: &str) -> anyhow::Result<(u64, u64)> {
    let rest = &text[text.rfind(')').context("no ')' in stat")? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field n is fields[n - 3].
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime, stime))
}

/// CPU seconds (user + system) this thread has used so far.
fn thread_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass; RUSAGE_THREAD is Linux's per-thread usage.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A control for the produce figure: the CPU seconds this machine's kernel needs to put `bytes`
/// into the page cache of a new file in `dir` (1 MiB writes, no fsync), as the broker's log
/// appends must. On a VM whose free memory goes back to the host (virtio balloon / free page
/// reporting), touching fresh page-cache pages costs far more than the copy itself, and that
/// cost lands in the broker's system time.
pub fn page_cache_write_seconds(dir: &std::path::Path, bytes: u64) -> anyhow::Result<f64> {
    use std::io::Write;
    let path = dir.join(format!("bench-page-cache-control-{}", std::process::id()));
    let chunk = vec![0x5au8; 1 << 20];
    let t0 = thread_cpu_seconds();
    let mut f = std::fs::File::create(&path).with_context(|| format!("creating {path:?}"))?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    drop(f);
    let spent = thread_cpu_seconds() - t0;
    std::fs::remove_file(&path)?;
    Ok(spent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime_after_a_tricky_comm() {
        let line = "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 500 0 0 0 \
                    123 45 0 0 20 0 9 0 100 1000 200 18446744073709551615";
        assert_eq!(parse_stat_ticks(line).unwrap(), (123, 45));
    }

    #[test]
    fn reads_our_own_process() {
        let cpu = BrokerCpu::new(vec![std::process::id()]);
        assert!(cpu.user_and_system().unwrap().0 >= 0.0);
        assert!(BrokerCpu::new(vec![u32::MAX]).user_and_system().is_err());
    }
}
