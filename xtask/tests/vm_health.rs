//! The kernel's own health reports in the VM: a test module (xtask/testdata)
//! built against the VM kernel's headers makes the kernel warn on demand,
//! and the warning reaches the console naming the function that warned.

mod common;

use common::{build_test_module, vm, TempDir};

#[test]
fn a_warn_on_in_a_test_module_shows_in_the_kernel_log() {
    let share = TempDir::new("health");
    let module = build_test_module("warnmod");
    std::fs::copy(&module, share.path("warnmod.ko")).unwrap();
    share.write(
        "autoexec.run",
        "set -e\n\
         insmod /mnt/host/warnmod.ko\n\
         echo 1 > /proc/warnmod_trigger\n\
         poweroff 0\n",
    );
    let run = vm(&[
        "--share",
        &share.dir().to_string_lossy(),
        "--append",
        "myinit.countdown=0 myinit.poweroff_countdown=0",
        "--timeout",
        "150",
    ]);
    assert_eq!(
        run.status, 0,
        "the script failed or the guest did not power off"
    );
    // e.g. "WARNING: CPU: 0 PID: 79 at /tmp/kmod-warnmod…/warnmod.c:18 warnmod_trigger_write+0x8/0xf [warnmod]"
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains("WARNING:") && l.contains("warnmod_trigger_write")),
        "no WARNING naming warnmod_trigger_write on the console"
    );
}
