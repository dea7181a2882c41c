//! The command language as users meet it through `myinit -c` and scripts:
//! quoting, variables, redirections, statuses, errors with file and line.

mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::{myinit, myinit_bin, run};

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(common::unique(tag));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

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
    let dir = temp_dir("lang");
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
    let dir = temp_dir("lang");
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
    let dir = temp_dir("lang");
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
fn echo_into_a_file_is_a_single_write() {
    let dir = temp_dir("lang");
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
    let dir = temp_dir("lang");
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
    let dir = temp_dir("lang");
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
    let dir = temp_dir("lang");
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
    let dir = temp_dir("lang");
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
    let dir = temp_dir("lang");
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
