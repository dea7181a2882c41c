//! Fuzzes every command's argument parsing through the real binary: lines
//! made of a command name from `help` and arguments from a vocabulary of
//! options, words, numbers (huge, negative, NaN), addresses, odd strings and
//! paths inside a temporary directory, run as `myinit -c` inside a sandbox
//! (`unshare` of the mount, network, UTS and IPC namespaces, working
//! directory the temporary one) so nothing on the host changes. Each line
//! must end without a panic or an `internal error`, never by a signal,
//! within a bound (a line still running after a while gets Ctrl-C, as a
//! user would, and must then end), and the shell must go on to the next
//! line. Some cases are scripts of raw bytes (`myinit FILE`), for the
//! line decoder.
//!
//! By default a short run (`DEFAULT_LINES`); `MYINIT_FUZZ_CASES=20000 cargo
//! test --test fuzz` runs that many lines.

mod common;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Lines run by default; each batch runs at once, so waits overlap.
const DEFAULT_LINES: u32 = 320;
const BATCH: usize = 8;
/// A line still running after this gets Ctrl-C (SIGINT) ...
const BEFORE_CTRL_C: Duration = Duration::from_secs(3);
/// ... and must have ended this long after it.
const AFTER_CTRL_C: Duration = Duration::from_secs(10);

/// Commands that end the shell on purpose (outside PID 1 `poweroff` and
/// `reboot` exit with a status), so "the shell goes on" cannot hold there;
/// everything else about them is checked.
const ENDS_THE_SHELL: &[&str] = &["exit", "poweroff", "reboot"];

/// The commands `help` lists, each with its usage forms
/// (`ip [-4|-6] route add|replace|del DST|default [via GW] ...`).
fn commands() -> Vec<(String, Vec<String>)> {
    let help = common::myinit("help");
    help.assert_ok();
    let mut commands: Vec<(String, Vec<String>)> = Vec::new();
    for line in help.stdout.lines().skip(1).take_while(|l| !l.is_empty()) {
        if line.starts_with("    ") {
            if let Some((_, forms)) = commands.last_mut() {
                forms.push(line.trim().to_string());
            }
        } else if let Some(name) = line.split_whitespace().next() {
            commands.push((name.to_string(), Vec::new()));
        }
    }
    commands
}

/// Arguments that follow one usage form: each literal alternative or
/// placeholder is picked by the next of `choices`, optional (`[...]`)
/// parts are left out or put in, placeholders get a value of their kind.
fn follow_form(form: &str, choices: &[u32], values: &Values) -> Vec<String> {
    let mut choices = choices.iter().copied().cycle();
    let mut next = || choices.next().unwrap_or(0) as usize;
    let mut args = Vec::new();
    let mut depth = 0usize;
    // The command's own name comes first in the form.
    for token in form.split_whitespace().skip(1) {
        let optional = depth > 0 || token.starts_with('[');
        depth += token.matches('[').count();
        depth = depth.saturating_sub(token.matches(']').count());
        let bare = token.replace(['[', ']'], "").replace("...", "");
        if bare.is_empty() || (optional && next() % 2 == 0) {
            continue;
        }
        let alternatives: Vec<&str> = bare.split('|').collect();
        let pick = alternatives[next() % alternatives.len()];
        let is_placeholder = pick.chars().any(|c| c.is_ascii_uppercase())
            && !pick.chars().any(|c| c.is_ascii_lowercase());
        args.push(if is_placeholder {
            values.for_placeholder(pick, next())
        } else {
            pick.to_string()
        });
    }
    args
}

/// A temporary directory the lines may touch, removed when dropped.
struct Sandbox {
    dir: common::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = common::TempDir::new("fz");
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(dir.join("f.txt"), "some text\n").unwrap();
        std::fs::write(dir.join("script.run"), "echo from-a-script\n").unwrap();
        std::fs::write(dir.join("empty"), "").unwrap();
        Sandbox { dir }
    }
}

