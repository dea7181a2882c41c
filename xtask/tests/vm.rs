//! End-to-end: boot Debian's kernel under qemu with the initrd through
//! `xtask vm` and check what comes back (exit status, files on the share,
//! the console). Each boot takes ~10-20 s under TCG, so these are few and
//! each checks several things.

use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{initrd, target_dir, vm, xtask, TempDir};

const SHORT: &str = "myinit.countdown=1 myinit.poweroff_countdown=1";

#[test]
fn the_demo_boots_and_powers_off_with_status_0() {
    let run = vm(&["--append", "myinit.countdown=1", "--timeout", "150"]);
    assert_eq!(run.status, 0);
    assert!(run
        .stdout
        .contains("myinit: stage 3: running /autoexec.run"));
    assert!(run.console_has_line("== demo done: powering off with status 0"));
    // The drop-tracing part of the demo saw the drops it made on purpose.
    assert!(run.stdout.contains("NO_SOCKET"), "{}", run.stdout);
    assert!(run.stdout.contains("NEIGH_FAILED"), "{}", run.stdout);
    // The capture part: pcap (eBPF, clsact on 6.1) and JSONL (TPACKET_V3)
    // on tap0 at once, each stopped with nothing lost, then converted to
    // the other format with the same number of packets.
    let line = |prefix: &str| -> String {
        run.stdout
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?}: {}", run.stdout))
            .to_string()
    };
    let packets = |l: &str, after: &str| -> u64 {
        let rest = &l[l.find(after).unwrap() + after.len()..];
        rest.split(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(
        line("Started capture on tap0 "),
        "Started capture on tap0 -> /tmp/demo.pcap (format: pcap) (unlimited) (ignoring: nd)",
        "{}",
        run.stdout
    );
    assert_eq!(
        line("capture tap0: "),
        "capture tap0: ebpf (clsact), EN10MB rx+tx, snaplen 65600",
        "{}",
        run.stdout
    );
    let pcap = line("capture tap0: stopped: ");
    let jsonl = line("capture tap0#2: stopped: ");
    for l in [&pcap, &jsonl] {
        assert!(l.ends_with(", 0 lost"), "{l}");
        // At least the three echo requests.
        assert!(packets(l, "stopped: ") >= 3, "{l}");
    }
    let to_jsonl = line("Converted ");
    assert!(
        to_jsonl.ends_with("packets from /tmp/demo.pcap to /tmp/demo-from-pcap.jsonl"),
        "{to_jsonl}"
    );
    assert_eq!(
        packets(&to_jsonl, "Converted "),
        packets(&pcap, "stopped: ")
    );
    let to_pcap = run
        .stdout
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .find(|l| l.starts_with("Converted ") && l.contains(" to /tmp/demo-from-jsonl.pcap"))
        .unwrap_or_else(|| panic!("no json2pcap line: {}", run.stdout));
    assert!(
        to_pcap.contains("packets from /tmp/demo.jsonl to /tmp/demo-from-jsonl.pcap"),
        "{to_pcap}"
    );
    assert_eq!(packets(to_pcap, "Converted "), packets(&jsonl, "stopped: "));
    // The initrd's own startup.run ran (no share scripts) and set eth0 up.
    assert!(run.stdout.contains("myinit: stage 2: running /startup.run"));
    assert!(
        run.stderr.contains("xtask vm: boot timing"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("stage 1 done") && run.stderr.contains(", autoexec "),
        "{}",
        run.stderr
    );
}

#[test]
fn share_scripts_run_and_their_results_reach_the_host() {
    let share = TempDir::new("share");
    share.write(
        "startup.run",
        "echo from-share > /mnt/host/startup.txt\nifconfig lo up\n",
    );
    share.write(
        "autoexec.run",
        "set -e\n\
         ifconfig > /mnt/host/if.txt\n\
         echo 1 > /proc/sys/net/ipv4/ip_forward\n\
         cat /proc/sys/net/ipv4/ip_forward > /mnt/host/forward.txt\n\
         tap add tap7\n\
         ifconfig tap7 10.77.0.1/24 up\n\
         ping -c 1 10.77.0.1 > /mnt/host/ping.txt\n\
         modprobe -v 9p > /mnt/host/modprobe-again.txt\n\
         cat /proc/modules > /mnt/host/modules.txt\n",
    );
    let run = vm(&[
        "--share",
        &share.dir().to_string_lossy(),
        "--append",
        SHORT,
        "--timeout",
        "150",
    ]);
    // No `poweroff` in the script: the power-off countdown ends the VM
    // with the script's status.
    assert_eq!(run.status, 0);
    assert!(run.stdout.contains("power off now"));
    // Stage 1 mounted the share; stage 2 took the share's startup.run
    // over the initrd's /startup.run.
    assert_eq!(share.read("startup.txt"), "from-share\n");
    assert!(run
        .stdout
        .contains("myinit: stage 2: running /mnt/host/startup.run"));
    assert!(!run.stdout.contains("running /startup.run"));
    assert!(run
        .stdout
        .contains("myinit: stage 3: running /mnt/host/autoexec.run"));

    let ifconfig = share.read("if.txt");
    assert!(
        ifconfig.contains("lo") && ifconfig.contains("eth0"),
        "{ifconfig}"
    );
    assert_eq!(share.read("forward.txt").trim(), "1");
    let ping = share.read("ping.txt");
    assert!(ping.contains("1 packets transmitted, 1 received"), "{ping}");
    // Already loaded: modprobe loads nothing and says nothing.
    assert_eq!(share.read("modprobe-again.txt"), "");
    // Stage 1 resolved the dependency chains: 9p -> fscache -> netfs and
    // virtio_net -> net_failover -> failover; tun for `tap add`.
    let modules = share.read("modules.txt");
    let loaded: Vec<&str> = modules
        .lines()
        .filter_map(|l| l.split(' ').next())
        .collect();
    for m in [
        "9p",
        "fscache",
        "netfs",
        "9pnet_virtio",
        "virtio_net",
        "net_failover",
        "failover",
        "tun",
        "veth",
    ] {
        assert!(loaded.contains(&m), "{m} not loaded: {loaded:?}");
    }
}

/// A child's stdout collected as it comes, to wait for text on it.
struct Console {
    text: Arc<Mutex<String>>,
    changed: mpsc::Receiver<()>,
}

impl Console {
    /// Collects `stdout` on a thread.
    fn collect(mut stdout: impl Read + Send + 'static) -> Self {
        let text = Arc::new(Mutex::new(String::new()));
        let (tx, changed) = mpsc::channel();
        let writer = text.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                writer
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
                let _ = tx.send(());
            }
        });
        Console { text, changed }
    }

    fn wait_for(&self, wanted: &str, timeout: Duration) {
        self.wait_for_after(0, wanted, timeout);
    }

    /// Waits for `wanted` at or after byte `from`; returns where it ends.
    fn wait_for_after(&self, from: usize, wanted: &str, timeout: Duration) -> usize {
        let until = Instant::now() + timeout;
        loop {
            {
                let text = self.text.lock().unwrap();
                if let Some(at) = text.get(from..).and_then(|t| t.find(wanted)) {
                    return from + at + wanted.len();
                }
            }
            let left = until.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero() && self.changed.recv_timeout(left).is_ok(),
                "no {wanted:?} on the console; it shows:\n{}",
                self.text.lock().unwrap()
            );
        }
    }

    fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }
}

