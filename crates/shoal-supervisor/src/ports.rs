//! Who holds a TCP port on this machine, read from `/proc`: which loopback address an
//! instance's own listener covers (the one address the probe and the router may connect to),
//! which other process holds an instance's port, and the kernel's ephemeral port range.
//!
//! An instance is reached on its port at one loopback address only. Accepting the port because
//! *some* listener on it is the instance's would let another local user listen on `127.0.0.1`
//! beside an app that listens on `[::1]` alone (Node's `listen(port, 'localhost')`) and receive
//! its traffic: the address is therefore chosen from the instance's own listeners, and a
//! connection counts only when the listener the kernel hands it to is the instance's.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::process;

/// The kernel's range of local ports for outgoing connections.
pub const EPHEMERAL_RANGE_FILE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// One TCP socket bound to a port, as `/proc/net/tcp` and `/proc/net/tcp6` list it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Socket {
    /// Its local address; an IPv4-mapped IPv6 address is given as the IPv4 address.
    pub local: SocketAddr,
    /// Whether it listens (rather than being one end of a connection).
    pub listening: bool,
    /// The socket's inode, by which `/proc/PID/fd` names it.
    pub inode: u64,
}

/// A listener on an instance's port, and whether the instance's process group holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub local: SocketAddr,
    pub owned: bool,
}

/// Where the instance can be reached on its port, as far as its listeners tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// At this loopback address, served by the instance's own listener.
    Own(SocketAddr),
    /// The instance listens on the port, but at no loopback address where its own listeners
    /// alone get the connections (another address, or one shared with another process).
    NotServed,
    /// Only other processes listen on the port.
    Foreign,
    /// Nothing listens on the port.
    Nothing,
}

/// The sockets bound to `port` (listening or connected; not those in `TIME_WAIT`, which hold
/// no process's file and do not keep a server from binding). `None` when `/proc` cannot tell.
pub fn sockets_on(port: u16) -> Option<Vec<Socket>> {
    Some(on_port(&read_tables()?, port))
}

fn on_port(sockets: &[Socket], port: u16) -> Vec<Socket> {
    sockets
        .iter()
        .filter(|s| s.local.port() == port && s.inode != 0)
        .cloned()
        .collect()
}

/// Every socket of the kernel's TCP tables. The kernel writes a line per socket on the
/// machine, so a read costs tenths of a second when there are tens of thousands. The tables
/// are read a line at a time: a machine that has just made a hundred thousand connections
/// lists them all (mostly in `TIME_WAIT`), megabytes of text that probes on several threads
/// would otherwise each hold at once, and that the allocator keeps for the process's life.
fn read_tables() -> Option<Vec<Socket>> {
    use std::io::BufRead;
    let mut sockets = Vec::new();
    let mut readable = false;
    let mut line = String::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(file) = std::fs::File::open(table) else {
            continue;
        };
        readable = true;
        let mut reader = std::io::BufReader::with_capacity(16 * 1024, file);
        // The first line names the columns.
        let mut first = true;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if first => first = false,
                Ok(_) => sockets.extend(parse_line(&line)),
            }
        }
    }
    readable.then_some(sockets)
}

/// How old a reading of the tables may be for a readiness probe that finds nothing to connect
/// to yet: booting instances share one reading instead of each making its own.
pub const RECENT: Duration = Duration::from_millis(200);

/// The last reading of the tables, shared by every probe, and when each port was last looked
/// at through a shared reading.
struct Shared {
    reading: Option<Reading>,
    looked: BTreeMap<u16, Instant>,
}

/// A reading of the tables: when it began and ended, and the sockets.
struct Reading {
    began: Instant,
    ended: Instant,
    sockets: Arc<Vec<Socket>>,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared {
    reading: None,
    looked: BTreeMap::new(),
});

/// Whether `reading` may answer a look at a port begun at `look`, whose previous look began
/// at `previous`: when it ended at most [`RECENT`] before the look, and began after the
/// previous look. So a listener that was there at one look is seen at the next — an instance
/// is ready at the first probe after it listens, as when every probe read the tables itself
/// (a reading reused for up to 200 ms made every start about 0.2 s slower) — and a reading
/// still serves every booting instance that looked before it began.
fn reusable(reading: &Reading, previous: Option<Instant>, look: Instant) -> bool {
    look.saturating_duration_since(reading.ended) <= RECENT
        && previous.is_none_or(|p| reading.began >= p)
}