/// Values for a usage form's placeholders, by the placeholder's name.
struct Values {
    interfaces: Vec<String>,
    numbers: Vec<String>,
    addresses: Vec<String>,
    paths: Vec<String>,
    words: Vec<String>,
}

impl Values {
    fn new(dir: &Path) -> Self {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Values {
            interfaces: strings(&[
                "lo",
                "fz0",
                "eth0",
                "nosuchif0",
                "a-name-far-too-long-for-linux",
            ]),
            numbers: strings(NUMBERS),
            addresses: strings(ADDRESSES),
            paths: paths(dir),
            words: strings(WORDS),
        }
    }

    fn for_placeholder(&self, name: &str, choice: usize) -> String {
        let pick = |v: &Vec<String>| v[choice % v.len()].clone();
        let base = name.split(['/', '=']).next().unwrap_or(name);
        match base {
            "IF" => pick(&self.interfaces),
            "N" | "COUNT" | "LINES" | "SECONDS" | "S" | "STATUS" | "MAJ" | "MIN" | "PORT"
            | "SIZE" | "LEN" | "MASK" => pick(&self.numbers),
            "IP" | "ADDR" | "ADDR6" | "DST" | "GW" | "HOST" | "DEST" => pick(&self.addresses),
            "MAC" => {
                ["00:11:22:33:44:55", "ff:ff", "02:00:00:00:00:01", "zz"][choice % 4].to_string()
            }
            "FILE" | "PATH" | "DIR" | "SRC" | "TGT" | "SCRIPT" | "CONFIG_FILE" | "ROOT" => {
                pick(&self.paths)
            }
            "PARAM" => format!("{}={}", pick(&self.words), pick(&self.numbers)),
            _ => pick(&self.words),
        }
    }
}

const WORDS: &[&str] = &[
    "add",
    "del",
    "show",
    "set",
    "dev",
    "up",
    "down",
    "mtu",
    "route",
    "addr",
    "link",
    "neigh",
    "flush",
    "replace",
    "via",
    "default",
    "metric",
    "src",
    "lladdr",
    "nud",
    "permanent",
    "promisc",
    "-promisc",
    "on",
    "off",
    "hw",
    "ether",
    "netmask",
    "address",
    "start",
    "stop",
    "clear",
    "summary",
    "watch",
    "save",
    "tracing",
    "bpf",
    "net",
    "all",
    "proc",
    "9p",
    "c",
    "b",
    "p",
    "char",
    "block",
    "ebpf",
    "ftrace",
    "auto",
    "tp-btf",
    "tracepoint",
    "lo",
    "eth0",
    "fz0",
    "reason",
    "NO_SOCKET",
    "tmpfs",
];

const NUMBERS: &[&str] = &[
    "0",
    "1",
    "3",
    "-1",
    "255",
    "256",
    "65535",
    "65536",
    "4294967296",
    "18446744073709551616",
    "-9223372036854775809",
    "99999999999999999999999999",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "1e308",
    "1e-308",
    "0.5",
    "-0.0",
    "0x10",
    "1.",
    ".",
    "0.001",
];

const ADDRESSES: &[&str] = &[
    "127.0.0.1",
    "10.9.0.1/24",
    "10.9.0.1/33",
    "10.9.0.0/0",
    "::1",
    "fe80::1/64",
    "fe80::1/129",
    "300.1.1.1",
    "1.2.3.4/",
    "00:11:22:33:44:55",
    "ff:ff",
    "zz:zz:zz:zz:zz:zz",
    "255.255.255.0",
];

/// Paths inside the sandbox directory only (and relative ones, which the
/// working directory puts there too).
fn paths(dir: &Path) -> Vec<String> {
    let d = dir.display().to_string();
    vec![
        format!("{d}/f.txt"),
        format!("{d}/d"),
        format!("{d}/d/new"),
        format!("{d}/new"),
        format!("{d}/nope/x"),
        format!("{d}/script.run"),
        format!("{d}/empty"),
        format!("{d}/f.txt/below"),
        "f.txt".to_string(),
        "d".to_string(),
    ]
}