/// A guest driven through its serial console (`xtask vm`, stdin piped).
struct Interactive {
    child: std::process::Child,
    console: Console,
    keys: std::process::ChildStdin,
    _slot: common::GuestSlot,
}

impl Interactive {
    fn boot(args: &[&str]) -> Self {
        let initrd = initrd();
        let slot = common::guest_slot();
        let mut child = xtask()
            .arg("vm")
            .arg("--initrd")
            .arg(initrd)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run xtask vm");
        let console = Console::collect(child.stdout.take().unwrap());
        let keys = child.stdin.take().unwrap();
        Interactive {
            child,
            console,
            keys,
            _slot: slot,
        }
    }

    fn type_keys(&mut self, keys: &str) {
        self.keys.write_all(keys.as_bytes()).unwrap();
    }

    /// Waits for the guest to end: its status, console text and xtask's stderr.
    fn finish(mut self) -> (Option<i32>, String, String) {
        let status = self.child.wait().unwrap();
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let text = self.console.text();
        eprintln!("--- console\n{text}\n--- xtask\n{stderr}");
        (status.code(), text, stderr)
    }
}

#[test]
fn a_key_in_the_countdown_gives_the_shell_and_poweroff_status_comes_back() {
    let mut vm = Interactive::boot(&["--append", "myinit.countdown=30", "--timeout", "150"]);
    vm.console
        .wait_for("autoexec in ", Duration::from_secs(120));
    vm.type_keys("x");
    vm.console
        .wait_for("myinit: shell ready", Duration::from_secs(20));
    // Let the line editor take the terminal before typing.
    std::thread::sleep(Duration::from_millis(500));
    vm.type_keys("echo typed-into-the-shell\r");
    vm.console
        .wait_for("\ntyped-into-the-shell\r\n", Duration::from_secs(20));
    // Ctrl-C on the serial console stops the foreground command (the
    // console is PID 1's controlling terminal), not the shell.
    vm.type_keys("ping -c 1000 127.0.0.1\r");
    vm.console.wait_for("icmp_seq=2 ", Duration::from_secs(20));
    vm.type_keys("\x03");
    vm.console
        .wait_for("packets transmitted", Duration::from_secs(20));
    vm.type_keys("echo still-here-after-ctrl-c\r");
    vm.console
        .wait_for("\nstill-here-after-ctrl-c\r\n", Duration::from_secs(20));
    vm.type_keys("poweroff 3\r");
    let (status, text, stderr) = vm.finish();
    assert_eq!(status, Some(3));
    assert!(!text.contains("1000 packets transmitted"), "{text}");
    assert!(
        stderr.contains("the guest powered off with status 3"),
        "{stderr}"
    );
    assert!(stderr.contains("shell ready"), "{stderr}");
    // The key stopped stage 3.
    assert!(!text.contains("stage 3: running"));
}