/// A reading of the tables for a look at `port` (see [`reusable`]). Readers wait for one
/// another, so at most one reading is made at a time; a look counts from before it waits, so
/// the reading it waited for serves it when that reading began after its previous look.
fn recent_tables(port: u16) -> Option<Arc<Vec<Socket>>> {
    let look = Instant::now();
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    let previous = shared.looked.insert(port, look);
    // Ports of instances long gone (or ready) are forgotten.
    shared
        .looked
        .retain(|_, at| look.saturating_duration_since(*at) < Duration::from_secs(60));
    if let Some(reading) = shared.reading.as_ref()
        && reusable(reading, previous, look)
    {
        return Some(reading.sockets.clone());
    }
    let began = Instant::now();
    let sockets = Arc::new(read_tables()?);
    shared.reading = Some(Reading {
        began,
        ended: Instant::now(),
        sockets: sockets.clone(),
    });
    Some(sockets)
}

/// The sockets of a `/proc/net/tcp` or `/proc/net/tcp6` table (`read_tables` parses the
/// kernel's a line at a time).
#[cfg(test)]
fn parse_table(text: &str) -> Vec<Socket> {
    text.lines().skip(1).filter_map(parse_line).collect()
}

/// One line of a table: the socket, unless it is in `TIME_WAIT` or the line is not one.
fn parse_line(line: &str) -> Option<Socket> {
    const LISTEN: &str = "0A";
    const TIME_WAIT: &str = "06";
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
    let mut fields = line.split_whitespace();
    let local = fields.nth(1)?;
    let state = fields.nth(1)?;
    if state == TIME_WAIT {
        return None;
    }
    let inode = fields.nth(5)?;
    Some(Socket {
        local: parse_address(local)?,
        listening: state == LISTEN,
        inode: inode.parse().ok()?,
    })
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): each group of 8 digits is a
/// 32-bit word in the kernel's byte order.
fn parse_address(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            let v6 = Ipv6Addr::from(bytes);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The listeners on `port`, each marked with whether process group `pgid` holds it. `None`
/// when `/proc` cannot tell.
pub fn listeners(port: u16, pgid: u32) -> Option<Vec<Listener>> {
    owned_listeners(sockets_on(port)?, pgid)
}

/// [`listeners`] from a reading of the tables shared with other probes: ended at most
/// [`RECENT`] ago, and begun after the previous look at `port` (see [`reusable`]).
pub fn recent_listeners(port: u16, pgid: u32) -> Option<Vec<Listener>> {
    owned_listeners(on_port(&recent_tables(port)?, port), pgid)
}

fn owned_listeners(sockets: Vec<Socket>, pgid: u32) -> Option<Vec<Listener>> {
    let listening: Vec<&Socket> = sockets.iter().filter(|s| s.listening).collect();
    let owned = if listening.is_empty() {
        HashSet::new()
    } else {
        inodes_held_by(&process::group_members(pgid))
    };
    Some(
        listening
            .iter()
            .map(|s| Listener {
                local: s.local,
                owned: owned.contains(&s.inode),
            })
            .collect(),
    )
}

/// Where a connection to `port` on the loopback interface reaches the owner of the listeners
/// marked `owned`: `127.0.0.1` first, then `[::1]`, then another loopback address an owned
/// listener is bound to.
pub fn reach(listeners: &[Listener], port: u16) -> Reach {
    if listeners.is_empty() {
        return Reach::Nothing;
    }
    let mut candidates = vec![
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
    ];
    candidates.extend(
        listeners
            .iter()
            .filter(|l| l.owned && l.local.ip().is_loopback())
            .map(|l| l.local),
    );
    if let Some(addr) = candidates.into_iter().find(|&a| serves(listeners, a)) {
        return Reach::Own(addr);
    }
    if listeners.iter().any(|l| l.owned) {
        Reach::NotServed
    } else {
        Reach::Foreign
    }
}

/// Whether a connection to `reached` is handed to an owned listener. The kernel gives it to a
/// listener bound to exactly that address before one bound to the wildcard address of its
/// family; listeners sharing the port (`SO_REUSEPORT`) get connections in turn, so every
/// listener of the most specific kind must be owned. An IPv6 wildcard listener counts for
/// `[::1]` only: whether it also takes IPv4 (`IPV6_V6ONLY`) is not in `/proc`.
pub fn serves(listeners: &[Listener], reached: SocketAddr) -> bool {
    let rank = |l: &Listener| -> Option<u8> {
        if l.local.port() != reached.port() {
            return None;
        }
        let ip = l.local.ip();
        if ip == reached.ip() {
            Some(2)
        } else if ip.is_unspecified() && ip.is_ipv4() == reached.is_ipv4() {
            Some(1)
        } else {
            None
        }
    };
    let Some(best) = listeners.iter().filter_map(rank).max() else {
        return false;
    };
    listeners
        .iter()
        .filter(|l| rank(l) == Some(best))
        .all(|l| l.owned)
}

/// Another process that holds a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub port: u16,
    /// The process, when `/proc` shows it (another user's processes are hidden from non-root).
    pub pid: Option<u32>,
    /// Its command name (`/proc/PID/comm`).
    pub command: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "port {} is in use by another process", self.port)?;
        match (self.pid, &self.command) {
            (Some(pid), Some(command)) => write!(f, " (pid {pid}, `{command}`)"),
            (Some(pid), None) => write!(f, " (pid {pid})"),
            _ => Ok(()),
        }
    }
}

