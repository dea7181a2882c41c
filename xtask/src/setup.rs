//! `cargo xtask setup`: installs what is missing, and nothing else — the
//! nightly toolchain's rust-src, the musl target, bpf-linker (built against
//! nightly's own libLLVM, see ENVIRONMENT.md) and the Debian packages the
//! tests and the VM use. Quiet when everything is already there.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context as _};

use crate::run as run_cmd;

/// Debian packages the tests and `cargo xtask vm` use.
const DEBIAN_PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "tmux",
    "qemu-system-x86",
    "python3",
    "procps",
];

const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn run() -> anyhow::Result<()> {
    debian_packages()?;
    rust_components()?;
    bpf_linker()?;
    Ok(())
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|pkg| {
            !output("dpkg-query", &["-W", "-f=${Status}", pkg])
                .is_some_and(|s| s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing Debian packages: {}", missing.join(" "));
    run_cmd("apt-get", &["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    let status = Command::new("apt-get")
        .args(&args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    Ok(())
}

fn rust_components() -> anyhow::Result<()> {
    let toolchains = output("rustup", &["toolchain", "list"]).unwrap_or_default();
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        eprintln!("setup: installing the nightly toolchain");
        run_cmd(
            "rustup",
            &["toolchain", "install", "nightly", "--profile", "minimal"],
        )?;
    }
    let nightly = output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .unwrap_or_default();
    if !nightly.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("setup: adding rust-src to nightly");
        run_cmd(
            "rustup",
            &["component", "add", "rust-src", "--toolchain", "nightly"],
        )?;
    }
    let targets = output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if !targets.lines().any(|l| l == "x86_64-unknown-linux-musl") {
        eprintln!("setup: adding the x86_64-unknown-linux-musl target");
        run_cmd("rustup", &["target", "add", "x86_64-unknown-linux-musl"])?;
    }
    let components = output("rustup", &["component", "list", "--installed"]).unwrap_or_default();
    for component in ["clippy", "rustfmt"] {
        if !components.lines().any(|l| l.starts_with(component)) {
            eprintln!("setup: adding {component}");
            run_cmd("rustup", &["component", "add", component])?;
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
    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM {llvm_major} (a few minutes)"
    );
    let status = Command::new("cargo")
        .args([
            "install",
            "--quiet",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
            &format!("llvm-{llvm_major}"),
        ])
        .env("LLVM_PREFIX", &prefix)
        .status()
        .context("running cargo install bpf-linker")?;
    if !status.success() {
        bail!("building bpf-linker failed");
    }
    Ok(())
}