/// The supervisor's line after a crash, e.g. "myinit: engine (pid 57) was
/// killed by SIGSEGV while running 'debug-crash segv' in the shell; ...".
fn supervisor_line(text: &str) -> Option<String> {
    without_kernel_log(text)
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .find(|l| l.starts_with("myinit: engine (pid "))
        .map(str::to_string)
}

/// The console without kernel messages ("[    5.361890] ...\r\n"), which
/// the kernel prints at any moment, also in the middle of a line.
fn without_kernel_log(text: &str) -> String {
    let mut rest = text;
    let mut kept = String::new();
    while let Some(at) = rest.find("[ ") {
        kept.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let stamp = after.trim_start();
        let is_stamp = stamp.split_once(']').is_some_and(|(t, _)| {
            t.contains('.') && t.chars().all(|c| c.is_ascii_digit() || c == '.')
        });
        if is_stamp {
            rest = after.split_once('\n').map_or("", |(_, r)| r);
        } else {
            kept.push('[');
            rest = after;
        }
    }
    kept.push_str(rest);
    kept
}

#[test]
fn an_engine_crash_in_the_shell_gives_a_new_prompt_not_a_kernel_panic() {
    let mut vm = Interactive::boot(&["--append", "myinit.shell", "--timeout", "200"]);
    vm.console
        .wait_for("myinit: shell ready", Duration::from_secs(150));
    std::thread::sleep(Duration::from_millis(500));
    // PID 1 is the supervisor: small, and not the shell.
    vm.type_keys("cat /proc/1/status\r");
    let at = vm
        .console
        .wait_for_after(0, "VmRSS:", Duration::from_secs(20));
    let end = vm.console.wait_for_after(at, "kB", Duration::from_secs(20));
    let rss_kib: u64 = vm.console.text()[at..end - 2].trim().parse().unwrap();
    eprintln!("supervisor (PID 1) VmRSS at the prompt: {rss_kib} kB");
    assert!(rss_kib < 4096, "PID 1 uses {rss_kib} kB");

    vm.type_keys("debug-crash segv\r");
    let crashed = Instant::now();
    let at = vm
        .console
        .wait_for_after(end, "starting a new shell", Duration::from_secs(30));
    let at = vm
        .console
        .wait_for_after(at, "myinit: shell ready again", Duration::from_secs(30));
    let at = vm
        .console
        .wait_for_after(at, "myinit# ", Duration::from_secs(30));
    eprintln!(
        "recovery: engine crash to the new prompt in {} ms",
        crashed.elapsed().as_millis()
    );
    std::thread::sleep(Duration::from_millis(300));
    vm.type_keys("echo works-after-the-crash\r");
    let at = vm
        .console
        .wait_for_after(at, "\nworks-after-the-crash\r\n", Duration::from_secs(20));
    // The new engine took the console as its controlling terminal: Ctrl-C
    // stops its foreground command.
    vm.type_keys("ping -c 1000 127.0.0.1\r");
    let at = vm
        .console
        .wait_for_after(at, "icmp_seq=2 ", Duration::from_secs(20));
    vm.type_keys("\x03");
    vm.console
        .wait_for_after(at, "packets transmitted", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    vm.type_keys("poweroff 3\r");
    let (status, text, stderr) = vm.finish();
    assert_eq!(status, Some(3), "{stderr}");
    assert!(!text.contains("Kernel panic"), "{text}");
    assert!(!text.contains("1000 packets transmitted"), "{text}");
    let line = supervisor_line(&text).expect("the supervisor's line");
    assert!(
        line.contains("was killed by SIGSEGV while running 'debug-crash segv' in the shell"),
        "{line}"
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("myinit: engine (pid "))
            .count(),
        1,
        "one line per crash"
    );
}

#[test]
fn an_engine_crash_during_autoexec_ends_the_run_with_a_failure_status() {
    let dir = TempDir::new("crash");
    let script = dir.write(
        "crash.run",
        "echo autoexec-before-the-crash\ndebug-crash abort\necho after-the-crash\n",
    );
    let run = vm(&["--autoexec", &script, "--append", SHORT, "--timeout", "150"]);
    // 64 + SIGABRT, not a timeout (124) waiting at a prompt.
    assert_eq!(run.status, 70, "{}", run.stderr);
    assert!(run.console_has_line("autoexec-before-the-crash"));
    assert!(!run.console_has_line("after-the-crash"));
    assert!(!run.stdout.contains("Kernel panic"));
    let line = supervisor_line(&run.stdout).expect("the supervisor's line");
    assert!(
        line.contains("was killed by SIGABRT while running 'debug-crash abort' unattended")
            && line.ends_with("powering off with status 70 (myinit.debug_exit)"),
        "{line}"
    );
}

