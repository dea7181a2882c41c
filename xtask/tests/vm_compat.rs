//! The original tool's users boot it as the nat46 module's test harness
//! does (FORMATS.md): its own qemu line (hvc0 and the serial port muxed on
//! stdio, no debug-exit device, `panic=1`, `-no-reboot`), three 9p shares
//! (the code read-only, two writable output folders mounted by its
//! startup.run), the modules as /NAME.ko and generated /load-dependencies.run
//! and /test-plan.run in the initrd. A packet test written that way must
//! pass unchanged: the inject log holds the original's exact line, and the
//! capture, with the default options, equals the expected file through
//! `jq 'del(.timestamp_us)'` and `diff`, as the harness judges it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;

use common::{guest_slot, target_dir, xtask, TempDir};

/// This test's files: the scripts, the fixture and the expected capture.
fn compat(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/compat")
        .join(name)
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
}

fn jq_without_timestamps(file: &Path, out: &Path) {
    let input = std::fs::File::open(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let output = Command::new("jq")
        .arg("del(.timestamp_us)")
        .stdin(input)
        .output()
        .expect("jq (cargo xtask setup installs it)");
    assert!(
        output.status.success(),
        "jq {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(out, output.stdout).unwrap();
}

fn jsonl(file: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The layer of `layertype` in a captured line.
fn layer<'a>(line: &'a serde_json::Value, layertype: &str) -> Option<&'a serde_json::Value> {
    line["layers"]
        .as_array()?
        .iter()
        .find(|l| l["layertype"] == layertype)
}

#[test]
fn a_test_written_for_the_originals_harness_passes_unchanged_on_6_1() {
    let kernel = common::vm_kernel();
    let (image, modules) = (&kernel.image, &kernel.modules);
    let dir = TempDir::new("compat");
    let (code, captured, coverage) = (
        dir.dir().join("code"),
        dir.dir().join("captured"),
        dir.dir().join("coverage"),
    );
    // The code share: the harness's folder, its mount points included.
    let harness = code.join("test-harness");
    copy(&compat("startup.run"), &harness.join("startup.run"));
    copy(&compat("autoexec.run"), &harness.join("autoexec.run"));
    copy(
        &compat("coverage-collect.run"),
        &harness.join("coverage-collect.run"),
    );
    copy(&compat("test.run"), &harness.join("tests/compat/test.run"));
    copy(
        &compat("inject-tap0.jsonl"),
        &harness.join("tests/compat/inject-tap0.jsonl"),
    );
    for d in [
        &captured,
        &coverage,
        &harness.join("test-data/captured"),
        &harness.join("test-data/coverage"),
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    // The initrd: myinit as /init with the modules at the root, and the
    // harness's generated files.
    std::fs::write(
        dir.dir().join("load-dependencies.run"),
        "insmod /nf_defrag_ipv6.ko\n",
    )
    .unwrap();
    std::fs::write(
        dir.dir().join("test-plan.run"),
        "run /mnt/host/test-harness/tests/compat/test.run\n",
    )
    .unwrap();
    let initrd = target_dir().join("vm").join("compat-initrd.img");
    let mut build = xtask();
    build
        .args(["initrd", "--output"])
        .arg(&initrd)
        .arg("--add")
        .arg(format!(
            "{}:/load-dependencies.run",
            dir.dir().join("load-dependencies.run").display()
        ))
        .arg("--add")
        .arg(format!(
            "{}:/test-plan.run",
            dir.dir().join("test-plan.run").display()
        ))
        .arg("--add")
        .arg(format!(
            "{}:/nf_defrag_ipv6.ko",
            modules
                .join("kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko")
                .display()
        ));
    if let Some(init) = std::env::var_os("XTASK_VM_INIT") {
        build.arg("--init").arg(init);
    }
    let built = build.stdin(Stdio::null()).output().expect("xtask initrd");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );

    // The harness's qemu line (TCG: KVM does not boot here; no gdb stub).
    let fsdev = |id: &str, path: &Path, extra: &str| {
        format!(
            "local,id={id},path={},security_model=none{extra}",
            path.display()
        )
    };
    let _slot = guest_slot();
    let mut qemu = Command::new("timeout");
    qemu.args([
        "--kill-after=10",
        "300",
        "qemu-system-x86_64",
        "-no-reboot",
        "-accel",
        "tcg",
    ])
    .arg("-kernel")
    .arg(image)
    .args(["-m", "512M", "-initrd"])
    .arg(&initrd)
    .args([
        "-net",
        "nic,model=virtio,macaddr=52:54:00:12:34:56",
        "-net",
        "user,restrict=on",
    ])
    .args([
        "-append",
        "console=hvc0 console=ttyS0 panic_on_oops=1 panic=1",
    ])
    .args(["-chardev", "stdio,id=stdio,mux=on,signal=off"])
    .args([
        "-device",
        "virtio-serial-pci",
        "-device",
        "virtconsole,chardev=stdio",
    ])
    .args([
        "-serial",
        "chardev:stdio",
        "-mon",
        "chardev=stdio",
        "-display",
        "none",
    ])
    .args(["-fsdev", &fsdev("fs1", &code, ",readonly=on")])
    .args(["-device", "virtio-9p-pci,fsdev=fs1,mount_tag=host-code"])
    .args(["-fsdev", &fsdev("fs-captured", &captured, "")])
    .args([
        "-device",
        "virtio-9p-pci,fsdev=fs-captured,mount_tag=host-captured",
    ])
    .args(["-fsdev", &fsdev("fs-coverage", &coverage, "")])
    .args([
        "-device",
        "virtio-9p-pci,fsdev=fs-coverage,mount_tag=host-coverage",
    ])
    .stdin(Stdio::null());
    let started = std::time::Instant::now();
    let out = qemu.output().expect("qemu-system-x86_64");
    let console = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "--- console ({:.1} s)\n{console}\n--- stderr\n{}",
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stderr)
    );
    // poweroff ends qemu with 0 (no debug-exit device to say more).
    assert_eq!(out.status.code(), Some(0), "qemu: {:?}", out.status);

    // As the harness judges: the completion marker, the inject log (N =
    // the fixture's non-blank lines), the capture against the expected
    // file without timestamps.
    let read = |name: &str| {
        std::fs::read_to_string(captured.join(name))
            .unwrap_or_else(|e| panic!("the guest did not write {name}: {e}"))
    };
    assert_eq!(read("run-complete"), "complete\n");
    let fixture = std::fs::read_to_string(compat("inject-tap0.jsonl")).unwrap();
    let records = fixture.lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(records, 6);
    let log = read("compat-inject.log");
    let wanted = format!("Injection complete: {records} packets sent");
    assert!(log.lines().any(|l| l == wanted), "{log}");
    let (want, got) = (dir.dir().join("expected.jq"), dir.dir().join("captured.jq"));
    jq_without_timestamps(&compat("expected-tap1.jsonl"), &want);
    jq_without_timestamps(&captured.join("compat.jsonl"), &got);
    let diff = Command::new("diff")
        .arg("-c")
        .arg(&want)
        .arg(&got)
        .output()
        .expect("diff");
    assert!(
        diff.status.success(),
        "the capture differs from the expected file:\n{}",
        String::from_utf8_lossy(&diff.stdout)
    );

    // The near side: every injected frame received, decoded as the
    // original decodes it (the fixture's own layers), and the kernel's
    // ICMPv6 errors in the newer layers, the route's MTU in the first.
    let near = jsonl(&captured.join("compat-tap0.jsonl"));
    let injected = jsonl(&compat("inject-tap0.jsonl"));
    for (i, frame) in injected.iter().enumerate() {
        assert!(
            near.iter()
                .any(|l| l["direction"] == "rx" && l["layers"] == frame["layers"]),
            "frame {} not received as written: {}",
            i + 1,
            frame
        );
    }
    let too_big = near
        .iter()
        .find_map(|l| layer(l, "icmpv6PacketTooBig").filter(|_| l["direction"] == "tx"))
        .expect("a Packet Too Big");
    assert_eq!(too_big["mtu"], 1280, "{too_big}");
    // The packet that was too big, quoted from its IPv6 header on.
    let quoted: Vec<u8> = too_big["invoking_packet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    let addr = |text: &str| text.parse::<std::net::Ipv6Addr>().unwrap().octets();
    assert_eq!(quoted[6], 17, "{too_big}");
    assert_eq!(quoted[8..24], addr("2001:db8:1::100"), "{too_big}");
    assert_eq!(quoted[24..40], addr("2001:db8:6::5"), "{too_big}");
    assert!(quoted.len() <= 1280 - 48, "{too_big}");
    let expired = near
        .iter()
        .find_map(|l| layer(l, "icmpv6TimeExceeded"))
        .expect("a Time Exceeded");
    assert_eq!(expired["unused"], 0);
    assert_eq!(
        expired["invoking_packet"].as_array().unwrap().len(),
        40 + 8 + 3
    );
    // Neighbor Discovery is left out by default: no NS or NA anywhere.
    for l in near.iter().chain(&jsonl(&captured.join("compat.jsonl"))) {
        let t = layer(l, "Icmpv6").map(|i| i["type_"].as_u64().unwrap());
        assert!(!matches!(t, Some(133..=137)), "ND captured: {l}");
    }
    // The console is the harness's: stages and commands on the serial line.
    assert!(console.contains("compat packets:"), "{console}");
}
