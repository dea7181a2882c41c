//! The nat46 harness's own qemu line, tested: `console=hvc0
//! console=ttyS0`, a virtconsole and the serial port on one stdio, three
//! 9p shares (host-code read-only, host-captured and host-coverage
//! writable, mounted by its startup.run with `mount -t 9p`), `panic=1`,
//! and no debug-exit device. The stages run, results reach the writable
//! shares, a write to the read-only one is one clear line, and poweroff
//! ends qemu.

mod common;

use common::{vm, TempDir};

#[test]
fn the_harness_line_boots_with_hvc0_three_shares_and_no_debug_exit() {
    let code = TempDir::new("hcode");
    let captured = TempDir::new("hcapt");
    let coverage = TempDir::new("hcov");
    code.write(
        "startup.run",
        "ifconfig lo up\n\
         mkdir /mnt/host-captured\n\
         mount -t 9p host-captured /mnt/host-captured -o trans=virtio,version=9p2000.L\n\
         mkdir /mnt/host-coverage\n\
         mount -t 9p host-coverage /mnt/host-coverage -o trans=virtio,version=9p2000.L\n",
    );
    code.write(
        "autoexec.run",
        "cat /sys/class/tty/console/active > /mnt/host-captured/consoles.txt\n\
         echo results > /mnt/host-captured/result.txt\n\
         echo coverage > /mnt/host-coverage/coverage.txt\n\
         echo nope > /mnt/host/readonly.txt\n\
         echo after-the-refusal\n",
    );
    let run = vm(&[
        "--share",
        &format!("{}:ro", code.dir().display()),
        "--share",
        &format!("host-captured={}", captured.dir().display()),
        "--share",
        &format!("host-coverage={}", coverage.dir().display()),
        "--console",
        "hvc0",
        "--no-debug-exit",
        "--append",
        "panic_on_oops=1 panic=1 myinit.countdown=0 myinit.poweroff_countdown=0",
        "--timeout",
        "200",
    ]);
    // poweroff ended qemu; without debug-exit that reads as 0.
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("the guest powered off (no debug-exit"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("console=hvc0 console=ttyS0"),
        "{}",
        run.stdout
    );
    // The stages ran with both consoles on the one stdio.
    for line in [
        "myinit: stage 2: done",
        "myinit: stage 3: done",
        "after-the-refusal",
    ] {
        assert!(run.stdout.contains(line), "{line}: {}", run.stdout);
    }
    let consoles = captured.read("consoles.txt");
    assert!(
        consoles.contains("hvc0") && consoles.contains("ttyS0"),
        "{consoles}"
    );
    assert_eq!(captured.read("result.txt"), "results\n");
    assert_eq!(coverage.read("coverage.txt"), "coverage\n");
    // The read-only share: one line naming the file, nothing written.
    let refusal: Vec<&str> = run
        .stdout
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| l.contains("/mnt/host/readonly.txt"))
        .collect();
    assert_eq!(
        refusal,
        ["/mnt/host/autoexec.run:4: echo: /mnt/host/readonly.txt: Read-only file system"],
        "{}",
        run.stdout
    );
    assert!(!code.dir().join("readonly.txt").exists());
}

#[test]
fn bad_shares_are_refused_before_qemu_starts() {
    let dir = TempDir::new("hbad");
    let cases = [
        (
            vec!["--share".to_string(), "/nonexistent/dir".to_string()],
            "--share /nonexistent/dir: /nonexistent/dir: No such file or directory",
        ),
        (
            vec![
                "--share".to_string(),
                format!("a={}", dir.dir().display()),
                "--share".to_string(),
                format!("a={}", dir.dir().display()),
            ],
            "the tag a is given twice",
        ),
    ];
    for (args, message) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = vm(&args);
        assert_ne!(run.status, 0);
        assert!(run.stderr.contains(message), "{}", run.stderr);
        assert!(!run.stderr.contains("xtask vm: kernel"), "{}", run.stderr);
    }
}

/// Keys typed on the harness line reach the shell: qemu hands the
/// keyboard to the virtconsole, so myinit moves its console to hvc0 once
/// stage 1 has loaded virtio_console.
#[test]
fn the_shell_reads_and_answers_on_hvc0() {
    use std::io::{BufRead as _, BufReader, Write as _};
    let _slot = common::guest_slot();
    let mut child = common::xtask()
        .args(["vm", "--initrd"])
        .arg(common::initrd())
        .args([
            "--console",
            "hvc0",
            "--no-debug-exit",
            "--append",
            "myinit.shell",
            "--timeout",
            "150",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut keys = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line.trim_end_matches('\r').to_string());
        }
    });
    // A marker anywhere in a line, or (exact) a line that is only it.
    let wait_for = |wanted: &str, exact: bool, seen: &mut Vec<String>| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(1)) {
                let hit = if exact {
                    line == wanted
                } else {
                    line.contains(wanted)
                };
                seen.push(line);
                if hit {
                    return;
                }
            }
        }
        panic!("no {wanted:?} on the console: {seen:#?}");
    };
    let mut seen = Vec::new();
    wait_for("myinit: console on hvc0 (console=hvc0)", false, &mut seen);
    wait_for("myinit: shell ready", false, &mut seen);
    std::thread::sleep(std::time::Duration::from_secs(1));
    keys.write_all(b"echo typed-on-hvc0\r").unwrap();
    // The command's output line, not the echo of the typed line.
    wait_for("typed-on-hvc0", true, &mut seen);
    // Ctrl-C on hvc0 reaches the foreground command, not qemu (signal=off)
    // nor the shell: a long sleep ends, and the shell reads on.
    keys.write_all(b"sleep 1000\r").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let interrupted = std::time::Instant::now();
    keys.write_all(b"\x03").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    keys.write_all(b"echo after-ctrl-c\r").unwrap();
    wait_for("after-ctrl-c", true, &mut seen);
    assert!(
        interrupted.elapsed() < std::time::Duration::from_secs(30),
        "the sleep was not interrupted: {seen:#?}"
    );
    keys.write_all(b"poweroff\r").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{seen:#?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the guest powered off (no debug-exit"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