#[test]
fn a_failing_script_fails_the_run() {
    let dir = TempDir::new("fail");
    let script = dir.write(
        "fail.run",
        "set -e\necho before-the-failure\ncat /no/such/file\necho after-the-failure\n",
    );
    let run = vm(&["--autoexec", &script, "--append", SHORT, "--timeout", "150"]);
    assert_ne!(run.status, 0);
    assert!(
        run.status < 124,
        "a guest status, not a harness failure: {}",
        run.status
    );
    assert!(run.console_has_line("before-the-failure"));
    assert!(!run.console_has_line("after-the-failure"));
    assert!(
        run.stdout.contains("cat: "),
        "cat's error is on the console"
    );
}

#[test]
fn a_hung_guest_is_killed_at_the_timeout() {
    let dir = TempDir::new("hang");
    let script = dir.write("hang.run", "echo hanging-now\nsleep 1000\n");
    // Built (once, shared) before the clock starts: a first build takes minutes.
    common::initrd();
    let started = Instant::now();
    let run = vm(&["--autoexec", &script, "--append", SHORT, "--timeout", "45"]);
    assert_eq!(run.status, 124);
    assert!(started.elapsed() < Duration::from_secs(80));
    assert!(
        run.stderr
            .contains("timeout: the guest did not power off within 45 s"),
        "{}",
        run.stderr
    );
    // The last console lines are part of the report.
    assert!(run.stderr.contains("  | hanging-now"), "{}", run.stderr);
}

#[test]
fn the_initrd_is_reproducible_and_complete() {
    let first = initrd();
    let again = target_dir()
        .join("vm")
        .join(format!("test-initrd-again-{}.img", std::process::id()));
    common::build_initrd(&again);
    let a = std::fs::read(first).unwrap();
    let b = std::fs::read(&again).unwrap();
    let _ = std::fs::remove_file(&again);
    assert!(
        a == b,
        "two builds differ ({} and {} bytes)",
        a.len(),
        b.len()
    );

    let mut cpio = Vec::new();
    flate2::read::GzDecoder::new(a.as_slice())
        .read_to_end(&mut cpio)
        .unwrap();
    let mut names = Vec::new();
    let mut at = 0;
    while at + 110 <= cpio.len() {
        let field = |i: usize| {
            let f = &cpio[at + 6 + i * 8..at + 14 + i * 8];
            usize::from_str_radix(std::str::from_utf8(f).unwrap(), 16).unwrap()
        };
        let (size, namesize) = (field(6), field(11));
        let name = String::from_utf8_lossy(&cpio[at + 110..at + 110 + namesize - 1]).into_owned();
        at = ((at + 110 + namesize).div_ceil(4) * 4 + size).div_ceil(4) * 4;
        if name == "TRAILER!!!" {
            break;
        }
        names.push(name);
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are sorted");
    for wanted in [
        "init",
        "dev/console",
        "autoexec.run",
        "startup.run",
        "9p.ko",
        "mnt/host",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "no {wanted} in {names:?}"
        );
    }
    for suffix in [
        "/modules.dep",
        "/9pnet_virtio.ko",
        "/fscache.ko",
        "/virtio_pci.ko",
        "/cls_bpf.ko",
    ] {
        assert!(
            names.iter().any(|n| n.ends_with(suffix)),
            "no *{suffix} in {names:?}"
        );
    }
}

#[test]
fn an_autoexec_that_runs_itself_gets_one_error_and_the_boot_goes_on() {
    let dir = TempDir::new("selfrun");
    // The share's autoexec.run (a temporary share holds it under that name).
    let script = dir.write(
        "autoexec.run",
        "echo self-run-level\nrun /mnt/host/autoexec.run\necho after-the-recursion\n",
    );
    let run = vm(&["--autoexec", &script, "--append", SHORT, "--timeout", "150"]);
    // No stack overflow, no panic: the nesting limit stops it with one
    // error, every level finishes, and the power-off countdown follows.
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(!run.stdout.contains("Kernel panic"));
    assert!(supervisor_line(&run.stdout).is_none(), "the engine crashed");
    let errors = run
        .stdout
        .lines()
        .filter(|l| l.contains("too deeply nested"))
        .count();
    assert_eq!(errors, 1, "{}", run.stdout);
    let levels = run
        .stdout
        .lines()
        .filter(|l| l.trim_end_matches('\r') == "self-run-level")
        .count();
    // The stage script itself, then 64 nested `run`s of it.
    assert_eq!(levels, 65, "{}", run.stdout);
    assert!(run.stdout.contains("power off now"), "{}", run.stdout);
}

/// The number before `label` on the one line of `text` (a debug-tc report).
fn count_before(text: &str, label: &str) -> u64 {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("no '{label}' in {text}"));
    text[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.trim_start_matches('(').parse().ok())
        .unwrap_or_else(|| panic!("no count before '{label}' in {text}"))
}

