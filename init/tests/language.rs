//! The command language as users meet it through `myinit -c` and scripts:
//! quoting, variables, redirections, statuses, errors with file and line.

mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;

use common::{myinit, myinit_bin, run, TempDir};

#[test]
fn echo_prints_quoted_text_without_quotes() {
    let r = myinit(r#"echo "Running automated tests..."; echo 'a  b' c\ d"#);
    r.assert_ok();
    assert_eq!(r.stdout, "Running automated tests...\na  b c d\n");
}

#[test]
fn variables_expand_and_are_listed_by_env() {
    let r = myinit("NAME=world; GREETING=\"hello $NAME\"; echo $GREETING ${NAME}s '$NAME'; env");
    r.assert_ok();
    let mut lines = r.stdout.lines();
    assert_eq!(lines.next(), Some("hello world worlds $NAME"));
    let env: Vec<&str> = lines.collect();
    assert_eq!(env, vec!["GREETING=hello world", "NAME=world"]);
}

#[test]
fn status_of_last_command_is_in_question_mark_and_exit_code() {
    let r = myinit("no-such-command-xyz; echo status=$?; echo ok; echo status=$?");
    assert_eq!(r.stdout, "status=127\nok\nstatus=0\n");
    assert_eq!(r.status, 0);
    assert!(r.stderr.contains("no-such-command-xyz: command not found"));
    let r = myinit("echo first; sh -c 'exit 7'");
    assert_eq!(r.status, 7);
}

#[test]
fn scripts_go_on_after_failure_unless_set_e() {
    let dir = TempDir::new("lang");
    let script = dir.join("t.run");
    std::fs::write(
        &script,
        "echo one\nbogus-cmd\necho two\nset -e\nbogus-cmd2\necho three\n",
    )
    .unwrap();
    let r = common::MyinitRun::from(run(myinit_bin(), &[script.to_str().unwrap()]));
    assert_eq!(r.stdout, "one\ntwo\n");
    assert_eq!(r.status, 127);
    // The error names the file and the line.
    let expected = format!("{}:5: bogus-cmd2: command not found", script.display());
    assert!(r.stderr.contains(&expected), "{}", r.stderr);
    assert!(r
        .stderr
        .contains(&format!("{}:2: bogus-cmd", script.display())));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn nested_run_shares_variables_and_redirects_its_output() {
    let dir = TempDir::new("lang");
    let inner = dir.join("inner.run");
    let out = dir.join("out.txt");
    std::fs::write(&inner, "echo inner sees $OUTER\nINNER=set-inside\n").unwrap();
    let r = myinit(&format!(
        "OUTER=outer; run {} > {}; echo outer sees $INNER",
        inner.display(),
        out.display()
    ));
    r.assert_ok();
    assert_eq!(r.stdout, "outer sees set-inside\n");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "inner sees outer\n");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn redirections_truncate_append_and_feed_stdin() {
    let dir = TempDir::new("lang");
    let f = dir.join("f.txt");
    let r = myinit(&format!(
        "echo one > {f}; echo two >> {f}; echo -n three >>{f}; sh -c 'cat; echo' < {f}",
        f = f.display()
    ));
    r.assert_ok();
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "one\ntwo\nthree");
    assert_eq!(r.stdout, "one\ntwo\nthree\n");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_write_the_redirect_target_refuses_names_the_file() {
    // As `echo 65535 > /sys/class/net/tap0/mtu` refused by the kernel.
    let r = myinit("echo x > /dev/full; echo status $?");
    assert_eq!(r.stdout, "status 1\n");
    assert_eq!(
        r.stderr, "-c:1: echo: /dev/full: No space left on device\n",
        "{r:#?}"
    );
}

#[test]
fn echo_into_a_file_is_a_single_write() {
    let dir = TempDir::new("lang");
    let fifo = dir.join("control");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::File::open(&fifo).unwrap();
            // One read: a split write would deliver only part of the line here.
            let mut buf = [0u8; 256];
            std::thread::sleep(std::time::Duration::from_millis(300));
            let n = f.read(&mut buf).unwrap();
            buf[..n].to_vec()
        })
    };
    let r = myinit(&format!("echo add nat46dev > {}", fifo.display()));
    r.assert_ok();
    assert_eq!(reader.join().unwrap(), b"add nat46dev\n");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_input_gives_one_error_line_and_changes_nothing() {
    let dir = TempDir::new("lang");
    let never = dir.join("never.txt");
    for (line, message) in [
        (
            format!("echo 'open > {}", never.display()),
            "unterminated single quote",
        ),
        (
            format!("echo \"open > {}", never.display()),
            "unterminated double quote",
        ),
        ("echo hi >".to_string(), "missing file name after '>'"),
        ("echo ${UNCLOSED".to_string(), "unterminated '${'"),
    ] {
        let r = myinit(&format!("{line}\necho after"));
        assert_eq!(r.stderr.lines().count(), 1, "{line}: {}", r.stderr);
        assert!(r.stderr.contains(message), "{line}: {}", r.stderr);
        // The next line still runs.
        assert_eq!(r.stdout, "after\n");
    }
    assert!(!never.exists());
    let r = myinit(&format!("cat < {}", dir.join("missing").display()));
    assert_eq!(r.status, 1);
    assert!(
        r.stderr.contains("No such file or directory"),
        "{}",
        r.stderr
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn non_utf8_and_huge_lines_in_scripts_are_refused_whole() {
    let dir = TempDir::new("lang");
    let script = dir.join("bad.run");
    let mut text = b"echo start\necho \xff\xfe bad\n".to_vec();
    text.extend_from_slice(b"echo ");
    text.extend(std::iter::repeat_n(b'x', 1 << 20));
    text.extend_from_slice(b"\necho end\n");
    std::fs::write(&script, &text).unwrap();
    let r = common::MyinitRun::from(run(myinit_bin(), &[script.to_str().unwrap()]));
    assert_eq!(r.stdout, "start\nend\n");
    let errors: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains(":2: syntax error: line is not valid UTF-8"));
    assert!(errors[1].contains(":3: syntax error: line too long"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn executables_run_with_redirections_and_status() {
    let dir = TempDir::new("lang");
    let tool = dir.join("tool.sh");
    std::fs::write(
        &tool,
        "#!/bin/sh\necho \"args: $*\"\nread line\necho \"read: $line\"\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let input = dir.join("in.txt");
    std::fs::write(&input, "from-file\n").unwrap();
    let out = dir.join("out.txt");
    let r = myinit(&format!(
        "{} a 'b c' < {} > {}; echo status $?",
        tool.display(),
        input.display(),
        out.display()
    ));
    assert_eq!(r.stdout, "status 3\n");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "args: a b c\nread: from-file\n"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn help_lists_every_command_with_usage() {
    let r = myinit("help");
    r.assert_ok();
    for name in [
        "cat", "cp", "echo", "ls", "mkdir", "mknod", "mount", "umount", "insmod", "dmesg", "ps",
        "kconfig", "sleep", "run", "help", "poweroff", "reboot", "ifconfig", "tap", "ip", "ping",
        "netcat", "env", "set", "log",
    ] {
        assert!(
            r.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{name} "))),
            "help does not list {name}"
        );
    }
    let r = myinit("help echo");
    assert!(r.stdout.contains("usage: echo [-n] [WORD...]"));
    // A subcommand's help is help too: on standard output, status 0.
    let r = myinit("fakehost add --help; capture start --help");
    r.assert_ok();
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    assert!(r.stdout.contains("answer for IP on IF"), "{}", r.stdout);
    assert!(r.stdout.contains("--backend"), "{}", r.stdout);
    let r = myinit("sleep");
    assert_eq!(r.status, 2);
    assert!(r.stderr.contains("usage: sleep SECONDS"), "{}", r.stderr);
}

#[test]
fn poweroff_outside_pid1_exits_with_its_status() {
    let r = myinit("echo before; poweroff 5; echo after");
    assert_eq!(r.status, 5);
    assert_eq!(r.stdout, "before\n");
}

#[test]
fn readme_documents_every_command_as_help_shows_it() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let help = myinit("help");
    let mut missing = Vec::new();
    for line in help.stdout.lines().skip(1).take_while(|l| !l.is_empty()) {
        let form = line.trim();
        let is_usage = line.starts_with("    ");
        if is_usage && !readme.lines().any(|l| l == form) {
            missing.push(form.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "README lacks these usage lines: {missing:#?}"
    );
}

/// Runs `myinit -c COMMANDS` and sends it SIGINT after `after`.
fn interrupted_run(
    commands: &str,
    after: std::time::Duration,
) -> (common::MyinitRun, std::time::Duration) {
    let started = std::time::Instant::now();
    let child = std::process::Command::new(myinit_bin())
        .args(["-c", commands])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    (common::MyinitRun::from(out), started.elapsed())
}

#[test]
fn ctrl_c_stops_the_whole_script_not_just_one_command() {
    let (r, took) = interrupted_run(
        "echo before; sleep 30; echo after-first; sleep 30; echo after-second",
        std::time::Duration::from_millis(500),
    );
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    assert_eq!(r.stdout, "before\n");
    assert_eq!(r.status, 130);
}

#[test]
fn ctrl_c_gets_out_of_a_fifo_nobody_opens() {
    let dir = TempDir::new("lang");
    let fifo = dir.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for line in [
        format!("echo x > {}", fifo.display()),
        format!("cat < {}", fifo.display()),
        format!("cat {}", fifo.display()),
    ] {
        let (r, took) = interrupted_run(&line, std::time::Duration::from_millis(500));
        assert!(took < std::time::Duration::from_secs(5), "{line}: {took:?}");
        assert_eq!(r.status, 130, "{line}: {r:?}");
        assert!(r.stderr.contains("interrupted"), "{line}: {r:?}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn only_an_escaping_backslash_continues_a_script_line() {
    let dir = TempDir::new("lang");
    let script = dir.join("cont.run");
    std::fs::write(
        &script,
        "echo one \\\n  two\n\
         echo a\\\\\n\
         echo b\n\
         # a comment ending in a backslash \\\n\
         echo visible\n\
         echo 'quoted\\'\n",
    )
    .unwrap();
    let r = common::MyinitRun::from(run(myinit_bin(), &[script.to_str().unwrap()]));
    assert_eq!(r.stdout, "one two\na\\\nb\nvisible\nquoted\\\n", "{r:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Runs `myinit ARGS…` in `dir`.
fn myinit_in(dir: &std::path::Path, args: &[&str]) -> common::MyinitRun {
    common::MyinitRun::from(
        std::process::Command::new(myinit_bin())
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap(),
    )
}

/// Runs `myinit -c COMMANDS` in `dir` under `ulimit -v` (400 MB), so a
/// run that reads or builds without bound aborts instead of passing.
fn myinit_memory_bound(dir: &std::path::Path, commands: &str) -> common::MyinitRun {
    common::MyinitRun::from(
        std::process::Command::new("bash")
            .args([
                "-c",
                "ulimit -v 400000; exec \"$0\" -c \"$1\"",
                myinit_bin(),
                commands,
            ])
            .current_dir(dir)
            .output()
            .unwrap(),
    )
}

#[test]
fn a_script_that_runs_itself_stops_at_the_nesting_limit_and_the_shell_lives() {
    let dir = TempDir::new("lang");
    std::fs::write(dir.join("r.run"), "run r.run\n").unwrap();
    let r = myinit_in(&dir, &["-c", "run r.run; echo alive-$?"]);
    assert_eq!(r.stdout, "alive-1\n", "{r:?}");
    assert_eq!(r.status, 0, "{r:?}");
    let errors: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].ends_with(
            "run: r.run: too deeply nested: r.run -> r.run -> … -> r.run \
             (64 levels, the most allowed)"
        ),
        "{errors:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn run_nests_64_levels_deep_and_refuses_the_65th() {
    let dir = TempDir::new("lang");
    for level in 1..=65 {
        std::fs::write(
            dir.join(format!("l{level}.run")),
            format!("run l{}.run\n", level + 1),
        )
        .unwrap();
    }
    std::fs::write(dir.join("l65.run"), "echo deepest\n").unwrap();
    // l2 … l65 are 64 levels: all of them run.
    let r = myinit_in(&dir, &["-c", "run l2.run"]);
    assert_eq!(r.stdout, "deepest\n", "{r:?}");
    r.assert_ok();
    // l1 … l65 would be 65.
    let r = myinit_in(&dir, &["-c", "run l1.run; echo status=$?"]);
    assert_eq!(r.stdout, "status=1\n", "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(
        r.stderr.contains(
            "l64.run:1: run: l65.run: too deeply nested: l1.run -> l2.run -> … -> l64.run (64 levels"
        ),
        "{r:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn run_of_dev_zero_fails_fast_with_a_clear_error_under_a_memory_bound() {
    let dir = TempDir::new("lang");
    let started = std::time::Instant::now();
    let r = myinit_memory_bound(&dir, "run /dev/zero; echo alive-$?");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(r.stdout, "alive-2\n", "{r:?}");
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(
        r.stderr,
        "/dev/zero:1: syntax error: NUL byte: not a text script; stopping it\n"
    );
    // `myinit FILE` reads the same way.
    let r = myinit_in(&dir, &["/dev/zero"]);
    assert_eq!(r.status, 2, "{r:?}");
    assert!(r.stderr.contains("NUL byte"), "{r:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_script_without_newlines_is_given_up_after_a_bounded_read() {
    let dir = TempDir::new("lang");
    // 40 MiB of text and no newline: each line is refused whole, and looking
    // for its end stops at 16 MiB, so neither memory nor time grow with it.
    let mut text = b"echo first\n".to_vec();
    text.extend(std::iter::repeat_n(b'x', 40 << 20));
    std::fs::write(dir.join("long.run"), &text).unwrap();
    let r = myinit_memory_bound(&dir, "run long.run; echo alive-$?");
    assert_eq!(r.stdout, "first\nalive-2\n", "{r:?}");
    assert_eq!(
        r.stderr,
        "long.run:2: syntax error: no end of line in the first 16 MiB; stopping the script\n"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_doubling_variable_is_refused_cleanly_and_keeps_its_value() {
    let dir = TempDir::new("lang");
    let mut script = String::from("A=x\n");
    for _ in 0..11 {
        script.push_str("A=$A$A$A$A\n");
    }
    script.push_str(
        "echo status=$?\necho $A > a.txt\nB=$A\necho $B$B$B$B$B > never.txt\necho status=$?\n",
    );
    std::fs::write(dir.join("grow.run"), script).unwrap();
    let r = myinit_memory_bound(&dir, "run grow.run; echo alive");
    assert_eq!(r.stdout, "status=1\nstatus=1\nalive\n", "{r:?}");
    let errors: Vec<&str> = r.stderr.lines().collect();
    // 4^8 = 65536 bytes still fit; the 9th to 11th doublings do not.
    let expected: Vec<String> = (10..=12)
        .map(|line| {
            format!("grow.run:{line}: A: value too long: more than 65536 bytes when expanding $A")
        })
        .chain(["grow.run:16: command too long: more than 262144 bytes when expanding $B".into()])
        .collect();
    assert_eq!(errors, expected);
    assert_eq!(
        std::fs::metadata(dir.join("a.txt")).unwrap().len(),
        65536 + 1
    );
    assert!(!dir.join("never.txt").exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unsupported_sh_syntax_is_one_error_with_its_column_and_nothing_of_the_line_runs() {
    let dir = TempDir::new("lang");
    // The column counts from the start of the line, here after this prefix.
    let prefix = "echo before > ran; ";
    for (line, token, column) in [
        ("mount | grep t", "|", 7),
        ("true && echo x", "&&", 6),
        ("false || echo x", "||", 7),
        ("sleep 1 &", "&", 9),
        ("echo a 2> x", "2>", 8),
        ("echo a &> x", "&>", 8),
        ("echo a >&2", ">&", 8),
        ("echo $(echo x)", "$(", 6),
        ("echo `echo x`", "`", 6),
        ("echo \"in $(echo x)\"", "$(", 10),
        ("echo \"in `echo x`\"", "`", 10),
    ] {
        let r = myinit_in(&dir, &["-c", &format!("{prefix}{line}\necho status=$?")]);
        assert_eq!(r.stdout, "status=2\n", "{line}: {r:?}");
        assert_eq!(
            r.stderr,
            format!(
                "-c:1: syntax error: '{token}' at column {} is not supported \
                 (put it in single quotes to pass it literally)\n",
                prefix.len() + column
            ),
            "{line}"
        );
        assert!(!dir.join("ran").exists(), "{line}: part of the line ran");
        assert!(!dir.join("x").exists(), "{line}: x was written");
    }
    // Quoted or escaped, the same characters are plain text.
    let r =
        myinit(r#"echo '|' "a && b &" \& \| '$(x)' '`x`' "\$(x) \`x\`" 2 > /dev/null; echo 'a|b'"#);
    r.assert_ok();
    assert_eq!(r.stdout, "a|b\n");
    let r = myinit(r#"echo '|' "a && b &" \& \| '$(x)' '`x`' "\$(x) \`x\`""#);
    assert_eq!(r.stdout, "| a && b & & | $(x) `x` $(x) `x`\n");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn exit_inside_run_ends_only_that_script_with_its_status() {
    let dir = TempDir::new("lang");
    std::fs::write(dir.join("e.run"), "echo in\nexit 7\necho not-reached\n").unwrap();
    std::fs::write(dir.join("outer.run"), "run e.run\necho outer-after $?\n").unwrap();
    let r = myinit_in(&dir, &["-c", "run e.run; echo status=$?; echo next"]);
    assert_eq!(r.stdout, "in\nstatus=7\nnext\n", "{r:?}");
    assert_eq!(r.status, 0);
    let r = myinit_in(&dir, &["-c", "run outer.run; echo status=$?"]);
    assert_eq!(r.stdout, "in\nouter-after 7\nstatus=0\n", "{r:?}");
    // A top-level script or -c still ends the whole myinit.
    let r = myinit_in(&dir, &["e.run"]);
    assert_eq!((r.status, r.stdout.as_str()), (7, "in\n"), "{r:?}");
    let r = myinit_in(&dir, &["-c", "exit 4; echo not-reached"]);
    assert_eq!((r.status, r.stdout.as_str()), (4, ""), "{r:?}");
    // poweroff inside run still ends the program (outside PID 1).
    std::fs::write(dir.join("p.run"), "poweroff 5\necho not-reached\n").unwrap();
    let r = myinit_in(&dir, &["-c", "run p.run; echo not-reached"]);
    assert_eq!((r.status, r.stdout.as_str()), (5, ""), "{r:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn ctrl_c_gets_out_of_running_a_fifo_nobody_writes() {
    let dir = TempDir::new("lang");
    let fifo = dir.join("script-fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let (r, took) = interrupted_run(
        &format!("run {}", fifo.display()),
        std::time::Duration::from_millis(500),
    );
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    assert_eq!(r.status, 130, "{r:?}");
    assert!(r.stderr.contains("run: interrupted"), "{r:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sigterm_ends_myinit_and_the_command_it_was_running() {
    // A sleep that only this test runs, found again by its argument.
    let marker = format!("{}.{}", 300 + std::process::id() % 100, std::process::id());
    let child = std::process::Command::new(myinit_bin())
        .args(["-c", &format!("/usr/bin/sleep {marker}; echo after")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = common::terminate(child);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("after"));
    let running = |marker: &str| {
        std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
            std::fs::read(p.path().join("cmdline"))
                .is_ok_and(|c| c == format!("/usr/bin/sleep\0{marker}\0").as_bytes())
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while running(&marker) {
        assert!(
            std::time::Instant::now() < deadline,
            "sleep {marker} still runs after myinit ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
