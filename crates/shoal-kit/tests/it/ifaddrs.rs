//! This machine's own IPv4 addresses outside loopback, to show what a socket is not bound to
//! without sending anything to them.

use std::net::Ipv4Addr;

/// Every non-loopback IPv4 address of this machine's interfaces (none on a machine with
/// loopback only).
pub(crate) fn non_loopback_v4() -> Vec<Ipv4Addr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list it allocates, freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut at = list;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*at };
        // SAFETY: a non-null `ifa_addr` points at a sockaddr whose family says its real type.
        if !entry.ifa_addr.is_null()
            && i32::from(unsafe { (*entry.ifa_addr).sa_family }) == libc::AF_INET
        {
            // SAFETY: the family is AF_INET, so the address is a sockaddr_in.
            let v4 = unsafe { &*entry.ifa_addr.cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            if !ip.is_loopback() && !ip.is_unspecified() && !found.contains(&ip) {
                found.push(ip);
            }
        }
        at = entry.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found
}

/// Whether another socket can be bound to `ip:port`: it cannot while a listener on every
/// interface (`0.0.0.0:port`) holds the port, so `true` shows that the port's listener is not
/// reachable at `ip`. Nothing is sent: binding is local to this machine.
pub(crate) fn port_free_at(ip: Ipv4Addr, port: u16) -> bool {
    std::net::TcpListener::bind((ip, port)).is_ok()
}
