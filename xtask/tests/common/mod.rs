//! Helpers shared by the VM tests: build the initrd once, boot it through
//! `xtask vm`, and a temporary share directory the guest writes into.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};

pub use myinit_testkit::TempDir;

pub fn xtask() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// `XTASK_VM_INIT=FILE` boots that static binary as /init instead of
/// building myinit (e.g. one built elsewhere).
pub fn build_initrd(output: &Path) {
    build_initrd_of(output, None);
}

/// `build_initrd` for Debian's kernel of `series` (None: the default).
fn build_initrd_of(output: &Path, series: Option<&str>) {
    let mut cmd = xtask();
    cmd.arg("initrd");
    if let Some(series) = series {
        cmd.args(["--kernel-version", series]);
    }
    cmd.arg("--output").arg(output);
    if let Some(init) = std::env::var_os("XTASK_VM_INIT") {
        cmd.arg("--init").arg(init);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("run xtask initrd");
    assert!(
        out.status.success(),
        "xtask initrd {} failed: {}",
        series
            .map(|s| format!("--kernel-version {s}"))
            .unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The initrd of Debian's kernel of `series` (`--kernel-version`), built
/// once per test run.
pub fn initrd_for(series: &'static str) -> &'static Path {
    static INITRDS: Mutex<Vec<(&'static str, &'static Path)>> = Mutex::new(Vec::new());
    let mut built = INITRDS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = built.iter().find(|(s, _)| *s == series) {
        return path;
    }
    let path = target_dir()
        .join("vm")
        .join(format!("test-initrd-{series}.img"));
    build_initrd_of(&path, Some(series));
    let path: &'static Path = Box::leak(path.into_boxed_path());
    built.push((series, path));
    path
}

/// `vm_autoexec` on Debian's kernel of `series`.
pub fn vm_autoexec_on(series: &'static str, share: &TempDir, append: &str, timeout_s: u32) -> Run {
    let append = format!("myinit.countdown=0 myinit.poweroff_countdown=0 {append}");
    boot(
        initrd_for(series),
        &[
            "--kernel-version",
            series,
            "--share",
            &share.dir().to_string_lossy(),
            "--append",
            append.trim_end(),
            "--timeout",
            &timeout_s.to_string(),
        ],
    )
}

/// The initrd all boots use, built once per test run.
pub fn initrd() -> &'static Path {
    static INITRD: OnceLock<PathBuf> = OnceLock::new();
    INITRD.get_or_init(|| {
        let path = target_dir().join("vm").join("test-initrd.img");
        build_initrd(&path);
        path
    })
}

pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Console lines, without the carriage returns of the serial line.
    pub fn console_has_line(&self, wanted: &str) -> bool {
        self.stdout
            .lines()
            .any(|l| l.trim_end_matches('\r').trim() == wanted)
    }
}

/// `xtask vm --initrd … ARGS`, stdin closed.
/// At most this many guests run at once: TCG guests on a 2-core machine
/// slow each other down until boot times mean nothing.
const MAX_GUESTS: usize = 3;

static GUESTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// Held while a guest runs; waits for a free slot.
pub struct GuestSlot;

pub fn guest_slot() -> GuestSlot {
    let (count, freed) = &GUESTS;
    let mut running = count.lock().unwrap_or_else(|e| e.into_inner());
    while *running >= MAX_GUESTS {
        running = freed.wait(running).unwrap_or_else(|e| e.into_inner());
    }
    *running += 1;
    GuestSlot
}

impl Drop for GuestSlot {
    fn drop(&mut self) {
        let (count, freed) = &GUESTS;
        *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        freed.notify_one();
    }
}

/// Boots the VM with `share` as the host share, straight into its
/// `autoexec.run` and a power off after it, `append` added to the kernel
/// command line.
pub fn vm_autoexec(share: &TempDir, append: &str, timeout_s: u32) -> Run {
    let append = format!("myinit.countdown=0 myinit.poweroff_countdown=0 {append}");
    vm(&[
        "--share",
        &share.dir().to_string_lossy(),
        "--append",
        append.trim_end(),
        "--timeout",
        &timeout_s.to_string(),
    ])
}

pub fn vm(args: &[&str]) -> Run {
    boot(initrd(), args)
}

/// `xtask vm --initrd INITRD ARGS`, stdin closed, in a guest slot.
fn boot(initrd: &Path, args: &[&str]) -> Run {
    let _slot = guest_slot();
    let out = xtask()
        .arg("vm")
        .arg("--initrd")
        .arg(initrd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run xtask vm");
    let run = Run {
        status: out.status.code().expect("xtask vm killed by a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("--- console\n{}\n--- xtask\n{}", run.stdout, run.stderr);
    run
}

/// What `xtask kernel` resolves for `xtask vm`: the version (`uname -r` in
/// the guest), the image and the modules directory.
pub struct VmKernel {
    pub version: String,
    pub image: PathBuf,
    pub modules: PathBuf,
}

/// The kernel `xtask vm` boots (read once per test binary).
pub fn vm_kernel() -> &'static VmKernel {
    static KERNEL: OnceLock<VmKernel> = OnceLock::new();
    KERNEL.get_or_init(|| {
        let out = xtask()
            .arg("kernel")
            .stdin(Stdio::null())
            .output()
            .expect("run xtask kernel");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "xtask kernel failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
                .unwrap_or_else(|| panic!("xtask kernel printed no {name}: {text}"))
        };
        VmKernel {
            version: field("kernel "),
            image: PathBuf::from(field("image")),
            modules: PathBuf::from(field("modules")),
        }
    })
}

/// Builds the out-of-tree module in xtask/testdata/NAME (a `Kbuild` and
/// its sources) against the VM kernel's headers; the path of NAME.ko, kept
/// under target/vm/modules/VERSION/ (the build's own files are removed).
pub fn build_test_module(name: &str) -> PathBuf {
    let version = &vm_kernel().version;
    let headers = PathBuf::from(format!("/usr/src/linux-headers-{version}"));
    assert!(
        headers.join("Makefile").is_file(),
        "no {}: the VM kernel's headers are missing; install linux-headers-{version} \
         (`cargo xtask setup` does)",
        headers.display()
    );
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    let build = TempDir::new(&format!("kmod-{name}"));
    let files = std::fs::read_dir(&source)
        .unwrap_or_else(|e| panic!("{}: {e}", source.display()))
        .map(|e| e.expect("read the module's directory").path());
    for file in files {
        let to = build.path(&file.file_name().unwrap().to_string_lossy());
        std::fs::copy(&file, to).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    let out = Command::new("make")
        .arg("-C")
        .arg(&headers)
        .arg(format!("M={}", build.dir().display()))
        .arg("modules")
        .stdin(Stdio::null())
        .output()
        .expect("run make (`cargo xtask setup` installs it)");
    assert!(
        out.status.success(),
        "building the {name} module failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = target_dir().join("vm").join("modules").join(version);
    std::fs::create_dir_all(&dir).unwrap();
    let ko = dir.join(format!("{name}.ko"));
    // Through a rename: another test may be copying the one built before.
    // The build directory's name is unique to this build.
    let partial = dir.join(format!(
        ".{name}.ko.{}",
        build.dir().file_name().unwrap().to_string_lossy()
    ));
    std::fs::copy(build.path(&format!("{name}.ko")), &partial)
        .unwrap_or_else(|e| panic!("make left no {name}.ko: {e}"));
    std::fs::rename(&partial, &ko).unwrap();
    ko
}
