//! Network namespaces for partition tests: every server on its own host, one switch between
//! them, and cuts that lose packets on the wire.
//!
//! What it models: a network partition as an operator meets it (a dead switch port, a firewall
//! rule that drops): packets between two hosts vanish. Nothing answers, nothing is refused; a
//! connection attempt waits for a SYN-ACK that never comes, an open connection retransmits into
//! the void, and each side finds out only by its own time-outs.
//!
//! How: [`Netns::create`] makes a Linux bridge (the switch) in the test's own namespace, with
//! address `10.211.N.1/24`, so the test process and stock clients reach every server through
//! it. [`Netns::add`] makes a network namespace (`tcnN-<name>`), a veth pair whose outer end is
//! a port of the bridge, and gives the inner end (`eth0`) the next address of the subnet; a
//! server started with [`Netns::command`] runs there (`ip netns exec`), with its own loopback and
//! its own ports. Only the bridge's subnet and loopback exist inside: no route leaves it.
//!
//! A cut from A to B ([`Netns::cut_one_way`]) is a permanent neighbour entry in A's namespace
//! that maps B's address to a MAC address no port has: A's frames to B go out on the wire, the
//! bridge floods them (it never learned that address) and every namespace discards them as not
//! addressed to it. Lost, as in a partition. Healing deletes the entry and ARP finds B again;
//! connections that survived the cut carry on. Routes were the obvious tool and the wrong one:
//! for traffic a host sends itself, `ip route add blackhole|unreachable|prohibit` fails the
//! sender's `connect` at once (EINVAL, EHOSTUNREACH, EACCES: measured on this kernel), a
//! refusal that no real partition gives and that clients handle on a different path than a
//! time-out. tc's drop action (`act_gact`) and nftables's userland are not available here.
//!
//! Subnets: `N` (1..=254) is chosen per `Netns`, so clusters of parallel tests and parallel test
//! binaries never share one. An owner file `/run/testcluster-netns/tcnN.pid`, created
//! exclusively before anything else, claims `N`; a claim whose process is gone is a crashed
//! run's leftover, and every [`Netns::create`] first removes such leftovers (namespaces, the
//! processes in them, links, the claim).
//! Dropping a `Netns` removes its namespaces, links and owner file (the processes inside must
//! be stopped first: a namespace with a process in it outlives its name, so its links are
//! deleted by name as well).
//!
//! Needs root (CAP_NET_ADMIN) and iproute2's `ip`; nothing else.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A MAC address no interface has (locally administered, unicast): the destination of frames
/// that are to be lost.
const NOWHERE_MAC: &str = "02:00:5e:00:de:ad";

/// Where owner files claim subnets.
const OWNER_DIR: &str = "/run/testcluster-netns";

/// Interface name inside every namespace.
const INNER_DEV: &str = "eth0";

/// Where a server runs: its network namespace and its address there.
#[derive(Debug, Clone)]
pub struct Placement {
    pub netns: String,
    pub host: Ipv4Addr,
}

impl Placement {
    /// `program` to be run inside the namespace (`ip netns exec <ns> <program>`); the child's
    /// pid is the program's (`ip` execs it).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = crate::command("ip");
        c.args(["netns", "exec", &self.netns]).arg(program);
        c
    }
}

/// One host: a namespace with one veth to the bridge.
#[derive(Debug, Clone)]
struct Member {
    placement: Placement,
    /// The veth end on the bridge, in the test's namespace.
    outer: String,
}

/// A switch (bridge) and the hosts (namespaces) on it; removed when dropped.
#[derive(Debug)]
pub struct Netns {
    /// The subnet's third octet: the hosts are `10.211.N.x`.
    pub subnet: u8,
    prefix: String,
    bridge: String,
    members: BTreeMap<String, Member>,
    /// Cuts in place: (from, to) member names.
    cuts: std::collections::BTreeSet<(String, String)>,
    owner_file: PathBuf,
}

/// Runs `ip args...`; an error carries its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = crate::command("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run ip (iproute2): {e}"))?;
    anyhow::ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// `ip args...`'s standard output ("" when it fails).
