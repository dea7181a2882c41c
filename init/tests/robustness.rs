//! Every command, given arguments it cannot make sense of, answers with a
//! clear error (never a panic or a hang) and the shell goes on.

mod common;

use common::{MyinitIn, Netns};

/// The command names `help` lists.
fn command_names() -> Vec<String> {
    let help = common::myinit("help");
    help.assert_ok();
    help.stdout
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("    "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn every_command_rejects_nonsense_arguments_and_the_shell_goes_on() {
    let names = command_names();
    assert!(names.len() > 30, "help lists too few commands: {names:?}");
    let ns = Netns::new("rob");
    let long = "x".repeat(5000);
    let mut problems = Vec::new();
    // echo prints any words: nothing is nonsense to it.
    for name in names.iter().filter(|n| *n != "echo") {
        for args in [
            "--no-such-option-xyz".to_string(),
            "'' '' '' ''".to_string(),
            format!("{long} {long}"),
        ] {
            let line = format!("{name} {args} < /dev/null; echo alive-after-$?");
            let r = ns.myinit(&line);
            let shown = &line[..line.len().min(80)];
            let Some(status) = r
                .stdout
                .lines()
                .last()
                .and_then(|l| l.strip_prefix("alive-after-"))
                .and_then(|s| s.parse::<i32>().ok())
            else {
                problems.push(format!("{shown}: the shell did not go on: {r:?}"));
                continue;
            };
            if r.stderr.contains("internal error") || r.stderr.contains("panic") {
                problems.push(format!("{shown}: {r:?}"));
            }
            if status == 0 {
                problems.push(format!("{shown}: accepted nonsense: {r:?}"));
            }
            if r.stderr.lines().count() > 12 {
                problems.push(format!("{shown}: too much noise: {}", r.stderr));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn huge_or_odd_numbers_are_refused_cleanly() {
    let ns = Netns::new("rob");
    for line in [
        "sleep 1e300",
        "sleep -1",
        "sleep nan",
        "droptrace watch --seconds 1e300",
        "ping -c 1 -i 1e300 127.0.0.1",
        "ping -c 99999999999999999999 127.0.0.1",
        "dmesg 99999999999999999999",
        "poweroff 256",
        "exit -1",
        "ifconfig lo mtu 99999999999",
        "mknod /tmp/never c 99999999999 1",
        "inject /dev/null lo --count 0",
    ] {
        let r = ns.myinit(&format!("{line}; echo alive-after-$?"));
        let last = r.stdout.lines().last().unwrap_or_default();
        assert!(last.starts_with("alive-after-"), "{line}: {r:?}");
        assert_ne!(last, "alive-after-0", "{line}: accepted: {r:?}");
        assert!(!r.stderr.contains("panic"), "{line}: {r:?}");
    }
    assert!(!std::path::Path::new("/tmp/never").exists());
}
