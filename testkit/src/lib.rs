//! myinit's test kit: what the integration tests, the VM tests and the
//! bench all need to set up real traffic. Network namespaces and veth pairs
//! that remove themselves, temporary directories, child processes killed on
//! drop, and frames and capture files built on the packet model (so the
//! checksums are the model's, not a hand-written copy's).
//!
//! Setup that cannot fail in a test panics (`Netns::new`); the bench, which
//! reports errors, uses the `try_` forms.

pub mod frames;

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

pub use frames::{pcap, pcap_timed, pcapng, Frame};

/// A name unique to this process and call, at most 15 bytes (IFNAMSIZ-1)
/// for tags of up to 5 bytes.
pub fn unique(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("{tag}{:x}{n:x}", std::process::id() & 0xffff);
    assert!(name.len() <= 15, "name too long: {name}");
    name
}

/// A MAC address of text ("02:00:00:00:00:01"); panics when it is none.
pub fn mac(text: &str) -> [u8; 6] {
    text.parse::<myinit_packet::MacAddr>()
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .0
}

/// A command that did not succeed: what ran and what it said.
#[derive(Debug)]
pub struct CommandFailed {
    pub command: String,
    pub message: String,
}

impl std::fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` failed: {}", self.command, self.message)
    }
}

impl std::error::Error for CommandFailed {}

/// Runs a command, panicking if it cannot start.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Runs a command; its stdout when it succeeds, else what it said.
pub fn sh(program: &str, args: &[&str]) -> Result<String, CommandFailed> {
    let failed = |message: String| CommandFailed {
        command: format!("{program} {}", args.join(" ")),
        message,
    };
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command and asserts it succeeded; returns stdout.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    sh(program, args).unwrap_or_else(|e| panic!("{e}"))
}

/// A network namespace, deleted (with its interfaces) when dropped, even
/// when the test fails.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A new namespace named from `tag`, its `lo` up.
    pub fn new(tag: &str) -> Self {
        Self::try_new(tag).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_new(tag: &str) -> Result<Self, CommandFailed> {
        Self::named(unique(tag))
    }

    /// A namespace of exactly this name.
    pub fn named(name: String) -> Result<Self, CommandFailed> {
        sh("ip", &["netns", "add", &name])?;
        let ns = Netns { name };
        ns.try_ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip netns exec NS program args…`
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// `python3 -c SCRIPT` inside the namespace, in the background, once
    /// it printed `ready` (the script's own signal that it set up what
    /// it must, such as a TUN device); killed when dropped.
    pub fn python_ready(&self, script: &str) -> Background {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "python3", "-c", script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run python3");
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().expect("piped stdout")),
            &mut line,
        );
        assert_eq!(line.trim(), "ready", "python3 -c {script}");
        Background(child)
    }

    /// `ip -n NS …`; its stdout, or what it said.
    pub fn try_ip(&self, args: &[&str]) -> Result<String, CommandFailed> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        sh("ip", &full)
    }

    /// `ip …` inside the namespace; asserts success, returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        self.try_ip(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `ip -j …` parsed as JSON.
    pub fn ip_json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["-j"];
        full.extend_from_slice(args);
        serde_json::from_str(&self.ip(&full)).expect("ip -j output is JSON")
    }

    /// Creates a veth pair: `a` here, `b` in `peer` (or here when None).
    pub fn veth(&self, a: &str, b: &str, peer: Option<&Netns>) {
        self.try_veth(a, b, peer).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_veth(&self, a: &str, b: &str, peer: Option<&Netns>) -> Result<(), CommandFailed> {
        self.try_ip(&["link", "add", a, "type", "veth", "peer", "name", b])?;
        if let Some(peer) = peer {
            self.try_ip(&["link", "set", b, "netns", &peer.name])?;
        }
        Ok(())
    }

    /// No IPv6 in the namespace (existing and new interfaces): its router
    /// solicitations and DAD would add packets to a test's counts.
    pub fn try_no_ipv6(&self) -> Result<(), CommandFailed> {
        for key in ["all", "default"] {
            let setting = format!("net.ipv6.conf.{key}.disable_ipv6=1");
            sh(
                "ip",
                &["netns", "exec", &self.name, "sysctl", "-qw", &setting],
            )?;
        }
        Ok(())
    }

    /// `try_no_ipv6`, panicking on failure.
    pub fn no_ipv6(&self) {
        self.try_no_ipv6().unwrap_or_else(|e| panic!("{e}"))
    }

    /// A TAP device of this name, up.
    pub fn tap(&self, name: &str) {
        self.ip(&["tuntap", "add", name, "mode", "tap"]);
        self.ip(&["link", "set", name, "up"]);
    }

    /// The MAC address of `dev`.
    pub fn mac(&self, dev: &str) -> Result<[u8; 6], CommandFailed> {
        let text = self.try_ip(&["-j", "link", "show", dev])?;
        let failed = |message: &str| CommandFailed {
            command: format!("ip -n {} -j link show {dev}", self.name),
            message: message.to_string(),
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|_| failed("not JSON"))?;
        value[0]["address"]
            .as_str()
            .and_then(|s| s.parse::<myinit_packet::MacAddr>().ok())
            .map(|m| m.0)
            .ok_or_else(|| failed("no MAC address"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A directory removed when dropped (unmounted first: tests mount small
/// file systems on it), even when the test fails.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        Self::try_new(tag).unwrap_or_else(|e| panic!("cannot make a temp dir: {e}"))
    }

    pub fn try_new(tag: &str) -> io::Result<Self> {
        Self::try_new_in(&std::env::temp_dir(), tag)
    }

    /// A temp dir below `parent` (e.g. /dev/shm for files on tmpfs).
    pub fn try_new_in(parent: &Path, tag: &str) -> io::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Short, as the tests' own were: paths show on 80-column screens.
        let name = format!("{tag}{:x}{n:x}", std::process::id() & 0xffff);
        let dir = parent.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.0
    }

    /// A path in it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// A path in it, as a string for a command line.
    pub fn file(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    /// Writes a file in it; its path as a string.
    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> String {
        std::fs::write(self.path(name), bytes).unwrap();
        self.file(name)
    }

    /// A file in it as text; panics naming it when it is missing.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name))
            .unwrap_or_else(|e| panic!("{name} was not written: {e}"))
    }

    /// The names of the files in it, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// A temp dir is used as the path it is (`dir.join("x")`).
impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Only when something is mounted here: umount(8) complains otherwise.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let dir = self.0.to_string_lossy();
        if mounts.lines().any(|l| l.split(' ').nth(1) == Some(&*dir)) {
            let _ = Command::new("umount").arg(&self.0).output();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed when dropped.
pub struct Background(pub Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