fn ip_output(args: &[&str]) -> String {
    crate::command("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

fn prefix_of(subnet: u8) -> String {
    format!("tcn{subnet}-")
}

/// Removes whatever a `Netns` with this subnet left behind: processes in its namespaces (by
/// pid, as `ip netns pids` lists them), the namespaces, its links and bridge.
fn remove_leftovers(subnet: u8) {
    let prefix = prefix_of(subnet);
    for line in ip_output(&["netns", "list"]).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if !name.starts_with(&prefix) {
            continue;
        }
        for pid in ip_output(&["netns", "pids", name]).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill(2) on a process inside a namespace of a crashed run of ours.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        let _ = ip(&["netns", "del", name]);
    }
    for line in ip_output(&["-o", "link", "show"]).lines() {
        // "7: tcn3-b1@if2: <...". The bridge goes last, after its ports.
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if name.starts_with(&prefix) && !name.ends_with("-br") {
            let _ = ip(&["link", "del", name]);
        }
    }
    let _ = ip(&["link", "del", &format!("{prefix}br")]);
}

/// Cleans up after crashed runs: every claim whose owner process is gone loses its namespaces
/// (and the processes in them), links and bridge, then its owner file. A claim is first renamed
/// to a name of our own, so that of several processes sweeping at once only one cleans a given
/// subnet, and nobody can claim it again before the cleaning is done.
fn sweep_abandoned_claims() {
    let Ok(dir) = std::fs::read_dir(OWNER_DIR) else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(subnet) = name
            .strip_prefix("tcn")
            .and_then(|n| n.strip_suffix(".pid"))
            .and_then(|n| n.parse::<u8>().ok())
        else {
            continue;
        };
        let owner = std::fs::read_to_string(entry.path())
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        if owner.is_none_or(pid_alive) {
            continue; // alive, or still being written by its owner
        }
        let sweeping = entry
            .path()
            .with_extension(format!("sweep-{}", std::process::id()));
        if std::fs::rename(entry.path(), &sweeping).is_ok() {
            remove_leftovers(subnet);
            let _ = std::fs::remove_file(&sweeping);
        }
    }
}

