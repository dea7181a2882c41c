//! Developer and VM tooling: `cargo xtask setup|test|…`.

mod setup;

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
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Test { cargo_args } => test(&cargo_args),
    };
    if let Err(e) = result {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

/// Runs a command inheriting stdio; fails with its exit status.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let status = std::process::Command::new(program)
        .args(args)
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run {program}: {e}"))?;
    anyhow::ensure!(status.success(), "{program} {} failed: {status}", args.join(" "));
    Ok(())
}

fn test(cargo_args: &[String]) -> anyhow::Result<()> {
    setup::run()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo fmt --check");
    run(&cargo, &["fmt", "--all", "--check"])?;
    eprintln!("xtask: cargo clippy");
    run(&cargo, &["clippy", "--all-targets", "--quiet", "--", "-D", "warnings"])?;
    eprintln!("xtask: cargo test");
    let mut args = vec!["test"];
    args.extend(cargo_args.iter().map(String::as_str));
    run(&cargo, &args)
}
