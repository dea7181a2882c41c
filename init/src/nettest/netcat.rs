//! netcat: copy stdin to a TCP or UDP peer and what the peer sends to the
//! command's output, connecting or listening for one peer.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::util::io_error;

#[derive(Clone, Debug)]
pub struct Options {
    pub listen: bool,
    pub udp: bool,
    pub verbose: bool,
    /// `-w`: connect timeout and idle timeout.
    pub wait: Option<Duration>,
    /// The peer (connect) or the local address to bind (listen).
    pub host: Option<String>,
    pub port: u16,
}

/// How a run ended without an error.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Interrupted,
}

/// An address as -v prints it: IPv4-mapped IPv6 as plain IPv4, and
/// IPv6 in brackets.
fn show(addr: SocketAddr) -> String {
    match addr.ip().to_canonical() {
        IpAddr::V4(a) => format!("{a} port {}", addr.port()),
        IpAddr::V6(a) => format!("[{a}] port {}", addr.port()),
    }
}

fn proto(udp: bool) -> &'static str {
    if udp {
        "udp"
    } else {
        "tcp"
    }
}

/// Parses a port number (1-65535).
pub fn parse_port(text: &str) -> Option<u16> {
    text.parse::<u16>().ok().filter(|&p| p != 0)
}

/// HOST as addresses: an IP literal (IPv6 may carry `%IF`) or a name the
/// system resolves (all its addresses, tried in order).
pub async fn resolve(host: &str, port: u16) -> anyhow::Result<Vec<SocketAddr>> {
    if host.contains('%') || host.parse::<IpAddr>().is_ok() {
        let target = super::ping::resolve(host, None, None)?;
        return Ok(vec![match target.addr {
            IpAddr::V4(a) => SocketAddr::from((a, port)),
            IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, port, 0, target.scope_id)),
        }]);
    }
    // getaddrinfo blocks: it runs off the runtime's workers.
    let host = host.to_string();
    tokio::task::spawn_blocking(move || crate::net::resolve::lookup(&host, port))
        .await
        .map_err(|e| anyhow!("name lookup: {e}"))?
        .map_err(Into::into)
}

