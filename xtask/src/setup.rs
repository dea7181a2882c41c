//! `cargo xtask setup`: installs what is missing, and nothing else — the
//! Debian packages the tests and the VM use (with the headers of the kernel
//! the VM boots, for the tests' own modules), the nightly toolchain's
//! rust-src, the musl target and bpf-linker (built against nightly's own
//! libLLVM, see ENVIRONMENT.md).
//!
//! One line per step, nothing when everything is there. What the tools say
//! goes to a log under `target/setup/`; its last lines are shown only when a
//! step fails. Nothing is removed without a line saying what and why: apt
//! runs a simulation first, and QEMU's packages are kept at the version
//! already installed so that none has to go (see `QEMU_FAMILY`).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context as _};

use crate::kernel::KernelArgs;
use crate::{target_dir, workspace_root};

/// Debian packages the tests and `cargo xtask vm` use.
const DEBIAN_PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "tmux",
    "qemu-system-x86",
    "qemu-utils",
    "python3",
    "procps",
    // Tests read the pcap files myinit writes with these.
    "tcpdump",
    "tshark",
    // The reference inject's timing is measured against.
    "tcpreplay",
    // To inspect TC/eBPF attachments in tests.
    "bpftool",
    // `cargo xtask bench`: the generator (trafgen), the references it
    // measures myinit against, and the boot floor's static busybox.
    "netsniff-ng",
    "bpftrace",
    "busybox-static",
    // rdisc6: a Router Solicitation from a test (fakehost's RAs).
    "ndisc6",
    // The original's users judge captures with jq; the compatibility test too.
    "jq",
    // Tests build their kernel modules (xtask/testdata) with Kbuild.
    "make",
    "gcc",
];

/// QEMU's packages break each other across versions (qemu-utils 10 breaks
/// qemu-system-common << 8), so a missing one is installed at the version of
/// the ones already there rather than at Debian's candidate — which would
/// make apt remove the installed ones (CI's machines come with a newer
/// qemu-utils from backports).
const QEMU_FAMILY: &[&str] = &[
    "qemu-utils",
    "qemu-system-x86",
    "qemu-system-common",
    "qemu-system-data",
];

/// What qemu-system-x86 needs at its own suite's version: `pkg/suite` on
/// the package alone does not carry its dependencies along (seen on a
/// fresh bookworm machine), so they are asked for from that suite too.
const QEMU_DEPENDS: &[&str] = &["qemu-system-common", "qemu-system-data", "seabios"];

/// What a package must give once installed: checked after installing so a
/// half-working install is a failed step, not a later puzzle.
const PROGRAMS: &[(&str, &str, &str)] = &[
    ("qemu-system-x86", "qemu-system-x86_64", "--version"),
    ("qemu-utils", "qemu-img", "--version"),
    ("tcpdump", "tcpdump", "--version"),
    ("tshark", "tshark", "--version"),
    ("bpftool", "bpftool", "version"),
    ("bpftrace", "bpftrace", "--version"),
    ("tcpreplay", "tcpreplay", "-V"),
    ("busybox-static", "busybox", "--help"),
    ("jq", "jq", "--version"),
    ("make", "make", "--version"),
    ("gcc", "gcc", "--version"),
];

/// Without this, installing tshark asks whether non-root users may capture.
const DEBCONF_PRESEED: &str = "wireshark-common wireshark-common/install-setuid boolean false\n";

const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn run() -> anyhow::Result<()> {
    let headers = vm_kernel_headers()?;
    let mut packages = DEBIAN_PACKAGES.to_vec();
    packages.push(&headers);
    debian_packages(&packages)?;
    // Kbuild's entry point: what `make -C /usr/src/<package>` needs.
    let makefile = Path::new("/usr/src").join(&headers).join("Makefile");
    ensure!(
        makefile.is_file(),
        "{headers} is installed but {} is missing",
        makefile.display()
    );
    rust_components()?;
    bpf_linker()?;
    Ok(())
}

