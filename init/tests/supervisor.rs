//! The supervisor that keeps PID 1 alive, run on the host with
//! `MYINIT_SUPERVISE=1`: an engine killed by a signal is reported in one
//! line and a new shell takes over; a crash loop gives up with a status.
//! (The VM tests in xtask/tests/vm.rs check the same under a real PID 1.)

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `MYINIT_SUPERVISE=1 myinit -c COMMANDS` with `stdin` as the input of
/// the shell that follows a crash.
fn supervised(commands: &str, stdin: &str) -> Output {
    let mut child = Command::new(common::myinit_bin())
        .args(["-c", commands])
        .env("MYINIT_SUPERVISE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn supervisor_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("myinit: engine (pid "))
        .collect()
}

#[test]
fn a_segfaulting_engine_is_reported_in_one_line_and_a_new_shell_takes_over() {
    let out = supervised(
        "echo before-the-crash; debug-crash segv; echo not-reached",
        "echo after-the-crash-$?\nexit 7\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The new shell ran the input and its `exit 7` is the status.
    assert_eq!(out.status.code(), Some(7));
    assert!(stdout.contains("before-the-crash\n"), "{stdout}");
    assert!(!stdout.contains("not-reached"), "{stdout}");
    assert!(stdout.contains("after-the-crash-0\n"), "{stdout}");
    let lines = supervisor_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("was killed by SIGSEGV while running 'debug-crash segv'")
            && lines[0].ends_with("starting a new shell"),
        "{}",
        lines[0]
    );
}

#[test]
fn an_aborting_engine_is_restarted_too() {
    let out = supervised("debug-crash abort", "echo back\nexit 3\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("back\n"));
    let lines = supervisor_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("was killed by SIGABRT while running 'debug-crash abort'"),
        "{}",
        lines[0]
    );
}

#[test]
fn an_engine_that_exits_normally_ends_the_supervisor_with_its_status() {
    let out = supervised("echo fine; exit 4", "");
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "fine\n");
    assert!(supervisor_lines(&String::from_utf8_lossy(&out.stderr)).is_empty());
}

#[test]
fn a_crash_loop_backs_off_then_gives_up_with_a_failure_status() {
    let mut child = Command::new(common::myinit_bin())
        .args(["-c", "debug-crash segv"])
        .env("MYINIT_SUPERVISE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut keys = child.stdin.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    // Each new shell crashes at once: type the crash when it is up (one
    // line each, so no engine reads ahead into the next one's input).
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no end to the crash loop: {seen:#?}"));
        seen.push(line.clone());
        if line.ends_with("starting a new shell") {
            let _ = keys.write_all(b"debug-crash segv\n");
        }
        if line.contains("giving up") {
            break;
        }
    }
    let status = child.wait().unwrap();
    let restarts = seen
        .iter()
        .filter(|l| l.ends_with("starting a new shell"))
        .count();
    assert_eq!(restarts, 5, "{seen:#?}");
    let last = seen.last().unwrap();
    assert!(
        last.contains("6 engine failures within 60 s: giving up, exiting with status 75"),
        "{last}"
    );
    // 64 + SIGSEGV: not a success, and not a signal of the supervisor's own.
    assert_eq!(status.code(), Some(75));
}
