//! Helpers for integration tests: network namespaces that clean themselves
//! up, unique names, and running myinit (`-c`) inside a namespace.
#![allow(dead_code)]

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// The myinit binary under test.
pub fn myinit_bin() -> &'static str {
    env!("CARGO_BIN_EXE_myinit")
}

/// A name unique to this test process and call, at most 15 bytes (IFNAMSIZ-1).
pub fn unique(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("{tag}{:x}{n:x}", std::process::id() & 0xffff);
    assert!(name.len() <= 15, "name too long: {name}");
    name
}

/// Runs a command, panicking with its stderr if it cannot start.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Runs a command and asserts it succeeded; returns stdout.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted (with its interfaces) when dropped, even
/// when the test fails.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = unique(tag);
        run_ok("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip netns exec NS program args…`
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// `ip …` inside the namespace; asserts success, returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = self.exec("ip", args);
        assert!(
            out.status.success(),
            "ip {args:?} in {} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ip -j …` parsed as JSON.
    pub fn ip_json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["-j"];
        full.extend_from_slice(args);
        serde_json::from_str(&self.ip(&full)).expect("ip -j output is JSON")
    }

    /// Runs `myinit -c COMMANDS` inside the namespace.
    pub fn myinit(&self, commands: &str) -> MyinitRun {
        MyinitRun::from(self.exec(myinit_bin(), &["-c", commands]))
    }

    /// Creates a veth pair: `a` here, `b` in `peer` (or here when None).
    pub fn veth(&self, a: &str, b: &str, peer: Option<&Netns>) {
        self.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        if let Some(peer) = peer {
            self.ip(&["link", "set", b, "netns", &peer.name]);
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// What a myinit run printed and returned.
#[derive(Debug)]
pub struct MyinitRun {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for MyinitRun {
    fn from(out: Output) -> Self {
        MyinitRun {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl MyinitRun {
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.status, 0, "myinit failed: {self:#?}");
        self
    }
}

/// Runs `myinit -c COMMANDS` in the current namespace.
pub fn myinit(commands: &str) -> MyinitRun {
    MyinitRun::from(run(myinit_bin(), &["-c", commands]))
}

/// Sends SIGTERM to a running myinit and waits for it: a polite kill ends
/// it with status 143.
pub fn terminate(child: std::process::Child) -> Output {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{out:?}");
    out
}