fn say(line: &str) {
    eprintln!("setup: {line}");
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `target/setup/NAME`, shown relative to the workspace when it is inside.
fn log_path(name: &str) -> PathBuf {
    target_dir().join("setup").join(name)
}

fn shown(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Runs `cmd` with stdin closed and stdout/stderr appended to `log`; a
/// failure carries the log's last lines, the only time they are shown.
fn logged(mut cmd: Command, what: &str, log: &Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let line = format!("{cmd:?}");
    writeln!(file, "\n$ {line}")?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    bail!(
        "{what} failed ({status}); the end of {}:\n{tail}",
        shown(log)
    )
}

/// `name → version` of the given packages dpkg has installed.
fn installed_versions(packages: &[&str]) -> BTreeMap<String, String> {
    packages
        .iter()
        .filter_map(|pkg| {
            let out = output("dpkg-query", &["-W", "-f=${Status}\t${Version}", pkg])?;
            let (status, version) = out.split_once('\t')?;
            status
                .contains("install ok installed")
                .then(|| (pkg.to_string(), version.to_string()))
        })
        .collect()
}

/// dpkg's version order (epochs, `~`): only dpkg gets it exactly right.
fn dpkg_newer(a: &str, b: &str) -> bool {
    Command::new("dpkg")
        .args(["--compare-versions", a, ">>", b])
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The version a missing member of `QEMU_FAMILY` must have: the newest
/// version of the family already installed, if any is.
fn family_pin(
    installed: &BTreeMap<String, String>,
    newer: impl Fn(&str, &str) -> bool,
) -> Option<String> {
    installed
        .iter()
        .filter(|(pkg, _)| QEMU_FAMILY.contains(&pkg.as_str()))
        .map(|(_, v)| v.as_str())
        .reduce(|a, b| if newer(b, a) { b } else { a })
        .map(str::to_string)
}

/// apt with its options: the system's sources, or those plus the release's
/// backports in a private state directory (the system's lists stay as
/// they are).
#[derive(Debug, Default)]
pub(crate) struct Apt {
    options: Vec<String>,
}

impl Apt {
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            // Another apt on the machine holds the lock for a while at most.
            .args(["-o", "DPkg::Lock::Timeout=300"]);
        for option in &self.options {
            cmd.args(["-o", option]);
        }
        cmd.args(args);
        cmd
    }

    /// The system's sources plus `SUITE-backports` from the same mirror.
    pub(crate) fn with_backports(codename: &str, mirror: &str) -> anyhow::Result<Self> {
        let dir = target_dir().join("setup").join("apt");
        std::fs::create_dir_all(dir.join("lists").join("partial"))?;
        let suite = format!("{codename}-backports");
        let mut sources = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
        let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
        let signed = if Path::new(keyring).exists() {
            format!(" [signed-by={keyring}]")
        } else {
            String::new()
        };
        sources.push_str(&format!("\ndeb{signed} {mirror} {suite} main\n"));
        let list = dir.join("sources.list");
        std::fs::write(&list, sources)?;
        Ok(Apt {
            options: vec![
                format!("Dir::Etc::sourcelist={}", list.display()),
                format!("Dir::State::lists={}", dir.join("lists").display()),
                // No cache file: the system's must not describe our lists.
                "Dir::Cache::pkgcache=".into(),
                "Dir::Cache::srcpkgcache=".into(),
                // target/ may be out of reach of apt's unprivileged downloader.
                "APT::Sandbox::User=root".into(),
            ],
        })
    }

    pub(crate) fn cache(&self, args: &[&str]) -> Option<String> {
        let mut cmd = Command::new("apt-cache");
        for option in &self.options {
            cmd.args(["-o", option]);
        }
        let out = cmd.args(args).stdin(Stdio::null()).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The suite (e.g. `bookworm-backports`) that offers `pkg` at `version`.
    fn suite_offering(&self, pkg: &str, version: &str) -> Option<String> {
        madison_suite(&self.cache(&["madison", pkg])?, version)
    }

    fn install_args<'a>(&'a self, requests: &'a [String], simulate: bool) -> Vec<&'a str> {
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend([
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
        ]);
        if simulate {
            args.push("-s");
        }
        args.extend(requests.iter().map(String::as_str));
        args
    }
}

/// The suite of the first `apt-cache madison` line
/// (`pkg | version | URI suite/component arch Packages`) with `version`.
fn madison_suite(text: &str, version: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let cols: Vec<&str> = l.split('|').map(str::trim).collect();
        let suite = cols.get(2)?.split_whitespace().nth(1)?.split('/').next()?;
        (cols.get(1) == Some(&version)).then(|| suite.to_string())
    })
}

/// Whether an `apt-cache madison` listing has a line from `suite`.
fn madison_offers(text: &str, suite: &str) -> bool {
    text.lines().any(|l| {
        l.split('|')
            .nth(2)
            .and_then(|c| c.split_whitespace().nth(1))
            .and_then(|s| s.split('/').next())
            == Some(suite)
    })
}

/// apt's own lines for the packages an install would remove
/// (`Remv NAME [VERSION]` of `apt-get -s install`).
fn removal_lines(simulation: &str) -> Vec<&str> {
    simulation
        .lines()
        .filter(|l| l.starts_with("Remv "))
        .collect()
}

/// apt with the release's backports in the private state, its lists
/// fetched once (`apt-get update`) when they are not there yet: where
/// `cargo xtask kernel --kernel-version 6.12` finds bookworm-backports'
/// kernel.
pub(crate) fn backports_apt() -> anyhow::Result<(Apt, String)> {
    let (codename, mirror) = release_and_mirror()
        .context("/etc/os-release names no VERSION_CODENAME: cannot tell which backports to use")?;
    let apt = Apt::with_backports(&codename, &mirror)?;
    let suite = format!("{codename}-backports");
    let lists = target_dir().join("setup").join("apt").join("lists");
    let fetched = std::fs::read_dir(&lists)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.contains(&format!("_{suite}_")) && name.contains("Packages")
        });
    if !fetched {
        let log = log_path("apt-backports.log");
        say(&format!(
            "apt-get update with {suite} (log: {})",
            shown(&log)
        ));
        logged(apt.command(&["update", "-q"]), "apt-get update", &log)?;
    }
    Ok((apt, suite))
}

