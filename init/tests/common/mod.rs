//! What the integration tests share beyond the test kit (namespaces, temp
//! dirs, frames: myinit-testkit): running the myinit binary under test.
#![allow(dead_code)]

use std::process::Output;

/// The myinit binary under test.
pub fn myinit_bin() -> &'static str {
    env!("CARGO_BIN_EXE_myinit")
}

#[allow(unused_imports)] // each test binary uses its own subset
pub use myinit_testkit::{run, run_ok, unique, Background, Netns, TempDir};

/// Runs myinit inside a namespace of the test kit.
pub trait MyinitIn {
    /// `myinit -c COMMANDS` inside the namespace.
    fn myinit(&self, commands: &str) -> MyinitRun;
}

impl MyinitIn for Netns {
    fn myinit(&self, commands: &str) -> MyinitRun {
        MyinitRun::from(self.exec(myinit_bin(), &["-c", commands]))
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
