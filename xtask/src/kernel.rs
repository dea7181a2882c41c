//! `cargo xtask kernel`: the kernel the VM boots. By default Debian's
//! current `linux-image-*-amd64` (bookworm's 6.1); `--kernel-version 6.12`
//! bookworm-backports' (through the private apt state `setup` keeps for
//! backports). Fetched with `apt-get download` and unpacked with `dpkg -x`
//! into `target/vm-cache/<package>/` (never into the source tree);
//! `--kernel PATH [--modules DIR]` use the user's own build.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context as _};

use crate::target_dir;

/// The metapackage whose dependency names the current kernel package.
const META_PACKAGE: &str = "linux-image-amd64";

/// Which kernel to boot: Debian's (default) or the user's own.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KernelArgs {
    /// A kernel image (bzImage) to boot instead of Debian's.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// That kernel's modules: `lib/modules/VERSION` (holding `kernel/…`,
    /// optionally `modules.dep` and `modules.builtin`).
    #[arg(long, value_name = "DIR", requires = "kernel")]
    pub modules: Option<PathBuf>,
    /// Debian's kernel of this series: 6.1 (bookworm, the default) or 6.12
    /// (bookworm-backports).
    #[arg(long, value_name = "SERIES", conflicts_with = "kernel")]
    pub kernel_version: Option<String>,
}

/// The kernel series Debian gives us, and where: (series, from backports).
pub const SERIES: [(&str, bool); 2] = [("6.1", false), ("6.12", true)];

/// A kernel image and where its modules are.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// As `uname -r` will print it in the guest.
    pub version: String,
    pub image: PathBuf,
    /// `lib/modules/VERSION`, if the kernel has loadable modules.
    pub modules: Option<PathBuf>,
}

impl KernelArgs {
    pub fn resolve(&self) -> anyhow::Result<Kernel> {
        if let Some(image) = &self.kernel {
            return own_kernel(image, self.modules.as_deref());
        }
        let series = self.kernel_version.as_deref().unwrap_or("6.1");
        match SERIES.iter().find(|(s, _)| *s == series) {
            Some((_, false)) => debian_kernel(),
            Some((_, true)) => backports_kernel(series),
            None => bail!(
                "--kernel-version {series}: Debian's kernels here are {} (bookworm and bookworm-backports); \
                 boot another with --kernel IMAGE --modules DIR",
                SERIES.map(|s| s.0).join(" and ")
            ),
        }
    }
}

/// `cargo xtask kernel`: fetch (if needed) and report.
pub fn run(args: &KernelArgs) -> anyhow::Result<()> {
    let kernel = args.resolve()?;
    println!("kernel {}", kernel.version);
    println!("  image   {}", kernel.image.display());
    match &kernel.modules {
        Some(dir) => println!("  modules {}", dir.display()),
        None => println!("  modules (none)"),
    }
    Ok(())
}

fn own_kernel(image: &Path, modules: Option<&Path>) -> anyhow::Result<Kernel> {
    ensure!(
        image.is_file(),
        "--kernel {}: no such file",
        image.display()
    );
    if let Some(dir) = modules {
        ensure!(
            dir.is_dir(),
            "--modules {}: no such directory",
            dir.display()
        );
    }
    let version = match bzimage_version(image) {
        Some(v) => v,
        None => modules
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| {
                format!(
                    "{}: cannot read the kernel version (not a bzImage?); pass --modules lib/modules/VERSION",
                    image.display()
                )
            })?,
    };
    if let Some(dir) = modules {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.as_deref() != Some(version.as_str()) {
            eprintln!(
                "xtask: warning: --modules {} does not end in the kernel's version {version}; \
                 the initrd puts them under /lib/modules/{version}",
                dir.display()
            );
        }
    }
    Ok(Kernel {
        version,
        image: image.to_path_buf(),
        modules: modules.map(Path::to_path_buf),
    })
}