/// The release's codename and the mirror its main suite comes from, read
/// from `/etc/os-release` and `apt-cache policy` (not assumed).
fn release_and_mirror() -> Option<(String, String)> {
    let os = std::fs::read_to_string("/etc/os-release").ok()?;
    let codename = os
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))?
        .trim_matches('"')
        .to_string();
    let policy = output("apt-cache", &["policy"]).unwrap_or_default();
    let mirror = policy
        .lines()
        .find_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            (words.len() >= 3 && words[2] == format!("{codename}/main"))
                .then(|| words[1].to_string())
        })
        .unwrap_or_else(|| "http://deb.debian.org/debian".into());
    Some((codename, mirror))
}

/// The headers package of the kernel the VM boots (as `cargo xtask kernel`
/// resolves it, fetching it if need be), e.g. `linux-headers-6.1.0-57-amd64`
/// for `linux-image-6.1.0-57-amd64`: a module built against other headers
/// does not load (vermagic, symbol CRCs).
fn vm_kernel_headers() -> anyhow::Result<String> {
    let kernel = KernelArgs::default()
        .resolve()
        .context("the VM's kernel, whose headers the tests' modules build against")?;
    Ok(format!("linux-headers-{}", kernel.version))
}

fn debian_packages(packages: &[&str]) -> anyhow::Result<()> {
    let installed = installed_versions(&[packages, QEMU_FAMILY].concat());
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|pkg| !installed.contains_key(*pkg))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let log = log_path("apt.log");
    let _ = std::fs::remove_file(&log);
    say(&format!("apt-get update (log: {})", shown(&log)));
    let mut apt = Apt::default();
    logged(apt.command(&["update", "-q"]), "apt-get update", &log)?;

    // `pkg/suite` rather than `pkg=version`: apt then also takes the
    // dependencies that must match (qemu-system-common, seabios) from that
    // suite, where `=version` would leave them at the candidate and fail.
    let family: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|p| QEMU_FAMILY.contains(p))
        .collect();
    let mut requests: Vec<String> = missing
        .iter()
        .filter(|p| !family.contains(p))
        .map(|p| p.to_string())
        .collect();
    let pin = family_pin(&installed, dpkg_newer);
    let suite = match (&pin, family.first()) {
        (Some(version), Some(first)) => {
            let mut suite = apt.suite_offering(first, version);
            if suite.is_none() {
                if let Some((codename, mirror)) = release_and_mirror() {
                    say(&format!(
                        "apt-get update with {codename}-backports, for {} at the installed QEMU's {version}",
                        family.join(" ")
                    ));
                    apt = Apt::with_backports(&codename, &mirror)?;
                    logged(apt.command(&["update", "-q"]), "apt-get update", &log)?;
                    suite = apt.suite_offering(first, version);
                }
            }
            if suite.is_none() {
                say(&format!(
                    "no {} {version} to match the installed QEMU: taking Debian's",
                    family.join(" ")
                ));
                apt = Apt::default();
            }
            suite
        }
        _ => None,
    };
    requests.extend(family.iter().map(|p| match &suite {
        Some(suite) => format!("{p}/{suite}"),
        None => p.to_string(),
    }));
    if let (Some(suite), true) = (&suite, family.contains(&"qemu-system-x86")) {
        for dep in QEMU_DEPENDS {
            let offered = apt
                .cache(&["madison", dep])
                .is_some_and(|t| madison_offers(&t, suite));
            let request = format!("{dep}/{suite}");
            if offered && !requests.contains(&request) {
                requests.push(request);
            }
        }
    }

    let simulation = simulate(&apt, &requests, &log)?;
    let removals = removal_lines(&simulation);
    if !removals.is_empty() {
        // apt's resolver has its reasons (Breaks, Conflicts); its log has them.
        say(&format!(
            "apt-get install {} removes (log: {}):",
            requests.join(" "),
            shown(&log)
        ));
        for line in removals {
            say(&format!("  {line}"));
        }
    }
    if missing.contains(&"tshark") {
        preseed_debconf()?;
    }
    say(&format!("apt-get install {}", requests.join(" ")));
    logged(
        apt.command(&apt.install_args(&requests, false)),
        "apt-get install",
        &log,
    )?;
    check_programs(&missing)
}