/// Whether another socket holds `port` so that an instance could not listen on it: a bind
/// at 127.0.0.1 fails (with `SO_REUSEADDR`, as servers bind, so a connection in `TIME_WAIT`
/// does not count). One system call, where [`holder`] reads every process's descriptors.
pub fn in_use(port: u16) -> bool {
    matches!(
        std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)),
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse
    )
}

/// Who holds `port` (a listener, or a connection that was given it as its local port), when
/// anybody does. Meant for a port no instance holds at the moment: before it starts, or after
/// its process group is gone.
pub fn holder(port: u16) -> Option<Holder> {
    let sockets = sockets_on(port)?;
    if sockets.is_empty() {
        return None;
    }
    let inodes: HashSet<u64> = sockets.iter().map(|s| s.inode).collect();
    let pid = all_pids()
        .into_iter()
        .find(|&pid| !inodes_held_by(&[pid]).is_disjoint(&inodes));
    let command = pid.and_then(|pid| {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        Some(comm.trim_end().to_owned())
    });
    Some(Holder { port, pid, command })
}

/// The socket inodes the processes `pids` have open (those whose `/proc/PID/fd` is readable).
fn inodes_held_by(pids: &[u32]) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
            {
                inodes.insert(inode);
            }
        }
    }
    inodes
}

fn all_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The kernel's ephemeral port range, from [`EPHEMERAL_RANGE_FILE`].
pub fn ephemeral_range() -> Option<RangeInclusive<u16>> {
    parse_range(&std::fs::read_to_string(EPHEMERAL_RANGE_FILE).ok()?)
}

/// `32768\t60999` as a range.
pub fn parse_range(text: &str) -> Option<RangeInclusive<u16>> {
    let mut bounds = text.split_whitespace().map(|n| n.parse::<u16>().ok());
    let (Some(Some(low)), Some(Some(high))) = (bounds.next(), bounds.next()) else {
        return None;
    };
    (low <= high).then_some(low..=high)
}

/// The warning for `plan`'s instance ports that lie in this machine's ephemeral port range,
/// or `None` when none do (or the range cannot be read).
pub fn ephemeral_warning_for(plan: &shoal_procfile::Plan) -> Option<String> {
    let range = ephemeral_range()?;
    let instances: Vec<(String, u16)> = plan
        .instances()
        .into_iter()
        .map(|i| (i.name.to_string(), i.port))
        .collect();
    ephemeral_warning(&instances, plan.port, &range)
}

