//! myinit: the `/init` of small network test VMs. As PID 1 it stays a tiny
//! supervisor (supervisor.rs) and forks the engine that boots the VM
//! (boot.rs); otherwise it runs the same shell engine on a normal machine:
//! `myinit -c 'CMD; CMD'`, `myinit SCRIPT`, `myinit shell`.

mod boot;
mod capture;
mod cmd;
mod droptrace;
mod ebpf;
mod expect;
mod fakehost;
mod filter;
mod inject;
mod jobs;
mod kernel;
mod kmod;
mod net;
mod nettest;
mod power;
use myinit_packet as packet;
mod proc;
mod shell;
mod state;
mod supervisor;
mod tui;
mod util;
mod vmexit;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;

use shell::{Flow, Output, Shell};

/// eBPF-assisted networking init for network test VMs.
#[derive(Parser, Debug)]
#[command(name = "myinit", version, about)]
struct Args {
    /// Run these commands (separated by `;` or newlines) and exit with the last status.
    #[arg(short = 'c', value_name = "COMMANDS", conflicts_with = "script")]
    commands: Option<String>,
    /// A script file to run, or `shell` for the interactive shell.
    script: Option<PathBuf>,
}

fn main() {
    let boot_started = Instant::now();
    if std::process::id() == 1 {
        boot::mount_base();
    }
    // Before any thread or the runtime exists: PID 1 stays here as the
    // supervisor, and only the engine returns.
    let role = supervisor::start(std::process::id() == 1);
    // Whether this process acts as the VM's init (the engine under PID 1).
    let (is_pid1, restarted) = match role {
        supervisor::Role::Alone => (std::process::id() == 1, false),
        supervisor::Role::Engine { vm_init, restarted } => (vm_init, restarted),
    };
    if is_pid1 {
        boot::setup_console();
    }
    // Orphans of our children come to us, not to the machine's init (or
    // the supervisor), so the reaper works the same everywhere.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    // One line instead of the default hook's several: a panicking command
    // is reported by the shell and the shell goes on.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        eprintln!("myinit: panic{location}: {message}");
    }));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("myinit: cannot start the runtime: {e}");
            if is_pid1 {
                power::off(1);
            }
            std::process::exit(1);
        }
    };
    let state = state::State::start(&runtime, is_pid1);
    let mut shell = Shell::new(state.clone());
    if is_pid1 && restarted {
        boot::shell_again(&mut shell);
    }
    if is_pid1 {
        boot::run(&mut shell, boot_started);
    }
    if restarted {
        // A host engine (MYINIT_SUPERVISE=1) after a crash: the shell on stdin.
        let status = shell::editor::interactive(&mut shell);
        state.jobs.stop_all_reporting(&mut std::io::stdout());
        std::process::exit(status);
    }

    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    let mut out = Output::stdout();
    let status = match (&args.commands, &args.script) {
        (Some(commands), _) => {
            let flow = shell.run_source(commands.as_bytes(), "-c", &mut out);
            flow_status(flow, &shell)
        }
        (None, Some(script)) if script.as_os_str() == "shell" => {
            shell::editor::interactive(&mut shell)
        }
        (None, Some(script)) => match shell.run_file(script, &mut out) {
            Ok(flow) => flow_status(flow, &shell),
            Err(e) => {
                eprintln!("myinit: {e:#}");
                127
            }
        },
        (None, None) => shell::editor::interactive(&mut shell),
    };
    let status = match shell.finish_tests(&mut out) {
        Some(false) if status == 0 => 1,
        _ => status,
    };
    drop(out);
    state.jobs.stop_all_reporting(&mut std::io::stdout());
    std::process::exit(status);
}

fn flow_status(flow: Flow, shell: &Shell) -> i32 {
    match flow {
        Flow::Exit(status) => status,
        Flow::Continue | Flow::Stop => shell.last_status,
    }
}
