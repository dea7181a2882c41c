//! `modprobe` against a fake module tree (`-d ROOT`) on the real kernel:
//! built-in modules are skipped, dependencies are tried first, unknown
//! names fail (or not, with -q). The fake modules are not ELF, so the
//! kernel refuses them and nothing is loaded into the host.

mod common;

use common::TempDir;

fn fake_root() -> TempDir {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let root = TempDir::new("modp");
    let dir = root.join("lib/modules").join(release.trim());
    std::fs::create_dir_all(dir.join("kernel/fake")).unwrap();
    std::fs::write(
        dir.join("modules.dep"),
        "kernel/fake/xtop.ko: kernel/fake/xmid.ko kernel/fake/xbase.ko\n\
         kernel/fake/xmid.ko: kernel/fake/xbase.ko\n\
         kernel/fake/xbase.ko:\n",
    )
    .unwrap();
    // A name no kernel has loaded and modules.dep lacks: only the builtin
    // list can make modprobe skip it.
    std::fs::write(dir.join("modules.builtin"), "kernel/fake/xbuiltin.ko\n").unwrap();
    for m in ["xtop", "xmid", "xbase"] {
        std::fs::write(dir.join(format!("kernel/fake/{m}.ko")), b"not a module").unwrap();
    }
    root
}

#[test]
fn builtin_modules_are_skipped_quietly() {
    let root = fake_root();
    let run = common::myinit(&format!("modprobe -v -d {} xbuiltin", root.display()));
    run.assert_ok();
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr, "");
}

#[test]
fn dependencies_are_loaded_first() {
    let root = fake_root();
    let run = common::myinit(&format!("modprobe -v -d {} xtop", root.display()));
    assert_ne!(run.status, 0);
    // The deepest dependency is tried first; the kernel refuses it and
    // modprobe stops there.
    assert!(
        run.stdout.trim_end().ends_with("/kernel/fake/xbase.ko"),
        "{run:?}"
    );
    assert_eq!(run.stdout.lines().count(), 1, "{run:?}");
    assert!(
        run.stderr.contains("modprobe: xbase: ") && run.stderr.contains("xbase.ko: "),
        "{run:?}"
    );
}

#[test]
fn unknown_modules_fail_unless_quiet() {
    let root = fake_root();
    let run = common::myinit(&format!("modprobe -d {} nosuch-mod", root.display()));
    assert_ne!(run.status, 0);
    assert!(
        run.stderr.contains("nosuch_mod: no such module in"),
        "{run:?}"
    );
    let quiet = common::myinit(&format!(
        "modprobe -q -d {} nosuch; echo status $?",
        root.display()
    ));
    assert_eq!(quiet.stdout, "status 1\n", "{quiet:?}");
    assert_eq!(quiet.stderr, "");
}