/// The warning for instance ports that lie in the ephemeral `range`, or `None` when none do.
/// `instances` are `(name, port)`; `base` is the formation's port (`-p`), from which the
/// instance ports are laid out.
pub fn ephemeral_warning(
    instances: &[(String, u16)],
    base: u16,
    range: &RangeInclusive<u16>,
) -> Option<String> {
    let inside: Vec<&(String, u16)> = instances
        .iter()
        .filter(|(_, port)| range.contains(port))
        .collect();
    if inside.is_empty() {
        return None;
    }
    const SHOWN: usize = 4;
    let mut listed: Vec<String> = inside
        .iter()
        .take(SHOWN)
        .map(|(name, port)| format!("{port} ({name})"))
        .collect();
    if inside.len() > SHOWN {
        listed.push(format!("and {} more", inside.len() - SHOWN));
    }
    let plural = if inside.len() == 1 { "" } else { "s" };
    let mut text = format!(
        "instance port{plural} {} lie{} in the kernel's ephemeral port range {}-{} (`{EPHEMERAL_RANGE_FILE}`): any outgoing connection on this machine may be given such a port, and the instance then cannot listen on it",
        listed.join(", "),
        if inside.len() == 1 { "s" } else { "" },
        range.start(),
        range.end(),
    );
    // The highest offset from the formation's port decides how high `-p` may go.
    let span = instances
        .iter()
        .map(|(_, port)| port.saturating_sub(base))
        .max()
        .unwrap_or(0);
    match range.start().checked_sub(1 + span) {
        Some(highest) if highest > 0 => text.push_str(&format!(
            "; choose a port below the range, e.g. `-p {}` (at most `-p {highest}` keeps every instance below {})",
            5000.min(highest),
            range.start()
        )),
        _ => text.push_str("; choose a port (`-p`) above the range"),
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_reading_serves_a_look_only_when_begun_since_the_ports_previous_look() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let reading = |began: u64, ended: u64| Reading {
            began: ms(began),
            ended: ms(ended),
            sockets: Arc::new(Vec::new()),
        };
        // A port's first look takes any recent reading.
        assert!(reusable(&reading(0, 5), None, ms(150)));
        assert!(!reusable(&reading(0, 5), None, ms(250)));
        // A reading begun before the previous look may not show what listens since: it is
        // not reused, however recent, so a listener is seen at the first look after it
        // appears.
        assert!(!reusable(&reading(10, 15), Some(ms(30)), ms(70)));
        assert!(reusable(&reading(40, 45), Some(ms(30)), ms(70)));
        assert!(reusable(&reading(30, 35), Some(ms(30)), ms(70)));
        assert!(!reusable(&reading(40, 45), Some(ms(30)), ms(300)));
        // A slow reading (many sockets) that a look waited for serves it: its age counts from
        // its end.
        assert!(reusable(&reading(100, 400), Some(ms(50)), ms(350)));
    }

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4243 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F91 0100007F:D432 06 00000000:00000000 03:00000DE2 00000000     0        0 0 3 0000000000000000
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 77 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F92 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 78 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn tables_are_parsed_in_the_kernels_byte_order() {
        let v4 = parse_table(TCP);
        assert_eq!(
            v4,
            [
                Socket {
                    local: "127.0.0.1:8080".parse().unwrap(),
                    listening: true,
                    inode: 4242
                },
                Socket {
                    local: "127.0.0.1:8080".parse().unwrap(),
                    listening: false,
                    inode: 4243
                },
            ]
        );
        let v6 = parse_table(TCP6);
        assert_eq!(v6[0].local, "[::1]:8080".parse().unwrap());
        // A v4-mapped listener takes IPv4 connections to its address.
        assert_eq!(v6[1].local, "127.0.0.1:8082".parse().unwrap());
    }

    fn listener(addr: &str, owned: bool) -> Listener {
        Listener {
            local: addr.parse().unwrap(),
            owned,
        }
    }

    #[test]
    fn the_instance_is_reached_where_its_own_listener_serves() {
        let v4 = |p| SocketAddr::from((Ipv4Addr::LOCALHOST, p));
        let v6 = |p| SocketAddr::from((Ipv6Addr::LOCALHOST, p));
        // The attack: the app on [::1] only, another user on 127.0.0.1.
        let hijacked = [listener("[::1]:80", true), listener("127.0.0.1:80", false)];
        assert_eq!(reach(&hijacked, 80), Reach::Own(v6(80)));
        assert!(!serves(&hijacked, v4(80)));
        assert_eq!(
            reach(&[listener("0.0.0.0:80", true)], 80),
            Reach::Own(v4(80))
        );
        assert_eq!(reach(&[listener("[::]:80", true)], 80), Reach::Own(v6(80)));
        assert_eq!(
            reach(
                &[listener("[::]:80", true), listener("127.0.0.1:80", false)],
                80
            ),
            Reach::Own(v6(80))
        );
        assert_eq!(
            reach(&[listener("127.0.0.2:80", true)], 80),
            Reach::Own("127.0.0.2:80".parse().unwrap())
        );
        // Sharing the address with another process's listener is not being served by the app.
        assert_eq!(
            reach(
                &[
                    listener("127.0.0.1:80", true),
                    listener("127.0.0.1:80", false)
                ],
                80
            ),
            Reach::NotServed
        );
        assert_eq!(
            reach(&[listener("10.1.2.3:80", true)], 80),
            Reach::NotServed
        );
        assert_eq!(
            reach(&[listener("127.0.0.1:80", false)], 80),
            Reach::Foreign
        );
        assert_eq!(reach(&[], 80), Reach::Nothing);
    }

    #[test]
    fn ephemeral_ports_are_named_with_a_way_out() {
        let range = parse_range("32768\t60999\n").unwrap();
        let instances = [
            ("web.1".to_owned(), 34679),
            ("web.2".to_owned(), 34680),
            ("worker.1".to_owned(), 34779),
        ];
        let text = ephemeral_warning(&instances, 34579, &range).unwrap();
        assert!(text.starts_with(
            "instance ports 34679 (web.1), 34680 (web.2), 34779 (worker.1) lie in the kernel's ephemeral port range 32768-60999"
        ), "{text}");
        assert!(text.contains("`-p 5000`"), "{text}");
        assert!(text.contains("at most `-p 32567`"), "{text}");
        let below = [("web.1".to_owned(), 5100)];
        assert_eq!(ephemeral_warning(&below, 5000, &range), None);
        assert_eq!(parse_range("garbage"), None);
    }
}