/// `apt-get -s install`: what apt would do, as it says it (also logged).
fn simulate(apt: &Apt, requests: &[String], log: &Path) -> anyhow::Result<String> {
    let out = apt
        .command(&apt.install_args(requests, true))
        .stdin(Stdio::null())
        .output()
        .context("running apt-get -s")?;
    let text = String::from_utf8_lossy(&out.stdout);
    {
        use std::io::Write as _;
        let mut file = OpenOptions::new().create(true).append(true).open(log)?;
        writeln!(file, "\n$ apt-get -s install {}", requests.join(" "))?;
        file.write_all(&out.stdout)?;
        file.write_all(&out.stderr)?;
    }
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        bail!(
            "apt-get cannot install {} ({last}); see {}",
            requests.join(" "),
            shown(log)
        );
    }
    Ok(text.into_owned())
}

/// Answers tshark's question before apt asks it.
fn preseed_debconf() -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut child = Command::new("debconf-set-selections")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run debconf-set-selections")?;
    child
        .stdin
        .take()
        .context("debconf-set-selections stdin")?
        .write_all(DEBCONF_PRESEED.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "debconf-set-selections failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Each newly installed package's program runs.
fn check_programs(installed_now: &[&str]) -> anyhow::Result<()> {
    for (pkg, program, arg) in PROGRAMS {
        if !installed_now.contains(pkg) {
            continue;
        }
        let ok = Command::new(program)
            .arg(arg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!("{pkg} is installed but `{program} {arg}` fails");
        }
    }
    Ok(())
}

fn rustup(log: &Path, line: &str, args: &[&str]) -> anyhow::Result<()> {
    say(&format!("{line} (log: {})", shown(log)));
    let mut cmd = Command::new("rustup");
    cmd.args(args);
    let what: Vec<&str> = args.iter().take(2).copied().collect();
    logged(cmd, &format!("rustup {}", what.join(" ")), log)
}

fn rust_components() -> anyhow::Result<()> {
    let log = log_path("rustup.log");
    // Each run's log starts afresh, so the shown tail is this run's.
    let _ = std::fs::remove_file(&log);
    let toolchains = output("rustup", &["toolchain", "list"]).unwrap_or_default();
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        rustup(
            &log,
            "installing the nightly toolchain",
            &["toolchain", "install", "nightly", "--profile", "minimal"],
        )?;
    }
    let nightly = output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .unwrap_or_default();
    if !nightly.lines().any(|l| l.starts_with("rust-src")) {
        rustup(
            &log,
            "adding rust-src to nightly",
            &["component", "add", "rust-src", "--toolchain", "nightly"],
        )?;
    }
    let targets = output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if !targets.lines().any(|l| l == "x86_64-unknown-linux-musl") {
        rustup(
            &log,
            "adding the x86_64-unknown-linux-musl target",
            &["target", "add", "x86_64-unknown-linux-musl"],
        )?;
    }
    let components = output("rustup", &["component", "list", "--installed"]).unwrap_or_default();
    for component in ["clippy", "rustfmt"] {
        if !components.lines().any(|l| l.starts_with(component)) {
            rustup(
                &log,
                &format!("adding {component}"),
                &["component", "add", component],
            )?;
        }
    }
    Ok(())
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
        })
}