/// Reads the command's stdin on a thread of its own: a console or a file
/// cannot be read asynchronously in general. The thread polls with a short
/// timeout so that it stops soon after netcat ends, instead of swallowing
/// the next line typed at the shell.
struct StdinReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl StdinReader {
    fn spawn(mut file: File) -> Self {
        let (tx, rx) = mpsc::channel(4);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            while !stopped.load(Ordering::Relaxed) {
                let mut fds = [nix::poll::PollFd::new(
                    file.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)) {
                    Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e.into()));
                        return;
                    }
                }
                match file.read(&mut buf) {
                    // Dropping the sender tells the reader: end of input.
                    Ok(0) => return,
                    Ok(n) => {
                        if tx.blocking_send(Ok(buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        StdinReader { rx, stop }
    }

    /// The next chunk; None at end of input.
    async fn next(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        match self.rx.recv().await {
            Some(Ok(chunk)) => Ok(Some(chunk)),
            Some(Err(e)) => Err(anyhow!("stdin: {}", io_error(&e))),
            None => Ok(None),
        }
    }
}

impl Drop for StdinReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Resolves when nothing has moved for `wait` (never without -w).
async fn idle(last: &Cell<Instant>, wait: Option<Duration>) {
    let Some(wait) = wait else {
        return std::future::pending().await;
    };
    loop {
        let deadline = last.get() + wait;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

fn write_out<W: Write>(out: &mut W, data: &[u8]) -> anyhow::Result<()> {
    out.write_all(data)?;
    // Partial lines (prompts, binary data) should show up now, not at the end.
    out.flush()?;
    Ok(())
}

/// Runs netcat until the transfer ends, -w idle time passes or Ctrl-C.
pub async fn run<W: Write>(
    options: &Options,
    stdin: File,
    out: &mut W,
    mut interrupts: watch::Receiver<u64>,
) -> anyhow::Result<Outcome> {
    let mut stdin = StdinReader::spawn(stdin);
    let work = async {
        match (options.listen, options.udp) {
            (false, false) => {
                let stream = connect_tcp(options).await?;
                transfer_tcp(stream, &mut stdin, out, options).await
            }
            (true, false) => {
                let stream = accept_tcp(options).await?;
                transfer_tcp(stream, &mut stdin, out, options).await
            }
            (false, true) => {
                let socket = connect_udp(options).await?;
                transfer_udp(socket, &mut stdin, out, options.wait).await
            }
            (true, true) => {
                let socket = listen_udp(options, out).await?;
                transfer_udp(socket, &mut stdin, out, options.wait).await
            }
        }
    };
    tokio::select! {
        r = work => r.map(|()| Outcome::Done),
        _ = interrupts.changed() => Ok(Outcome::Interrupted),
    }
}

async fn connect_tcp(options: &Options) -> anyhow::Result<TcpStream> {
    let host = options.host.as_deref().unwrap_or("localhost");
    let addrs = resolve(host, options.port).await?;
    let mut last_error = None;
    for addr in &addrs {
        let attempt = TcpStream::connect(addr);
        let result = match options.wait {
            Some(wait) => match tokio::time::timeout(wait, attempt).await {
                Ok(r) => r,
                Err(_) => {
                    last_error = Some(anyhow!(
                        "connect to {} port {} (tcp): timed out after {}s",
                        addr.ip(),
                        addr.port(),
                        wait.as_secs_f64()
                    ));
                    continue;
                }
            },
            None => attempt.await,
        };
        match result {
            Ok(stream) => {
                if options.verbose {
                    eprintln!("netcat: connected to {} (tcp)", show(*addr));
                }
                return Ok(stream);
            }
            Err(e) => {
                last_error = Some(anyhow!(
                    "connect to {} port {} (tcp): {}",
                    addr.ip(),
                    addr.port(),
                    io_error(&e)
                ))
            }
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow!("{host}: unknown host")))
}

/// A bound socket for listening: HOST's address, or every address of both
/// families (`[::]` accepting IPv4 too) without HOST.
async fn bind_listener(options: &Options) -> anyhow::Result<(Socket, SocketAddr)> {
    let ty = if options.udp {
        Type::DGRAM
    } else {
        Type::STREAM
    };
    let candidates = match &options.host {
        Some(host) => resolve(host, options.port).await?,
        None => vec![
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, options.port)),
            SocketAddr::from(([0, 0, 0, 0], options.port)),
        ],
    };
    let mut last_error = None;
    for addr in candidates {
        let attempt = (|| -> io::Result<Socket> {
            let socket = Socket::new(Domain::for_address(addr), ty, None)?;
            if addr.is_ipv6() && addr.ip().is_unspecified() {
                socket.set_only_v6(false)?;
            }
            socket.set_reuse_address(true)?;
            socket.bind(&addr.into())?;
            if !options.udp {
                socket.listen(1)?;
            }
            socket.set_nonblocking(true)?;
            Ok(socket)
        })();
        match attempt {
            Ok(socket) => return Ok((socket, addr)),
            Err(e) => {
                last_error = Some(anyhow!(
                    "cannot listen on {} port {} ({}): {}",
                    addr.ip(),
                    addr.port(),
                    proto(options.udp),
                    io_error(&e)
                ))
            }
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow!("nothing to listen on")))
}

/// Waits for the first peer (a connection, or a datagram), for at most
/// -w: a listener nobody comes to must not wait forever in a script.
async fn first_peer<T>(
    options: &Options,
    addr: SocketAddr,
    arrival: impl std::future::Future<Output = T>,
) -> anyhow::Result<T> {
    let Some(wait) = options.wait else {
        return Ok(arrival.await);
    };
    tokio::time::timeout(wait, arrival).await.map_err(|_| {
        anyhow!(
            "no {} on port {} within {}s (-w)",
            if options.udp {
                "datagram"
            } else {
                "connection"
            },
            addr.port(),
            wait.as_secs_f64()
        )
    })
}

async fn accept_tcp(options: &Options) -> anyhow::Result<TcpStream> {
    let (socket, addr) = bind_listener(options).await?;
    let listener = TcpListener::from_std(socket.into())?;
    if options.verbose {
        eprintln!("netcat: listening on {} (tcp)", show(addr));
    }
    let (stream, peer) = first_peer(options, addr, listener.accept())
        .await?
        .map_err(|e| anyhow!("accept: {}", io_error(&e)))?;
    if options.verbose {
        eprintln!("netcat: connection from {} (tcp)", show(peer));
    }
    // One connection only: stop listening so others are refused.
    drop(listener);
    Ok(stream)
}

async fn transfer_tcp<W: Write>(
    stream: TcpStream,
    stdin: &mut StdinReader,
    out: &mut W,
    options: &Options,
) -> anyhow::Result<()> {
    let (wait, verbose) = (options.wait, options.verbose);
    let (mut rd, mut wr) = stream.into_split();
    let last = Cell::new(Instant::now());
    let peer_done = Cell::new(false);
    let sender = async {
        while let Some(chunk) = stdin.next().await? {
            if let Err(e) = wr.write_all(&chunk).await {
                // The peer closed its side and then the connection: a
                // normal end of a session, not a failure.
                if peer_done.get() {
                    return Ok(());
                }
                return Err(anyhow!("send: {}", io_error(&e)));
            }
            last.set(Instant::now());
        }
        // End of input: tell the peer (half close) and go on reading.
        let _ = wr.shutdown().await;
        anyhow::Ok(())
    };
    let receiver = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = rd
                .read(&mut buf)
                .await
                .map_err(|e| anyhow!("receive: {}", io_error(&e)))?;
            if n == 0 {
                peer_done.set(true);
                if verbose {
                    eprintln!("netcat: the peer has closed its side (Ctrl-D or Ctrl-C ends)");
                }
                return anyhow::Ok(());
            }
            write_out(out, &buf[..n])?;
            last.set(Instant::now());
        }
    };
    // Done when both directions are: a half-closed peer may still read.
    let transfer = async { tokio::try_join!(sender, receiver).map(|_| ()) };
    tokio::select! {
        r = transfer => r,
        _ = idle(&last, wait) => Ok(()),
    }
}