#[test]
fn tc_capture_programs_pass_the_6_1_verifier_and_an_orphan_filter_is_removed() {
    let share = TempDir::new("tc");
    // Debian's 6.1 has no TCX: the clsact path, with sch_ingress and
    // cls_bpf loaded as modules by stage 1. `--leave` lets go of a filter
    // without removing it, as a killed myinit would.
    share.write(
        "autoexec.run",
        "set -e\n\
         ifconfig lo up\n\
         debug-tc attach lo --seconds 0.1 --leave > /mnt/host/leave.txt\n\
         debug-tc show lo > /mnt/host/orphan.txt\n\
         debug-tc attach lo --seconds 0.1 > /mnt/host/attach.txt\n\
         debug-tc attach lo egress --seconds 0.1 > /mnt/host/attach-egress.txt\n\
         ping -c 3 -i 0.2 127.0.0.1 > /dev/null\n\
         debug-tc show lo > /mnt/host/show.txt\n\
         debug-tc detach lo > /mnt/host/detach.txt\n\
         debug-tc detach lo egress > /mnt/host/detach-egress.txt\n\
         debug-tc show lo > /mnt/host/after.txt\n\
         cat /proc/modules > /mnt/host/modules.txt\n",
    );
    let run = vm(&[
        "--share",
        &share.dir().to_string_lossy(),
        "--append",
        SHORT,
        "--timeout",
        "240",
    ]);
    assert_eq!(run.status, 0, "{}", run.stdout);
    let modules = share.read("modules.txt");
    for module in ["sch_ingress", "cls_bpf"] {
        assert!(
            modules
                .lines()
                .any(|l| l.starts_with(&format!("{module} "))),
            "{module} not loaded: {modules}"
        );
    }
    let leave = share.read("leave.txt");
    assert!(
        leave.contains("lo ingress: attached capture_ingress via clsact, removed 0 old filter(s)"),
        "{leave}"
    );
    assert!(leave.contains("lo ingress: left attached"), "{leave}");
    let orphan = share.read("orphan.txt");
    assert!(
        orphan.contains("lo ingress: 1 BPF program(s) attached")
            && orphan.contains("capture_ingress"),
        "{orphan}"
    );
    let attach = share.read("attach.txt");
    assert!(
        attach.contains("lo ingress: attached capture_ingress via clsact, removed 1 old filter(s) named capture_ingress"),
        "{attach}"
    );
    let egress = share.read("attach-egress.txt");
    assert!(
        egress.contains("lo egress: attached capture_egress via clsact"),
        "{egress}"
    );
    // The orphan is gone: only the new filter is on the hook.
    let show = share.read("show.txt");
    assert!(
        show.contains("lo ingress: 1 BPF program(s) attached"),
        "{show}"
    );
    // Three echo requests and three replies cross lo both ways.
    for (file, hook) in [("detach.txt", "ingress"), ("detach-egress.txt", "egress")] {
        let text = share.read(file);
        assert!(text.starts_with(&format!("lo {hook}: detached;")), "{text}");
        assert!(count_before(&text, "IPv4") >= 6, "{text}");
        assert_eq!(count_before(&text, "malformed"), 0, "{text}");
        assert_eq!(count_before(&text, "lost"), 0, "{text}");
    }
    // 6.1 refuses TC programs the task helpers: the sender is left unnamed
    // rather than the program failing to load.
    let egress = share.read("detach-egress.txt");
    assert!(!egress.contains("local senders"), "{egress}");
    let after = share.read("after.txt");
    assert!(
        after.contains("lo ingress: 0 BPF program(s) attached"),
        "{after}"
    );
}