fn bpf_linker() -> anyhow::Result<()> {
    // Under `rustup run nightly`, as aya-build runs it: libLLVM is found there.
    let installed =
        output("rustup", &["run", "nightly", "bpf-linker", "--version"]).unwrap_or_default();
    if installed.contains(BPF_LINKER_VERSION) {
        return Ok(());
    }
    // No release binaries can be fetched here and Debian has no LLVM 22, so
    // bpf-linker links against the nightly toolchain's own libLLVM.
    let sysroot = output("rustc", &["+nightly", "--print", "sysroot"])
        .context("rustc +nightly --print sysroot")?;
    let libdir = PathBuf::from(sysroot.trim()).join("lib");
    let libllvm = std::fs::read_dir(&libdir)
        .with_context(|| format!("reading {}", libdir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .with_context(|| format!("no libLLVM.so.* in {}", libdir.display()))?;
    let version = output("rustc", &["+nightly", "-vV"]).unwrap_or_default();
    let llvm_major = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("cannot read nightly's LLVM version")?
        .to_string();
    // The binary keeps an rpath to this prefix, so it lives in CARGO_HOME.
    let prefix = cargo_home().join("bpf-linker-llvm");
    std::fs::create_dir_all(prefix.join("lib"))?;
    // Both the link-time name and the soname, so the binary also runs alone.
    let soname = libllvm.file_name().context("libLLVM path")?.to_owned();
    for name in [std::ffi::OsStr::new("libLLVM.so"), soname.as_os_str()] {
        let link = prefix.join("lib").join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&libllvm, &link)?;
    }
    let log = log_path("bpf-linker.log");
    let _ = std::fs::remove_file(&log);
    say(&format!(
        "building bpf-linker {BPF_LINKER_VERSION} against LLVM {llvm_major} (a few minutes; log: {})",
        shown(&log)
    ));
    let mut cmd = Command::new("cargo");
    cmd.args([
        "install",
        "bpf-linker",
        "--version",
        BPF_LINKER_VERSION,
        "--no-default-features",
        "--features",
        &format!("llvm-{llvm_major}"),
    ])
    .env("LLVM_PREFIX", &prefix);
    logged(cmd, "cargo install bpf-linker", &log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_qemu_packages_follow_the_newest_installed_qemu_package() {
        let newer = |a: &str, b: &str| a > b;
        let installed = BTreeMap::from([
            (
                "qemu-utils".to_string(),
                "1:10.0.2+ds-2~bpo12+1".to_string(),
            ),
            ("iproute2".to_string(), "9.9".to_string()),
        ]);
        assert_eq!(
            family_pin(&installed, newer).as_deref(),
            Some("1:10.0.2+ds-2~bpo12+1")
        );
        let installed = BTreeMap::from([
            ("qemu-system-common".to_string(), "1:7.2".to_string()),
            ("qemu-system-x86".to_string(), "1:8.0".to_string()),
        ]);
        assert_eq!(family_pin(&installed, newer).as_deref(), Some("1:8.0"));
        // No QEMU installed: nothing to follow, Debian's candidate it is.
        let installed = BTreeMap::from([("tcpdump".to_string(), "4.99".to_string())]);
        assert_eq!(family_pin(&installed, newer), None);
    }

    #[test]
    fn dpkg_orders_versions_by_epoch_and_tilde() {
        assert!(dpkg_newer(
            "1:10.0.2+ds-2+deb13u1~bpo12+1",
            "1:7.2+dfsg-7+deb12u18+b3"
        ));
        assert!(!dpkg_newer("1.0~rc1", "1.0"));
        assert!(dpkg_newer("1:0.1", "9.9"));
    }

    #[test]
    fn madison_tells_whether_a_suite_offers_a_package() {
        let text = "\
   seabios | 1.16.3-2~bpo12+1 | http://deb.debian.org/debian bookworm-backports/main amd64 Packages
   seabios |   1.16.2-1 | http://deb.debian.org/debian bookworm/main amd64 Packages
";
        assert!(madison_offers(text, "bookworm-backports"));
        assert!(madison_offers(text, "bookworm"));
        assert!(!madison_offers(text, "bookworm-security"));
        assert!(!madison_offers("", "bookworm"));
    }

    #[test]
    fn madison_names_the_suite_that_has_the_version() {
        let text = "\
qemu-system-x86 | 1:10.0.2+ds-2+deb13u1~bpo12+1 | http://deb.debian.org/debian bookworm-backports/main amd64 Packages
qemu-system-x86 | 1:7.2+dfsg-7+deb12u18+b3 | http://deb.debian.org/debian bookworm/main amd64 Packages
qemu-system-x86 | 1:7.2+dfsg-7+deb12u15 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
";
        let suite = |v| madison_suite(text, v);
        assert_eq!(
            suite("1:10.0.2+ds-2+deb13u1~bpo12+1").as_deref(),
            Some("bookworm-backports")
        );
        assert_eq!(
            suite("1:7.2+dfsg-7+deb12u15").as_deref(),
            Some("bookworm-security")
        );
        assert_eq!(suite("1:7.2"), None);
    }

    const SIMULATION: &str = "\
NOTE: This is only a simulation!
Reading package lists...
The following packages will be REMOVED:
  qemu-utils
Remv qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]
Inst qemu-system-common (1:7.2+dfsg-7+deb12u18+b3 Debian:12.11/stable [amd64])
Inst libfoo1 [1.0-1] (1.0-2 Debian:12.11/stable [amd64])
Inst qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.11/stable [amd64])
Conf qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.11/stable [amd64])
";

    #[test]
    fn apt_s_removal_lines_are_shown_as_apt_wrote_them() {
        assert_eq!(
            removal_lines(SIMULATION),
            ["Remv qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]"]
        );
        assert!(removal_lines("Reading package lists...\n").is_empty());
    }
}