/// One argument, as it will be written on the line.
fn argument(dir: &Path) -> impl Strategy<Value = String> {
    let options = prop::sample::select(vec![
        "-a",
        "-l",
        "-p",
        "-q",
        "-v",
        "-d",
        "-c",
        "-i",
        "-s",
        "-W",
        "-I",
        "-4",
        "-6",
        "-u",
        "-w",
        "-n",
        "-e",
        "+e",
        "-t",
        "-o",
        "-x",
        "--",
        "-",
        "--count",
        "--interval",
        "--seconds",
        "--backend",
        "--hook",
        "--keep",
        "--help",
        "-h",
        "--no-such",
    ]);
    let words = prop::sample::select(WORDS);
    let numbers = prop::sample::select(NUMBERS);
    let addresses = prop::sample::select(ADDRESSES);
    let paths = prop::sample::select(paths(dir));
    // Raw text that means something to the parser, written unquoted. No
    // `;` or newline: each case is one command, so the next line's
    // `echo alive` can only be skipped by the shell ending.
    let raw = prop::sample::select(vec![
        "$", "${", "${x", "${}", "$?", "${?}", "$HOME", "\"", "'", "\\", "#", ">", "<", ">>", "|",
        "&", "&&", "2>", "`", "$(", "*", "~", "=", "A=1", "''", "\"\"",
    ]);
    prop_oneof![
        4 => options.prop_map(str::to_string),
        6 => words.prop_map(str::to_string),
        4 => numbers.prop_map(str::to_string),
        3 => addresses.prop_map(str::to_string),
        3 => paths,
        2 => raw.prop_map(str::to_string),
        2 => any::<String>().prop_map(|s| quote(&s.chars().take(16).collect::<String>())),
        1 => Just("x".repeat(5000)),
    ]
}

/// Single-quotes `text` for the shell (a `'` inside becomes `\'`).
fn quote(text: &str) -> String {
    let text: String = text.chars().filter(|&c| c != '\0' && c != '\n').collect();
    format!("'{}'", text.replace('\'', "'\\''"))
}

#[derive(Clone, Debug)]
enum Case {
    /// `myinit -c "NAME ARGS\necho alive-$?"`; `nonsense`: the first
    /// argument is an unknown option, so the status must not be 0.
    Line {
        name: String,
        args: Vec<String>,
        nonsense: bool,
    },
    /// `myinit FILE` with these bytes, then `echo alive-$?`.
    Script(Vec<u8>),
}

fn case(commands: Vec<(String, Vec<String>)>, dir: &Path) -> impl Strategy<Value = Case> {
    let values = std::sync::Arc::new(Values::new(dir));
    // Half follow a usage form (deep into each command's parsing), half
    // are a name with arguments from anywhere in the vocabulary.
    let form = (
        prop::sample::select(commands.clone()),
        any::<usize>(),
        prop::collection::vec(any::<u32>(), 1..24),
        prop::collection::vec(argument(dir), 0..2),
    )
        .prop_map(move |((name, forms), which, choices, extra)| {
            let mut args = match forms.get(which % forms.len().max(1)) {
                Some(form) => follow_form(form, &choices, &values),
                None => Vec::new(),
            };
            args.extend(extra);
            (name, args, false)
        });
    let names: Vec<String> = commands.into_iter().map(|(name, _)| name).collect();
    let anything = (
        prop::sample::select(names),
        prop::collection::vec(argument(dir), 0..7),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(name, args, nonsense)| {
            let args = if nonsense {
                std::iter::once("--fuzz-nonsense".to_string())
                    .chain(args)
                    .collect()
            } else {
                args
            };
            (name, args, nonsense)
        });
    let line = prop_oneof![form, anything].prop_map(|(name, args, nonsense)| Case::Line {
        name,
        args,
        nonsense,
    });
    let script = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        any::<String>().prop_map(String::into_bytes),
    ]
    .prop_map(Case::Script);
    prop_oneof![9 => line, 1 => script]
}

