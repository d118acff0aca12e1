//! Whether a host port is free for the engine to publish on, and when it is not, who holds it.
//!
//! The engine publishes a port on IPv4 and IPv6 (`0.0.0.0:P` and `[::]:P`), so a listener on
//! either, even one on `[::1]` alone, makes `docker compose up` fail with `bind: address already
//! in use`. The holder is found the way `ss -p` finds it: the listening socket's inode in
//! `/proc/net/tcp{,6}`, then the process with that socket among its file descriptors.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

/// `None` when the port can be published; else what holds it, as a person reads it
/// (`pid 42 (python3) listens on [::1]:8000`).
pub fn taken(port: u16) -> Option<String> {
    // One at a time: a dual-stack [::] socket would collide with the IPv4 probe itself. Only
    // "in use" counts: a host without IPv6 refuses the [::] bind for another reason. Each probe
    // is closed before the next and before the holder is looked for.
    let in_use = |ip: IpAddr| matches!(TcpListener::bind((ip, port)), Err(e) if e.kind() == ErrorKind::AddrInUse);
    if !in_use(Ipv4Addr::UNSPECIFIED.into()) && !in_use(Ipv6Addr::UNSPECIFIED.into()) {
        return None;
    }
    Some(holder(port).unwrap_or_else(|| "by a process this user cannot see".to_string()))
}

/// Who listens on a TCP port of this network namespace: `pid N (NAME) listens on ADDRESS`, with
/// a hint when it is the engine's proxy for a container.
pub fn holder(port: u16) -> Option<String> {
    let (address, inode) = listeners()
        .into_iter()
        .find(|(address, _)| address.port() == port)?;
    let Some((pid, name)) = process_of(inode) else {
        return Some(format!("something listens on {address}"));
    };
    let hint = match name.as_str() {
        "docker-proxy" => format!(" for a container: `docker ps --filter publish={port}` names it"),
        _ => String::new(),
    };
    Some(format!("pid {pid} ({name}) listens on {address}{hint}"))
}

/// Every listening TCP socket: its local address and its inode.
fn listeners() -> Vec<(SocketAddr, u64)> {
    let mut found = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        found.extend(text.lines().skip(1).filter_map(|l| parse_line(l, v6)));
    }
    found
}

/// One line of `/proc/net/tcp{,6}`: `sl local rem st ... uid timeout inode`, addresses in hex
/// (each 32-bit word in host order), state 0A for LISTEN.
fn parse_line(line: &str, v6: bool) -> Option<(SocketAddr, u64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(3) != Some(&"0A") {
        return None;
    }
    let (ip, port) = fields.get(1)?.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<[u8; 4]> = (0..ip.len() / 8)
        .map(|i| {
            u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16)
                .ok()
                .map(u32::to_le_bytes)
        })
        .collect::<Option<_>>()?;
    let ip = match (v6, words.as_slice()) {
        (false, [w]) => IpAddr::V4(Ipv4Addr::from(*w)),
        (true, [a, b, c, d]) => {
            let mut bytes = [0u8; 16];
            for (i, w) in [a, b, c, d].iter().enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(*w);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    let inode = fields.get(9)?.parse().ok()?;
    Some((SocketAddr::new(ip, port), inode))
}

/// The process that holds a socket inode, and its name.
fn process_of(inode: u64) -> Option<(u32, String)> {
    let target = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .map(|l| l.as_os_str() == target.as_str())
                .unwrap_or(false)
        });
        if holds {
            let name = std::fs::read_to_string(entry.path().join("comm"))
                .map(|n| n.trim().to_string())
                .unwrap_or_default();
            return Some((pid, name));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_lines_are_read_for_both_families() {
        let v4 = "   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_line(v4, false),
            Some(("127.0.0.1:8000".parse().unwrap(), 12345))
        );
        let v6 = "   0: 00000000000000000000000001000000:1F40 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_line(v6, true),
            Some(("[::1]:8000".parse().unwrap(), 777))
        );
        // Not listening (01 is ESTABLISHED).
        assert_eq!(parse_line(&v4.replace(" 0A ", " 01 "), false), None);
    }

    #[test]
    fn an_ipv6_only_listener_is_found_with_its_process() {
        let Ok(listener) = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) else {
            return; // no IPv6 on this host: nothing to hold
        };
        let port = listener.local_addr().unwrap().port();
        let held = taken(port).expect("the port is taken");
        assert!(
            held.contains(&format!("pid {}", std::process::id())),
            "{held}"
        );
        assert!(held.contains(&format!("[::1]:{port}")), "{held}");
        drop(listener);
        assert_eq!(taken(port), None);
    }
}