/// The version string a bzImage carries (boot protocol ≥ 2.00: a pointer at
/// 0x20e to a NUL-terminated string, relative to 0x200).
pub fn bzimage_version(image: &Path) -> Option<String> {
    let data = std::fs::read(image).ok()?;
    if data.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let ptr = u16::from_le_bytes([data[0x20e], data[0x20f]]) as usize + 0x200;
    let text = data.get(ptr..ptr.checked_add(256)?.min(data.len()))?;
    let end = text.iter().position(|&b| b == 0 || b == b' ')?;
    let version = std::str::from_utf8(&text[..end]).ok()?;
    (!version.is_empty()).then(|| version.to_string())
}

fn cache_dir() -> PathBuf {
    target_dir().join("vm-cache")
}

fn output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    ensure!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The package `linux-image-amd64` depends on, e.g. `linux-image-6.1.0-56-amd64`.
fn current_package() -> anyhow::Result<String> {
    let parse = |text: &str| {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .map(str::trim)
            .find(|p| p.starts_with("linux-image-") && *p != META_PACKAGE)
            .map(str::to_string)
    };
    if let Some(p) = output("apt-cache", &["depends", META_PACKAGE])
        .ok()
        .as_deref()
        .and_then(parse)
    {
        return Ok(p);
    }
    // A fresh machine: apt knows nothing until its lists are fetched.
    eprintln!("xtask: apt-get update (apt-cache does not know {META_PACKAGE})");
    output("apt-get", &["update", "-qq"])?;
    output("apt-cache", &["depends", META_PACKAGE])
        .ok()
        .as_deref()
        .and_then(parse)
        .with_context(|| format!("apt-cache depends {META_PACKAGE} names no linux-image package"))
}

/// The backports kernel of `series` (6.12): the package the backports'
/// `linux-image-amd64` depends on, checked to be of that series.
fn backports_kernel(series: &str) -> anyhow::Result<Kernel> {
    let cache = cache_dir();
    let lookup = || -> anyhow::Result<(crate::setup::Apt, String)> {
        let (apt, suite) = crate::setup::backports_apt()?;
        let text = apt
            .cache(&["show", &format!("{META_PACKAGE}/{suite}")])
            .with_context(|| format!("apt-cache show {META_PACKAGE}/{suite} failed"))?;
        let package = text
            .lines()
            .filter_map(|l| l.strip_prefix("Depends: "))
            .flat_map(|d| d.split(','))
            .map(|d| d.split_whitespace().next().unwrap_or(""))
            .find(|p| p.starts_with("linux-image-") && *p != META_PACKAGE)
            .with_context(|| format!("{META_PACKAGE}/{suite} depends on no linux-image package"))?
            .to_string();
        ensure!(
            package.starts_with(&format!("linux-image-{series}.")),
            "{suite} offers {package}, not a {series} kernel"
        );
        Ok((apt, package))
    };
    let (apt, package) = match lookup() {
        Ok(found) => found,
        Err(e) => {
            // Offline: a kernel of the series fetched before will do.
            let prefix = format!("linux-image-{series}.");
            let mut dirs: Vec<PathBuf> = std::fs::read_dir(&cache)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                        && p.join(".complete").exists()
                })
                .collect();
            dirs.sort();
            return match dirs.last().and_then(|d| cached(d)) {
                Some(k) => {
                    eprintln!(
                        "xtask: warning: {e:#}; using the cached kernel {}",
                        k.version
                    );
                    Ok(k)
                }
                None => Err(e.context(format!("finding Debian's {series} kernel"))),
            };
        }
    };
    let dir = cache.join(&package);
    if let Some(k) = cached(&dir) {
        return Ok(k);
    }
    fetch_with(&package, &dir, Some(&apt))?;
    cached(&dir).with_context(|| {
        format!(
            "{}: no boot/vmlinuz-* after unpacking {package}",
            dir.display()
        )
    })
}