/// What a case's run must show.
struct Running {
    case: Case,
    child: Child,
    started: Instant,
    dir: PathBuf,
    n: usize,
}

/// Output goes to files: a pipe nobody reads while waiting would fill up
/// and stall a talkative command (`dmesg`) into a false hang.
fn sandboxed(dir: &Path, n: usize) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--net",
        "--uts",
        "--ipc",
        "--propagation",
        "private",
        "--",
        common::myinit_bin(),
    ])
    .current_dir(dir)
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(dir.join(format!("case-{n}.out"))).unwrap())
    .stderr(std::fs::File::create(dir.join(format!("case-{n}.err"))).unwrap());
    cmd
}

fn start(case: &Case, dir: &Path, n: usize) -> Running {
    let mut cmd = sandboxed(dir, n);
    match case {
        Case::Line { name, args, .. } => {
            // A newline, not `;`: a syntax error or comment on the first
            // line must not hide the second. The trailing blank stops a
            // final backslash from continuing the line.
            let line = format!("{name} {} \necho alive-$?", args.join(" "));
            cmd.arg("-c").arg(line);
        }
        Case::Script(bytes) => {
            let path = dir.join(format!("case-{n}.run"));
            let mut file = std::fs::File::create(&path).unwrap();
            file.write_all(bytes).unwrap();
            file.write_all(b"\n\necho alive-$?\n").unwrap();
            cmd.arg(&path);
        }
    }
    let child = cmd.spawn().expect("run unshare myinit");
    Running {
        case: case.clone(),
        child,
        started: Instant::now(),
        dir: dir.to_path_buf(),
        n,
    }
}

/// The process `pid`, its children and their threads: name, state and the
/// kernel function each waits in (`wchan`), for a hang's report.
fn waiting_in(pid: u32) -> String {
    let mut out = Vec::new();
    let mut pids = vec![pid];
    while let Some(p) = pids.pop() {
        let tasks = std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten();
        for task in tasks.flatten() {
            let t = task.path();
            let read = |f: &str| std::fs::read_to_string(t.join(f)).unwrap_or_default();
            let stat = read("stat");
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_string))
                .unwrap_or_default();
            out.push(format!(
                "{}/{} {} {} {}",
                p,
                task.file_name().to_string_lossy(),
                read("comm").trim(),
                state,
                read("wchan")
            ));
            for child in read("children").split_whitespace() {
                if let Ok(c) = child.parse() {
                    pids.push(c);
                }
            }
        }
    }
    out.join(", ")
}

/// How the lines ended, for the closing summary line.
static SUCCEEDED: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);
static INTERRUPTED: AtomicU32 = AtomicU32::new(0);