impl Netns {
    /// Claims a free subnet and makes its bridge, with `10.211.N.1/24` in the test's namespace.
    pub fn create() -> anyhow::Result<Netns> {
        // SAFETY: geteuid(2) cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        anyhow::ensure!(
            root,
            "network namespaces need root (CAP_NET_ADMIN): run this suite as root"
        );
        std::fs::create_dir_all(OWNER_DIR)?;
        sweep_abandoned_claims();
        let start = std::process::id() % 254;
        for i in 0..254u32 {
            let subnet = ((start + i) % 254 + 1) as u8;
            let owner_file = PathBuf::from(format!("{OWNER_DIR}/tcn{subnet}.pid"));
            let claim = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&owner_file);
            let Ok(mut f) = claim else {
                continue; // claimed by a live process
            };
            use std::io::Write;
            writeln!(f, "{}", std::process::id())?;
            drop(f);
            // Links of this name without a claim are orphans too.
            remove_leftovers(subnet);
            let cidr = format!("10.211.{subnet}.0/24");
            if !ip_output(&["-4", "route", "show", "to", "match", &cidr])
                .lines()
                .all(|l| l.starts_with("default"))
            {
                // Something else on this machine uses the subnet.
                let _ = std::fs::remove_file(&owner_file);
                continue;
            }
            let prefix = prefix_of(subnet);
            let n = Netns {
                subnet,
                bridge: format!("{prefix}br"),
                prefix,
                members: BTreeMap::new(),
                cuts: Default::default(),
                owner_file,
            };
            ip(&["link", "add", &n.bridge, "type", "bridge"])?;
            ip(&[
                "addr",
                "add",
                &format!("10.211.{subnet}.1/24"),
                "dev",
                &n.bridge,
            ])?;
            ip(&["link", "set", &n.bridge, "up"])?;
            return Ok(n);
        }
        anyhow::bail!("no free subnet 10.211.N.0/24 for network namespaces")
    }

    /// What every name this `Netns` gives its namespaces and links starts with (`tcnN-`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The test's own address on the bridge (where stock clients and the test connect from).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 211, self.subnet, 1)
    }

    /// Adds a host named `name` (short: it goes into interface names): a namespace with loopback
    /// up and `eth0` on the bridge at the next free address.
    pub fn add(&mut self, name: &str) -> anyhow::Result<Placement> {
        anyhow::ensure!(
            !self.members.contains_key(name),
            "host {name} already exists"
        );
        let host = Ipv4Addr::new(10, 211, self.subnet, 2 + self.members.len() as u8);
        let netns = format!("{}{name}", self.prefix);
        let outer = netns.clone();
        anyhow::ensure!(outer.len() <= 15, "interface name {outer} is too long");
        ip(&["netns", "add", &netns])?;
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", INNER_DEV, "netns", &netns,
        ])?;
        ip(&["link", "set", &outer, "master", &self.bridge, "up"])?;
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{host}/24"),
            "dev",
            INNER_DEV,
        ])?;
        ip(&["-n", &netns, "link", "set", INNER_DEV, "up"])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        let placement = Placement { netns, host };
        self.members.insert(
            name.to_string(),
            Member {
                placement: placement.clone(),
                outer,
            },
        );
        Ok(placement)
    }

    /// The placement of host `name`.
    pub fn placement(&self, name: &str) -> Option<&Placement> {
        self.members.get(name).map(|m| &m.placement)
    }

    fn member(&self, name: &str) -> anyhow::Result<&Member> {
        self.members
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("no host {name}"))
    }

    /// From now on every packet `from` sends to `to` is lost (`to`'s packets still reach
    /// `from`; TCP between them stalls all the same, as its acknowledgements are lost).
    pub fn cut_one_way(&mut self, from: &str, to: &str) -> anyhow::Result<()> {
        let (f, t) = (self.member(from)?, self.member(to)?);
        ip(&[
            "-n",
            &f.placement.netns,
            "neigh",
            "replace",
            &t.placement.host.to_string(),
            "lladdr",
            NOWHERE_MAC,
            "nud",
            "permanent",
            "dev",
            INNER_DEV,
        ])?;
        self.cuts.insert((from.to_string(), to.to_string()));
        Ok(())
    }

    /// Packets between `a` and `b` are lost both ways.
    pub fn cut(&mut self, a: &str, b: &str) -> anyhow::Result<()> {
        self.cut_one_way(a, b)?;
        self.cut_one_way(b, a)
    }

    /// Cuts `a` from each of `others`, both ways.
    pub fn isolate(&mut self, a: &str, others: &[&str]) -> anyhow::Result<()> {
        for b in others {
            self.cut(a, b)?;
        }
        Ok(())
    }

    /// Ends the cut from `from` to `to` (ARP finds `to` again).
    pub fn heal_one_way(&mut self, from: &str, to: &str) -> anyhow::Result<()> {
        let (f, t) = (self.member(from)?, self.member(to)?);
        ip(&[
            "-n",
            &f.placement.netns,
            "neigh",
            "del",
            &t.placement.host.to_string(),
            "dev",
            INNER_DEV,
        ])?;
        self.cuts.remove(&(from.to_string(), to.to_string()));
        Ok(())
    }

    /// Ends the cuts between `a` and `b`, both ways.
    pub fn heal(&mut self, a: &str, b: &str) -> anyhow::Result<()> {
        for (f, t) in [(a, b), (b, a)] {
            if self.cuts.contains(&(f.to_string(), t.to_string())) {
                self.heal_one_way(f, t)?;
            }
        }
        Ok(())
    }

    /// Ends every cut.
    pub fn heal_all(&mut self) -> anyhow::Result<()> {
        for (f, t) in self.cuts.clone() {
            self.heal_one_way(&f, &t)?;
        }
        Ok(())
    }

    /// The cuts in place, as (from, to) host names.
    pub fn cuts(&self) -> Vec<(String, String)> {
        self.cuts.iter().cloned().collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for m in self.members.values() {
            let _ = ip(&["netns", "del", &m.placement.netns]);
            // Gone with its namespace unless a process still holds that namespace.
            let _ = ip(&["link", "del", &m.outer]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
        let _ = std::fs::remove_file(&self.owner_file);
    }
}