/// A package unpacked in the cache, if complete.
fn cached(dir: &Path) -> Option<Kernel> {
    if !dir.join(".complete").exists() {
        return None;
    }
    let boot = std::fs::read_dir(dir.join("boot")).ok()?;
    let image = boot.filter_map(Result::ok).map(|e| e.path()).find(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
    })?;
    let version = image
        .file_name()?
        .to_string_lossy()
        .strip_prefix("vmlinuz-")?
        .to_string();
    let modules = dir.join("lib/modules").join(&version);
    Some(Kernel {
        version,
        image,
        modules: modules.is_dir().then_some(modules),
    })
}

fn debian_kernel() -> anyhow::Result<Kernel> {
    let cache = cache_dir();
    let package = match current_package() {
        Ok(p) => p,
        Err(e) => {
            // Offline: any kernel fetched before will do.
            let mut dirs: Vec<PathBuf> = std::fs::read_dir(&cache)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join(".complete").exists())
                .collect();
            dirs.sort();
            match dirs.last().and_then(|d| cached(d)) {
                Some(k) => {
                    eprintln!(
                        "xtask: warning: {e:#}; using the cached kernel {}",
                        k.version
                    );
                    return Ok(k);
                }
                None => return Err(e.context("finding Debian's kernel package")),
            }
        }
    };
    let dir = cache.join(&package);
    if let Some(k) = cached(&dir) {
        return Ok(k);
    }
    fetch(&package, &dir)?;
    cached(&dir).with_context(|| {
        format!(
            "{}: no boot/vmlinuz-* after unpacking {package}",
            dir.display()
        )
    })
}

/// `apt-get download` + `dpkg -x` into a scratch dir, then one rename, so a
/// concurrent or interrupted fetch never leaves a half-unpacked kernel.
fn fetch(package: &str, dir: &Path) -> anyhow::Result<()> {
    fetch_with(package, dir, None)
}

/// `fetch`, through `apt` (the backports state) when given.
fn fetch_with(package: &str, dir: &Path, apt: Option<&crate::setup::Apt>) -> anyhow::Result<()> {
    let cache = dir.parent().context("cache dir")?;
    std::fs::create_dir_all(cache)?;
    let scratch = cache.join(format!(".{package}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let result = (|| {
        eprintln!("xtask: fetching {package} (apt-get download)");
        let mut download = match apt {
            Some(apt) => apt.command(&["download", "-qq", package]),
            None => {
                let mut c = Command::new("apt-get");
                c.args(["download", "-qq", package]);
                c
            }
        };
        let out = download
            .current_dir(&scratch)
            .output()
            .context("cannot run apt-get")?;
        if !out.status.success() {
            bail!(
                "apt-get download {package} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let deb = std::fs::read_dir(&scratch)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .context("apt-get download left no .deb")?;
        let root = scratch.join("root");
        output(
            "dpkg",
            &["-x", &deb.to_string_lossy(), &root.to_string_lossy()],
        )?;
        std::fs::write(root.join(".complete"), package)?;
        match std::fs::rename(&root, dir) {
            Ok(()) => Ok(()),
            // Another xtask got there first.
            Err(_) if dir.join(".complete").exists() => Ok(()),
            Err(e) => Err(e).with_context(|| format!("moving the kernel to {}", dir.display())),
        }
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_bzimage_version_string() {
        let mut image = vec![0u8; 0x1000];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        // The string sits at 0x200 + 0x300.
        image[0x20e..0x210].copy_from_slice(&0x300u16.to_le_bytes());
        let text = b"6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP\0";
        image[0x500..0x500 + text.len()].copy_from_slice(text);
        let path = std::env::temp_dir().join(format!("xtask-bz-{}", std::process::id()));
        std::fs::write(&path, &image).unwrap();
        let version = bzimage_version(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(version.as_deref(), Some("6.1.0-56-amd64"));
    }

    #[test]
    fn a_file_without_the_header_has_no_version() {
        let path = std::env::temp_dir().join(format!("xtask-nobz-{}", std::process::id()));
        std::fs::write(&path, vec![0u8; 0x1000]).unwrap();
        let version = bzimage_version(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(version, None);
    }
}