async fn connect_udp(options: &Options) -> anyhow::Result<UdpSocket> {
    let host = options.host.as_deref().unwrap_or("localhost");
    let addr = resolve(host, options.port).await?[0];
    let local = match addr {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = UdpSocket::bind(local)
        .await
        .with_context(|| format!("udp socket for {}", addr.ip()))?;
    socket.connect(addr).await.map_err(|e| {
        anyhow!(
            "connect to {} port {} (udp): {}",
            addr.ip(),
            addr.port(),
            io_error(&e)
        )
    })?;
    if options.verbose {
        eprintln!("netcat: sending to {} (udp)", show(addr));
    }
    Ok(socket)
}

/// Binds, waits for the first datagram (printed), and talks to its sender.
async fn listen_udp<W: Write>(options: &Options, out: &mut W) -> anyhow::Result<UdpSocket> {
    let (socket, addr) = bind_listener(options).await?;
    let socket = UdpSocket::from_std(socket.into())?;
    if options.verbose {
        eprintln!("netcat: listening on {} (udp)", show(addr));
    }
    let mut buf = vec![0u8; 64 * 1024];
    let (n, peer) = first_peer(options, addr, socket.recv_from(&mut buf))
        .await?
        .map_err(|e| anyhow!("receive: {}", io_error(&e)))?;
    if options.verbose {
        eprintln!("netcat: datagram from {} (udp)", show(peer));
    }
    write_out(out, &buf[..n])?;
    socket.connect(peer).await.map_err(|e| {
        anyhow!(
            "connect to {} port {} (udp): {}",
            peer.ip(),
            peer.port(),
            io_error(&e)
        )
    })?;
    Ok(socket)
}

/// UDP has no end of stream: it runs until -w idle time or Ctrl-C.
async fn transfer_udp<W: Write>(
    socket: UdpSocket,
    stdin: &mut StdinReader,
    out: &mut W,
    wait: Option<Duration>,
) -> anyhow::Result<()> {
    let last = Cell::new(Instant::now());
    let sender = async {
        while let Some(chunk) = stdin.next().await? {
            // One read, one datagram (a read is at most 16 KiB).
            socket
                .send(&chunk)
                .await
                .map_err(|e| anyhow!("send: {}", io_error(&e)))?;
            last.set(Instant::now());
        }
        std::future::pending::<anyhow::Result<()>>().await
    };
    let receiver = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = socket
                .recv(&mut buf)
                .await
                .map_err(|e| anyhow!("receive: {}", io_error(&e)))?;
            write_out(out, &buf[..n])?;
            last.set(Instant::now());
        }
    };
    tokio::select! {
        r = sender => r,
        r = receiver => r,
        _ = idle(&last, wait) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(parse_port("80"), Some(80));
        assert_eq!(parse_port("65535"), Some(65535));
        assert_eq!(parse_port("0"), None);
        assert_eq!(parse_port("65536"), None);
        assert_eq!(parse_port("http"), None);
    }

    #[tokio::test]
    async fn hosts() {
        assert_eq!(
            resolve("10.0.0.2", 80).await.unwrap(),
            vec!["10.0.0.2:80".parse().unwrap()]
        );
        let v6 = resolve("fe80::1%lo", 7).await.unwrap();
        assert_eq!(
            v6,
            vec![SocketAddr::V6(SocketAddrV6::new(
                "fe80::1".parse().unwrap(),
                7,
                0,
                crate::net::iface::ifindex("lo").unwrap()
            ))]
        );
        assert!(resolve("localhost", 1)
            .await
            .unwrap()
            .iter()
            .all(|a| a.ip().is_loopback()));
    }
}
