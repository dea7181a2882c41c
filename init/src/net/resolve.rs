//! Host names to addresses for ping and netcat, failing at once where
//! waiting cannot help: a word that only looks like an address, a word that
//! cannot be a host name, or a name when no nameserver is configured (the C
//! libraries then ask 127.0.0.1, and musl waits out its whole timeout for
//! an answer that cannot come). /etc/hosts is honoured either way.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::ops::ControlFlow;
use std::path::Path;

use crate::util::{for_each_line, LineError};

const RESOLV_CONF: &str = "/etc/resolv.conf";
const HOSTS: &str = "/etc/hosts";

/// Longest line and most lines read from /etc/resolv.conf or /etc/hosts:
/// far beyond real files, and an end for a file that is not one.
const MAX_LINE: usize = 4096;
const MAX_LINES: usize = 100_000;

/// Digits and dots only, with a dot: meant as an IPv4 address, never a name
/// worth asking DNS about (a top-level domain is never all digits).
fn looks_like_ipv4(word: &str) -> bool {
    word.contains('.') && word.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Whether `word` can be a host name: dot-separated labels of letters,
/// digits, `-` and `_`, each 1-63 bytes, 253 in all (a final dot allowed).
fn is_host_name(word: &str) -> bool {
    let name = word.strip_suffix('.').unwrap_or(word);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Whether resolv.conf names a nameserver a resolver could ask.
fn has_nameserver(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut found = false;
    // A resolv.conf that cannot be read to its end counts as none: the C
    // library would not get a nameserver out of it either.
    let read = for_each_line(std::io::BufReader::new(file), MAX_LINE, MAX_LINES, |line| {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver")
            && words
                .next()
                .and_then(|a| a.split('%').next())
                .is_some_and(|a| a.parse::<IpAddr>().is_ok())
        {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found && read.is_ok()
}

/// Why a host could not be turned into addresses.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{}: {}", .path.display(), crate::util::io_error(.error))]
    Hosts {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {error}", .path.display())]
    HostsLines {
        path: std::path::PathBuf,
        error: LineError,
    },
    #[error("{0}: not an IPv4 address (four numbers 0-255 separated by dots)")]
    BadIpv4(String),
    #[error("{0}: not a host name or address")]
    NotAName(String),
    #[error("{host}: unknown host (not in {hosts}, and {resolv_conf} names no nameserver)")]
    NotInHosts {
        host: String,
        hosts: String,
        resolv_conf: String,
    },
    #[error("{0}: unknown host")]
    Unknown(String),
}

/// The addresses /etc/hosts gives `name`, in the file's order (entries
/// with an IPv6 `%scope` are skipped: ping and netcat take `ADDR%IF`).
fn hosts_lookup(path: &Path, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(ResolveError::Hosts {
                path: path.to_path_buf(),
                error,
            })
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut found = Vec::new();
    for_each_line(std::io::BufReader::new(file), MAX_LINE, MAX_LINES, |line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if let Some(Ok(addr)) = words.next().map(str::parse::<IpAddr>) {
            if words.any(|w| w.eq_ignore_ascii_case(name)) && !found.contains(&addr) {
                found.push(addr);
            }
        }
        ControlFlow::Continue(())
    })
    .map_err(|error: LineError| ResolveError::HostsLines {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(found)
}

/// `localhost` and names under it are the loopback addresses (RFC 6761),
/// also on an initrd without /etc/hosts.
fn is_localhost(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// HOST (an address or a name) as socket addresses with `port`, in the
/// order to try them. Blocks while a configured nameserver answers (the C
/// library's own timeout ends that); everything else answers at once.
pub fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
    lookup_with(host, port, Path::new(RESOLV_CONF), Path::new(HOSTS))
}

fn lookup_with(
    host: &str,
    port: u16,
    resolv_conf: &Path,
    hosts: &Path,
) -> Result<Vec<SocketAddr>, ResolveError> {
    if let Ok(addr) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(addr, port)]);
    }
    if looks_like_ipv4(host) {
        return Err(ResolveError::BadIpv4(host.to_string()));
    }
    if !is_host_name(host) {
        return Err(ResolveError::NotAName(host.to_string()));
    }
    if !has_nameserver(resolv_conf) {
        let mut addrs = hosts_lookup(hosts, host)?;
        if addrs.is_empty() && is_localhost(host) {
            addrs = vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
        }
        if addrs.is_empty() {
            return Err(ResolveError::NotInHosts {
                host: host.to_string(),
                hosts: hosts.display().to_string(),
                resolv_conf: resolv_conf.display().to_string(),
            });
        }
        return Ok(addrs
            .into_iter()
            .map(|a| SocketAddr::new(a, port))
            .collect());
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|_| ResolveError::Unknown(host.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(ResolveError::Unknown(host.to_string()));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_look_alikes_and_bad_names_are_told_apart_from_names() {
        assert!(looks_like_ipv4("300.1.1.1"));
        assert!(looks_like_ipv4("10.1"));
        assert!(!looks_like_ipv4("host1.example"));
        assert!(!looks_like_ipv4("12345"));
        assert!(is_host_name("vm"));
        assert!(is_host_name("a-b_c.example."));
        assert!(!is_host_name("d/x"));
        assert!(!is_host_name("a..b"));
        assert!(!is_host_name(""));
        assert!(!is_host_name(&"a".repeat(64)));
    }

    #[test]
    fn without_a_nameserver_only_hosts_and_localhost_answer() {
        let dir = std::env::temp_dir().join(format!("myinit-resolve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (resolv, hosts) = (dir.join("resolv.conf"), dir.join("hosts"));
        std::fs::write(&resolv, "# none\nsearch example\n").unwrap();
        std::fs::write(
            &hosts,
            "10.9.9.9  box box.lan # comment\nfe80::1%lo scoped\n2001:db8::9 box\n",
        )
        .unwrap();
        assert!(!has_nameserver(&resolv));
        assert_eq!(
            lookup_with("BOX", 7, &resolv, &hosts).unwrap(),
            vec![
                "10.9.9.9:7".parse().unwrap(),
                "[2001:db8::9]:7".parse().unwrap()
            ]
        );
        assert!(lookup_with("scoped", 7, &resolv, &hosts).is_err());
        assert!(lookup_with("localhost", 7, &resolv, &hosts).unwrap()[0]
            .ip()
            .is_loopback());
        let err = lookup_with("elsewhere", 7, &resolv, &hosts).unwrap_err();
        assert!(err.to_string().contains("names no nameserver"), "{err}");
        std::fs::write(&resolv, "nameserver 10.255.0.53\n").unwrap();
        assert!(has_nameserver(&resolv));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
