//! The embedded eBPF object loads into this kernel, sees real drops, and
//! its aya-log lines reach the console only when asked (`log on`).

mod common;

use common::{MyinitIn, Netns};

/// The number before `label` in a line such as "3 drop event(s) seen".
fn count_before(text: &str, label: &str) -> u64 {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("no '{label}' in {text}"));
    text[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before '{label}' in {text}"))
}

#[test]
fn kconfig_bpf_loads_the_drop_tracer_and_sees_its_own_drops() {
    let ns = Netns::new("bpf");
    let r = ns.myinit("kconfig bpf");
    r.assert_ok();
    assert!(
        r.stdout.contains("loaded and attached kfree_skb"),
        "{}",
        r.stdout
    );
    assert!(
        count_before(&r.stdout, "from the self-test") >= 1,
        "{}",
        r.stdout
    );
    assert!(
        !r.stderr.contains("ebpf:"),
        "log lines without `log on`: {}",
        r.stderr
    );
}

#[test]
fn ebpf_log_lines_reach_the_console_after_log_on() {
    let ns = Netns::new("bpf");
    let r = ns.myinit("log on; kconfig bpf; log off; log");
    r.assert_ok();
    assert!(r.stdout.contains("eBPF log: on"));
    assert!(r.stdout.ends_with("eBPF log: off\n"), "{}", r.stdout);
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("ebpf: DEBUG: kfree_skb reason=")),
        "no eBPF log line: {}",
        r.stderr
    );
}
