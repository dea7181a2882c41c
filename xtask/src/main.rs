//! Developer and VM tooling: `cargo xtask setup|test|…`.

mod bench;
mod initrd;
mod kernel;
mod lab;
mod readme;
mod setup;
mod vm;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "myinit developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (idempotent; quiet when all is there).
    Setup,
    /// Set up, then run fmt, clippy and every test (needs root).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        cargo_args: Vec<String>,
    },
    /// Fetch Debian's current kernel into target/vm-cache (or check --kernel) and print its version.
    Kernel(kernel::KernelArgs),
    /// Build the gzip'd cpio initrd: static myinit as /init, modules, initrd/ files.
    Initrd(initrd::InitrdArgs),
    /// Boot the initrd under qemu; exits with the guest's `poweroff STATUS`.
    Vm(Box<vm::VmArgs>),
    /// Measure myinit against the reference tools, side by side (root): droptrace, inject, boot, …
    Bench(bench::BenchArgs),
    /// Rewrite README.md's command reference from `myinit -c help`.
    Readme,
    /// Boot several VMs from one description (TOML), wired by their links.
    Lab(lab::LabArgs),
}

fn main() {
    let cli = Cli::parse();
    // Every task but `kernel` builds or runs something that needs the
    // toolchain pieces and packages; setup is quick when all is there.
    if !matches!(cli.task, Task::Setup | Task::Test { .. } | Task::Kernel(_)) {
        if let Err(e) = setup::run() {
            eprintln!("xtask: setup: {e:#}");
            std::process::exit(1);
        }
    }
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Test { cargo_args } => test(&cargo_args),
        Task::Kernel(args) => kernel::run(&args),
        Task::Initrd(args) => initrd::run(&args),
        Task::Bench(args) => bench::run(&args),
        Task::Readme => readme::run(),
        Task::Lab(args) => match lab::run(&args) {
            Ok(status) => std::process::exit(status),
            Err(e) => Err(e),
        },
        Task::Vm(args) => match vm::run(&args) {
            Ok(status) => std::process::exit(status),
            Err(e) => Err(e),
        },
    };
    if let Err(e) = result {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Cargo's target directory: builds and the VM cache (kernel, initrd) live there.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Runs a command inheriting stdio; fails with its exit status.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let status = std::process::Command::new(program)
        .args(args)
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run {program}: {e}"))?;
    anyhow::ensure!(
        status.success(),
        "{program} {} failed: {status}",
        args.join(" ")
    );
    Ok(())
}

fn test(cargo_args: &[String]) -> anyhow::Result<()> {
    setup::run()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo fmt --check");
    run(&cargo, &["fmt", "--all", "--check"])?;
    eprintln!("xtask: cargo clippy");
    run(
        &cargo,
        &["clippy", "--all-targets", "--quiet", "--", "-D", "warnings"],
    )?;
    eprintln!("xtask: cargo test");
    // Every test target runs even when one fails, so one run shows all.
    let mut args = vec!["test", "--no-fail-fast", "--all-targets"];
    args.extend(cargo_args.iter().map(String::as_str));
    let mut child = std::process::Command::new(&cargo)
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {cargo}: {e}"))?;
    let mut totals = TestTotals::default();
    let stdout = child.stdout.take().expect("piped stdout");
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line?;
        println!("{line}");
        totals.add(&line);
    }
    let status = child.wait()?;
    // One closing line for the whole run, across all test binaries.
    println!("{} passed, {} failed", totals.passed, totals.failed);
    anyhow::ensure!(status.success(), "cargo test failed: {status}");
    Ok(())
}

/// Sums libtest's "test result: ok. N passed; M failed; …" lines.
#[derive(Default, Debug, PartialEq)]
struct TestTotals {
    passed: u64,
    failed: u64,
}

impl TestTotals {
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(label), Some(number)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = number.parse::<u64>() else {
                continue;
            };
            match label {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_libtest_result_lines() {
        let mut t = TestTotals::default();
        t.add("test result: ok. 60 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.12s");
        t.add("test result: FAILED. 12 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.46s");
        t.add("running 3 tests");
        assert_eq!(
            t,
            TestTotals {
                passed: 72,
                failed: 1
            }
        );
    }
}
