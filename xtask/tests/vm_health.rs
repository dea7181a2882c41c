//! Named tests in the VM on Debian's 6.1: KTAP on the console, the exit
//! status through debug-exit, a test selected out from the kernel command
//! line, an `expect` failing on purpose, and the kernel-health watch: a
//! test module (xtask/testdata/warnmod) built against the VM kernel's
//! headers warns on demand, and the test that triggers it fails naming
//! the function while the others pass. A kernel panic in a test is pinned
//! on that test by `xtask vm`.

mod common;

use common::{build_test_module, vm_autoexec, TempDir};

#[test]
fn named_tests_report_ktap_and_a_warn_on_fails_only_its_own_test() {
    let share = TempDir::new("health");
    let module = build_test_module("warnmod");
    std::fs::copy(&module, share.path("warnmod.ko")).unwrap();
    share.write(
        "autoexec.run",
        "test loopback-ping\n\
         expect arm lo\n\
         ping -c 1 -W 2 127.0.0.1\n\
         expect lo --within 5 icmp\n\
         test expect-fails-on-purpose\n\
         expect lo --within 0.3 udp port 9\n\
         test warn-on\n\
         insmod /mnt/host/warnmod.ko\n\
         echo 1 > /proc/warnmod_trigger\n\
         test not-selected\n\
         echo never-runs\n\
         test after-the-warning\n\
         echo still-healthy\n",
    );
    let run = vm_autoexec(
        &share,
        "MYINIT_TEST_FILTER=loopback-ping,expect-*,warn-on,after-*",
        150,
    );
    let console: Vec<&str> = run
        .stdout
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .collect();
    let ktap: Vec<&str> = console
        .iter()
        .copied()
        .filter(|l| {
            let result = l.strip_prefix("not ").unwrap_or(l).strip_prefix("ok ");
            *l == "KTAP version 1"
                || result.is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
                || l.starts_with("1..")
                || l.starts_with("# Totals")
        })
        .collect();
    let warn = ktap.get(3).copied().unwrap_or_default();
    assert!(
        warn.starts_with("not ok 3 - warn-on # kernel WARNING in warnmod_trigger_write+0x")
            && warn.ends_with(" [warnmod]"),
        "{ktap:#?}"
    );
    assert_eq!(
        ktap,
        [
            "KTAP version 1",
            "ok 1 - loopback-ping",
            "not ok 2 - expect-fails-on-purpose # expect: FAIL lo: expected 1 packet matching `udp port 9`, got 0 within 0.3 s",
            warn,
            "ok 4 - not-selected # SKIP not selected by MYINIT_TEST_FILTER",
            "ok 5 - after-the-warning",
            "1..5",
            "# Totals: pass:2 fail:2 xfail:0 xpass:0 skip:1 error:0",
        ],
        "{}",
        run.stdout
    );
    assert!(console.contains(&"still-healthy"), "{}", run.stdout);
    assert!(
        console
            .iter()
            .any(|l| l.starts_with("expect: ok lo: 1 packet matching `icmp` in ")),
        "{}",
        run.stdout
    );
    assert!(!console.contains(&"never-runs"), "{}", run.stdout);
    // Failed tests make the run's status 1, through debug-exit.
    assert_eq!(run.status, 1, "{}", run.stderr);
}

#[test]
fn a_kernel_panic_is_pinned_on_the_test_that_ran() {
    let share = TempDir::new("panic");
    share.write(
        "autoexec.run",
        "test fine\necho ok\ntest crash\necho c > /proc/sysrq-trigger\ntest never\n",
    );
    let run = vm_autoexec(&share, "", 150);
    assert_eq!(run.status, 125, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("the guest stopped without reporting a status (the kernel panicked during test 2: crash)"),
        "{}",
        run.stderr
    );
}