/// `tcpdump -r FILE -nn -t`: one line per packet.
fn tcpdump_read(file: &std::path::Path) -> String {
    let out = std::process::Command::new("tcpdump")
        .args(["-r", &file.to_string_lossy(), "-nn", "-t"])
        .output()
        .expect("tcpdump (apt-get install tcpdump)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn capture_on_a_tap_writes_pcap_and_jsonl_on_6_1() {
    let share = TempDir::new("capture");
    // 6.1: the eBPF backend on clsact + cls_bpf (modules from stage 1),
    // and the AF_PACKET ring beside it on the same TAP. A static neighbour
    // makes the echo requests leave at once (no ARP that nobody answers).
    share.write(
        "autoexec.run",
        "tap add tap0\n\
         ifconfig tap0 10.0.9.1/24 up\n\
         ip neigh add 10.0.9.2 lladdr 02:00:00:00:09:02 dev tap0\n\
         capture start tap0 /mnt/host/tap.pcap --backend ebpf --dir tx > /mnt/host/start.txt\n\
         capture start tap0 /mnt/host/tap.jsonl --backend packet --dir tx >> /mnt/host/start.txt\n\
         ping -c 3 -i 0.2 -W 0.2 10.0.9.2 > /dev/null\n\
         capture show > /mnt/host/show.txt\n\
         capture stop tap0 > /mnt/host/stop.txt\n",
    );
    let run = vm(&[
        "--share",
        &share.dir().to_string_lossy(),
        "--append",
        SHORT,
        "--timeout",
        "240",
    ]);
    assert_eq!(run.status, 0, "{}", run.stdout);
    let start = share.read("start.txt");
    assert!(
        start.contains("capture tap0: ebpf (clsact), EN10MB tx")
            && start.contains("capture tap0#2: packet (tpacket_v3), EN10MB tx"),
        "{start}\n{}",
        run.stdout
    );
    let show = share.read("show.txt");
    assert!(
        show.contains("tap0#2") && show.contains("/mnt/host/tap.jsonl"),
        "{show}"
    );
    let stop = share.read("stop.txt");
    for target in ["tap0", "tap0#2"] {
        let line = stop
            .lines()
            .find(|l| l.starts_with(&format!("capture {target}: stopped: ")))
            .unwrap_or_else(|| panic!("no report of {target}: {stop}"));
        assert!(line.ends_with(", 0 lost"), "{line}");
    }
    let text = tcpdump_read(&share.dir().join("tap.pcap"));
    assert_eq!(
        text.matches("IP 10.0.9.1 > 10.0.9.2: ICMP echo request")
            .count(),
        3,
        "{text}"
    );
    let jsonl = share.read("tap.jsonl");
    let requests: Vec<&str> = jsonl
        .lines()
        .filter(|l| l.contains("\"typ\":8") && l.contains("\"direction\":\"tx\""))
        .collect();
    assert_eq!(requests.len(), 3, "{jsonl}");
    // The original's dialect: its three keys only.
    assert!(
        requests
            .iter()
            .all(|l| l.starts_with("{\"timestamp_us\":") && !l.contains("\"ifname\"")),
        "{jsonl}"
    );
}

#[test]
fn edit_fixes_a_script_on_the_share_over_the_serial_console_and_run_runs_it() {
    let share = TempDir::new("edit");
    // The script misses its command's first letter; `edit` puts it back.
    share.write("fix.run", "cho fixed-by-edit\n");
    let mut vm = Interactive::boot(&[
        "--share",
        &share.dir().to_string_lossy(),
        "--append",
        "myinit.countdown=30",
        "--timeout",
        "200",
    ]);
    vm.console
        .wait_for("autoexec in ", Duration::from_secs(150));
    vm.type_keys("x");
    vm.console
        .wait_for("myinit: shell ready", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    vm.type_keys("edit /mnt/host/fix.run\r");
    // The full screen is up: its status line, in the serial console's
    // 80x24, shows the file and the cursor.
    let at = vm
        .console
        .wait_for_after(0, "line 1:1 of 2", Duration::from_secs(30));
    vm.type_keys("e");
    let at = vm
        .console
        .wait_for_after(at, "line 1:2 of 2", Duration::from_secs(20));
    // Ctrl+S saves, Ctrl+Q quits (raw mode: no XON/XOFF on the tty).
    vm.type_keys("\x13");
    let at = vm
        .console
        .wait_for_after(at, "saved 19 bytes", Duration::from_secs(20));
    vm.type_keys("\x11");
    std::thread::sleep(Duration::from_millis(500));
    vm.type_keys("run /mnt/host/fix.run\r");
    vm.console
        .wait_for_after(at, "\nfixed-by-edit\r\n", Duration::from_secs(20));
    vm.type_keys("poweroff 0\r");
    let (status, text, _) = vm.finish();
    assert_eq!(status, Some(0), "{text}");
    assert_eq!(share.read("fix.run"), "echo fixed-by-edit\n");
}

#[test]
fn fake_hosts_answer_arp_ndp_and_ping_on_tap0_with_clsact_on_6_1() {
    let share = TempDir::new("fakehost");
    // A TAP with no reader: the kernel's requests leave tap0's egress,
    // where the eBPF program (clsact on 6.1) answers them.
    share.write(
        "autoexec.run",
        "set -e\n\
         tap add tap0\n\
         ifconfig tap0 192.168.78.1/24 up\n\
         ip addr add fd00:78::1/64 dev tap0\n\
         fakehost add tap0 192.168.78.2 icmp > /mnt/host/add.txt\n\
         fakehost add tap0 fd00:78::2 icmp router >> /mnt/host/add.txt\n\
         sleep 2\n\
         ping -c 2 192.168.78.2 > /mnt/host/ping4.txt\n\
         ping -c 2 fd00:78::2 > /mnt/host/ping6.txt\n\
         ip neigh show dev tap0 > /mnt/host/neigh.txt\n\
         fakehost show > /mnt/host/show.txt\n\
         debug-tc show tap0 egress > /mnt/host/attached.txt\n\
         fakehost del tap0 192.168.78.2\n\
         fakehost del tap0 fd00:78::2 > /mnt/host/del.txt\n\
         debug-tc show tap0 egress > /mnt/host/after.txt\n",
    );
    let run = vm(&[
        "--share",
        &share.dir().to_string_lossy(),
        "--append",
        SHORT,
        "--timeout",
        "240",
    ]);
    assert_eq!(run.status, 0, "{}", run.stdout);
    let add = share.read("add.txt");
    assert_eq!(add.matches("(backend ebpf (clsact))").count(), 2, "{add}");
    for file in ["ping4.txt", "ping6.txt"] {
        let ping = share.read(file);
        assert!(
            ping.contains("2 packets transmitted, 2 received"),
            "{file}: {ping}"
        );
    }
    let neigh = share.read("neigh.txt");
    assert!(neigh.contains("02:00:c0:a8:4e:02"), "{neigh}");
    let show = share.read("show.txt");
    let row = show
        .lines()
        .find(|l| l.starts_with("tap0 ") && l.contains(" fd00:78::2 "))
        .unwrap_or_else(|| panic!("{show}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    // ARP NA DAD ECHO RA: the NA for the ping, and both echoes answered.
    assert!(cols[6].parse::<u64>().unwrap() >= 1, "{row}");
    assert!(cols[8].parse::<u64>().unwrap() >= 2, "{row}");
    assert!(share.read("attached.txt").contains("fakehost_egress"));
    let del = share.read("del.txt");
    assert!(del.contains("program detached"), "{del}");
    let after = share.read("after.txt");
    assert!(
        after.contains("tap0 egress: 0 BPF program(s) attached"),
        "{after}"
    );
}

#[test]
fn oside_edits_a_capture_of_the_same_boot_and_inject_sends_the_change_on_6_1() {
    let share = TempDir::new("oside");
    let mut vm = Interactive::boot(&[
        "--share",
        &share.dir().to_string_lossy(),
        "--append",
        "myinit.countdown=30",
        "--timeout",
        "300",
    ]);
    vm.console
        .wait_for("autoexec in ", Duration::from_secs(150));
    vm.type_keys("x");
    vm.console
        .wait_for("myinit: shell ready", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    // No IPv6 on tap0 (no router solicitations or MLD reports), so the
    // first capture holds the three echo requests and nothing else; the
    // static neighbour sends them at once.
    vm.type_keys(
        "tap add tap0\r\
         echo 1 > /proc/sys/net/ipv6/conf/tap0/disable_ipv6\r\
         ifconfig tap0 10.0.9.1/24 up\r\
         ip neigh add 10.0.9.2 lladdr 02:00:00:00:09:02 dev tap0\r\
         capture start tap0 /mnt/host/a.pcap --dir tx\r\
         ping -c 3 -i 0.2 -W 0.2 10.0.9.2 > /dev/null\r\
         capture stop tap0\r",
    );
    let at = vm.console.wait_for_after(
        0,
        "capture tap0: stopped: 3 packets",
        Duration::from_secs(60),
    );
    std::thread::sleep(Duration::from_millis(500));
    vm.type_keys("oside /mnt/host/a.pcap\r");
    let at = vm
        .console
        .wait_for_after(at, "packet 1/3", Duration::from_secs(30));
    // Packet 1, layer 0 (ether): Down to Ip, then Right past version ihl
    // tos len id flags ttl proto chksum src to dst (VT100 arrow keys).
    vm.type_keys("\x1b[B");
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        vm.type_keys("\x1b[C");
    }
    std::thread::sleep(Duration::from_millis(300));
    // e edits, Ctrl+U clears the line, Enter keeps the new value.
    vm.type_keys("e");
    std::thread::sleep(Duration::from_millis(300));
    vm.type_keys("\x15");
    vm.type_keys("10.0.9.7\r");
    let at = vm
        .console
        .wait_for_after(at, "10.0.9.1 > 10.0.9.7", Duration::from_secs(20));
    vm.type_keys("f");
    let at = vm.console.wait_for_after(
        at,
        "checksums and lengths recomputed",
        Duration::from_secs(20),
    );
    vm.type_keys("s");
    let at = vm
        .console
        .wait_for_after(at, "saved 3 packets", Duration::from_secs(20));
    vm.type_keys("q");
    std::thread::sleep(Duration::from_millis(500));
    // inject into a TAP that myinit holds writes to its fd: the frames
    // arrive on tap0, so the second capture takes what tap0 receives.
    vm.type_keys(
        "capture start tap0 /mnt/host/b.pcap --dir rx\r\
         inject /mnt/host/a.pcap tap0 --topspeed\r\
         capture stop tap0\r",
    );
    vm.console.wait_for_after(
        at,
        "capture tap0: stopped: 3 packets",
        Duration::from_secs(60),
    );
    vm.type_keys("poweroff 0\r");
    let (status, text, _) = vm.finish();
    assert_eq!(status, Some(0), "{text}");
    // The second capture is what tap0 received: the edited packet with
    // valid checksums (status 1 is tshark's "Good"), the two others as
    // captured.
    let b = share.dir().join("b.pcap");
    let out = std::process::Command::new("tshark")
        .args(["-r", &b.to_string_lossy()])
        .args(["-o", "ip.check_checksum:TRUE"])
        .args(["-T", "fields", "-E", "separator=,"])
        .args(["-e", "ip.src", "-e", "ip.dst", "-e", "icmp.type"])
        .args(["-e", "ip.checksum.status", "-e", "icmp.checksum.status"])
        .output()
        .expect("tshark (apt-get install tshark)");
    let rows = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = rows.lines().collect();
    assert_eq!(
        rows,
        [
            "10.0.9.1,10.0.9.7,8,1,1",
            "10.0.9.1,10.0.9.2,8,1,1",
            "10.0.9.1,10.0.9.2,8,1,1",
        ],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Filters in the kernel on 6.1: capture's translated filter at TC on
/// clsact (and the same expression as a socket filter beside it), and the
/// drop tracer's on both hooks, which proves the tp_btf-to-tp_btf tail call
/// there (and the classic tracepoint's).
#[test]
fn filters_run_in_the_kernel_on_6_1_at_tc_and_in_the_drop_tracer() {
    let share = TempDir::new("filters");
    let mut script = String::from(
        "tap add tap0\n\
         ifconfig tap0 10.0.9.1/24 up\n\
         ip neigh add 10.0.9.2 lladdr 02:00:00:00:09:02 dev tap0\n\
         ip neigh add 10.0.9.3 lladdr 02:00:00:00:09:03 dev tap0\n\
         echo filter-vm-test > /tmp/payload\n\
         capture start tap0 /mnt/host/ebpf.pcap --backend ebpf --dir tx icmp and dst host 10.0.9.2 > /mnt/host/start.txt\n\
         capture start tap0 /mnt/host/packet.pcap --backend packet --dir tx icmp and dst host 10.0.9.2 >> /mnt/host/start.txt\n\
         ping -c 3 -i 0.2 -W 0.2 10.0.9.2 > /dev/null\n\
         ping -c 2 -i 0.2 -W 0.2 10.0.9.3 > /dev/null\n\
         capture show > /mnt/host/show.txt\n\
         capture stop tap0 > /mnt/host/stop.txt\n",
    );
    for hook in ["tp-btf", "tracepoint"] {
        script.push_str(&format!(
            "droptrace start --hook {hook} udp dst port 9 and ip > /mnt/host/dstart-{hook}.txt\n\
             netcat -u -w 1 127.0.0.1 9 < /tmp/payload\n\
             netcat -u -w 1 ::1 9 < /tmp/payload\n\
             netcat -u -w 1 127.0.0.1 7 < /tmp/payload\n\
             droptrace stop > /mnt/host/dstop-{hook}.txt\n\
             droptrace show > /mnt/host/dshow-{hook}.txt\n"
        ));
    }
    script.push_str("poweroff 0\n");
    share.write("autoexec.run", &script);
    let run = vm(&[
        "--share",
        &share.dir().to_string_lossy(),
        "--append",
        SHORT,
        "--timeout",
        "240",
    ]);
    assert_eq!(run.status, 0, "{}", run.stdout);
    let start = share.read("start.txt");
    assert!(
        start.contains("capture tap0: ebpf (clsact), EN10MB tx")
            && start.contains("capture tap0#2: packet (tpacket_v3), EN10MB tx"),
        "{start}\n{}",
        run.stdout
    );
    assert!(
        share
            .read("show.txt")
            .contains("icmp and dst host 10.0.9.2"),
        "capture show names the filter"
    );
    for file in ["ebpf.pcap", "packet.pcap"] {
        let text = tcpdump_read(&share.dir().join(file));
        assert_eq!(
            text.matches("IP 10.0.9.1 > 10.0.9.2: ICMP echo request")
                .count(),
            3,
            "{file}: {text}"
        );
        assert_eq!(text.lines().count(), 3, "{file}: only those: {text}");
    }
    for (hook, name) in [
        ("tp-btf", "tp_btf/kfree_skb"),
        ("tracepoint", "tracepoint skb:kfree_skb"),
    ] {
        let start = share.read(&format!("dstart-{hook}.txt"));
        assert!(start.contains(&format!("backend ebpf ({name})")), "{start}");
        let stop = share.read(&format!("dstop-{hook}.txt"));
        assert!(
            stop.contains("1 captured, 1 matched, 0 lost"),
            "{hook}: {stop}\n{}",
            share.read(&format!("dshow-{hook}.txt"))
        );
        let show = share.read(&format!("dshow-{hook}.txt"));
        assert!(
            show.contains("udp 127.0.0.1:") && show.contains("> 127.0.0.1:9"),
            "{hook}: {show}"
        );
        assert!(
            show.contains("in the kernel `udp dst port 9 and ip`"),
            "{show}"
        );
    }
}