/// Waits for one run within the bounds; checks what a user would check.
fn finish(mut run: Running) -> Result<(), String> {
    let mut interrupted = false;
    let status = loop {
        if let Some(status) = run.child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        let elapsed = run.started.elapsed();
        if !interrupted && elapsed > BEFORE_CTRL_C {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(run.child.id() as i32, libc::SIGINT) };
            interrupted = true;
        }
        if elapsed > BEFORE_CTRL_C + AFTER_CTRL_C {
            // Where it waits, before it is killed: unshare's child (myinit)
            // and each of its threads, with what it printed so far.
            let where_ = waiting_in(run.child.id());
            let _ = run.child.kill();
            let _ = run.child.wait();
            let printed = |ext: &str| {
                std::fs::read_to_string(run.dir.join(format!("case-{}.{ext}", run.n)))
                    .unwrap_or_default()
                    .chars()
                    .take(600)
                    .collect::<String>()
            };
            return Err(format!(
                "{:?}: hangs: still running {} s after Ctrl-C; waiting in: {where_}; stdout {:?}; stderr {:?}",
                run.case,
                AFTER_CTRL_C.as_secs(),
                printed("out"),
                printed("err"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let take = |ext: &str| {
        let path = run.dir.join(format!("case-{}.{ext}", run.n));
        let bytes = std::fs::read(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let (stdout, stderr) = (take("out"), take("err"));
    let _ = take("run");
    let shown = || {
        let case = format!("{:?}", run.case);
        let case: String = case.chars().take(300).collect();
        format!("{case}\n  status {status:?}\n  stdout {stdout:.300}\n  stderr {stderr:.600}")
    };
    if let Some(sig) = status.signal() {
        return Err(format!("killed by signal {sig}: {}", shown()));
    }
    if stderr.contains("panic") || stderr.contains("internal error") {
        return Err(format!("panicked: {}", shown()));
    }
    if interrupted {
        // Ctrl-C ends the whole -c line: no `alive` to expect.
        INTERRUPTED.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    // The last `alive-N` (after `echo -n` it shares a line).
    let alive = stdout.rsplit_once("alive-").and_then(|(_, rest)| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<i32>().ok()
    });
    let ends_the_shell =
        matches!(&run.case, Case::Line { name, .. } if ENDS_THE_SHELL.contains(&name.as_str()));
    // A file with a NUL byte is no text script: it is read line by line
    // (as sh does) and stops at the NUL with one line and a failing status
    // (what makes `run /dev/zero` fail fast).
    let refused_binary = matches!(&run.case, Case::Script(bytes) if bytes.contains(&0))
        && stderr
            .lines()
            .last()
            .is_some_and(|l| l.contains("NUL byte: not a text script"))
        && status.code().is_some_and(|c| c != 0);
    match alive {
        None if ends_the_shell || refused_binary => Ok(()),
        None => Err(format!("the shell did not go on: {}", shown())),
        Some(0) if matches!(&run.case, Case::Line { name, nonsense: true, .. } if name != "echo") => {
            Err(format!("accepted nonsense: {}", shown()))
        }
        Some(status) => {
            let tally = if status == 0 { &SUCCEEDED } else { &FAILED };
            tally.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }
}

fn lines_to_run() -> u32 {
    std::env::var("MYINIT_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_LINES)
}

#[test]
fn every_command_survives_fuzzed_arguments_in_a_sandbox() {
    let commands = commands();
    assert!(
        commands.len() > 30,
        "help lists too few commands: {commands:?}"
    );
    let sandbox = Sandbox::new();
    let lines = lines_to_run();
    let batches = lines.div_ceil(BATCH as u32).max(1);
    let mut runner = TestRunner::new(Config {
        cases: batches,
        // Shrinking reruns the binary; a few rounds find a small case.
        max_shrink_iters: 64,
        max_shrink_time: 60_000,
        failure_persistence: None,
        ..Config::default()
    });
    let started = Instant::now();
    let strategy = prop::collection::vec(case(commands, &sandbox.dir), BATCH);
    let dir = sandbox.dir.to_path_buf();
    let result = runner.run(&strategy, |cases| {
        let running: Vec<Running> = cases
            .iter()
            .enumerate()
            .map(|(n, c)| start(c, &dir, n))
            .collect();
        let problems: Vec<String> = running
            .into_iter()
            .filter_map(|r| finish(r).err())
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(TestCaseError::fail(problems.join("\n")))
        }
    });
    eprintln!(
        "fuzz: {} lines in {} batches of {BATCH} in {:.1} s: {} status 0, {} non-zero, {} needed Ctrl-C",
        batches * BATCH as u32,
        batches,
        started.elapsed().as_secs_f64(),
        SUCCEEDED.load(Ordering::Relaxed),
        FAILED.load(Ordering::Relaxed),
        INTERRUPTED.load(Ordering::Relaxed),
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
