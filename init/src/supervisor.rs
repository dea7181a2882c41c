//! A crash-proof PID 1. When PID 1 exits or dies the kernel panics and the
//! whole test run is lost, so no bug in any command may take PID 1 down.
//! Catching panics is not enough (an abort, a stack overflow or a segfault
//! in a dependency still ends the process), so the work is split in two:
//!
//! - **PID 1, the supervisor**, stays tiny: it mounts the base file systems,
//!   forks the engine, reaps every child and, when the engine dies, prints
//!   ONE line and starts a new one. It never starts a thread or the tokio
//!   runtime, allocates next to nothing, and keeps its RSS small.
//! - **The engine**, a child and child subreaper, does everything else: the
//!   boot stages, the shell, the jobs. It is the session leader with the
//!   console as its controlling terminal, so Ctrl-C reaches its commands. It
//!   powers off or reboots itself (reboot(2) and the isa-debug-exit port work
//!   from any root process) after stopping its jobs.
//!
//! The fork happens before any thread exists, so the child is a clean copy.
//! The engine writes its phase (unattended boot / interactive shell / power
//! off requested) and the command it is about to run into one MAP_SHARED
//! anonymous page mapped before the fork; after a crash the supervisor reads
//! it to say what was running and to decide: a crash while unattended with
//! `myinit.debug_exit` powers off with 64+signal (nobody would type into a
//! prompt); otherwise a new engine goes straight to the shell. A crash loop
//! backs off and finally gives up and powers off with a non-zero status.
//!
//! Outside PID 1 the engine runs in-process as before, unless
//! `MYINIT_SUPERVISE=1` asks for the same split (so it can be tested on the
//! host; there the supervisor exits with the engine's status instead of
//! powering off).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::power::{self, last_command, map_page, EnginePage, Phase};

/// Set to `1` to run the supervisor outside PID 1 as well (host tests).
pub const SUPERVISE_ENV: &str = "MYINIT_SUPERVISE";

/// More crashes than this within `CRASH_WINDOW` is a crash loop: give up.
const MAX_CRASHES: usize = 5;
const CRASH_WINDOW: Duration = Duration::from_secs(60);
/// The longest pause before a restart (the pause doubles per recent crash).
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// How this process goes on after `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// No supervisor: run everything in this process (as before).
    Alone,
    /// The engine under a supervisor. `vm_init`: the supervisor is the
    /// VM's PID 1. `restarted`: a previous engine died; go to the shell.
    Engine { vm_init: bool, restarted: bool },
}

/// Becomes the supervisor if this is PID 1 (or `MYINIT_SUPERVISE=1`) and
/// returns only in the engine; otherwise returns `Role::Alone` at once.
/// Must be called before any thread exists.
pub fn start(is_pid1: bool) -> Role {
    if !is_pid1 && std::env::var_os(SUPERVISE_ENV).is_none_or(|v| v != "1") {
        return Role::Alone;
    }
    let page = match map_page() {
        Ok(page) => page,
        Err(e) => {
            eprintln!("myinit: no supervisor (shared page: {e}); running unsupervised");
            return Role::Alone;
        }
    };
    let supervisor = Supervisor::new(is_pid1, page);
    // A bug here must not end PID 1 either (the kernel would panic).
    match std::panic::catch_unwind(move || supervisor.run()) {
        Ok(role) => role,
        Err(_) if is_pid1 => {
            say("myinit: supervisor: internal error; powering off with status 1");
            power::off(1)
        }
        Err(_) => std::process::exit(1),
    }
}

struct Supervisor {
    vm_init: bool,
    /// `myinit.debug_exit`: an unattended crash powers off with a status.
    debug_exit: bool,
    page: &'static EnginePage,
    /// The console's mode at boot, given back to each new engine (a crashed
    /// line editor leaves the terminal raw).
    termios: Option<nix::sys::termios::Termios>,
}

/// What became of one engine.
enum Ending {
    Exited(i32),
    Signaled(Signal, bool),
}

impl Supervisor {
    fn new(vm_init: bool, page: &'static EnginePage) -> Self {
        let debug_exit = vm_init && crate::vmexit::debug_exit_enabled();
        let termios = nix::sys::termios::tcgetattr(std::io::stdin()).ok();
        if !vm_init {
            // Ctrl-C in a host terminal reaches the whole process group:
            // it is the engine's to handle, never the supervisor's end.
            // SAFETY: setting a signal to SIG_IGN installs no handler code.
            unsafe {
                let _ = signal(Signal::SIGINT, SigHandler::SigIgn);
                let _ = signal(Signal::SIGQUIT, SigHandler::SigIgn);
                libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
            }
        }
        Supervisor {
            vm_init,
            debug_exit,
            page,
            termios,
        }
    }

    fn run(self) -> Role {
        let mut crashes: VecDeque<Instant> = VecDeque::new();
        let mut restarted = false;
        loop {
            let first_phase = if restarted || !self.vm_init {
                Phase::Shell
            } else {
                Phase::Unattended
            };
            self.page.phase.store(first_phase as u32, Ordering::SeqCst);
            self.page.command_len.store(0, Ordering::SeqCst);
            if let Some(t) = &self.termios {
                let _ = nix::sys::termios::tcsetattr(
                    std::io::stdin(),
                    nix::sys::termios::SetArg::TCSANOW,
                    t,
                );
            }
            // SAFETY: no thread exists in the supervisor, so the child is
            // a consistent copy of this single-threaded process.
            let engine = match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    self.become_engine();
                    return Role::Engine {
                        vm_init: self.vm_init,
                        restarted,
                    };
                }
                Ok(ForkResult::Parent { child }) => child,
                Err(e) => {
                    say(&format!(
                        "myinit: supervisor: cannot start the engine: {}",
                        e.desc()
                    ));
                    std::thread::sleep(Duration::from_secs(1));
                    if next_pause(&mut crashes).is_none() {
                        say("myinit: supervisor: giving up");
                        if self.vm_init {
                            power::off(1);
                        }
                        std::process::exit(1);
                    }
                    continue;
                }
            };
            let ending = wait_for(engine);
            let phase = Phase::from_u32(self.page.phase.load(Ordering::SeqCst));
            let command = last_command(self.page);
            let running = if command.is_empty() {
                String::new()
            } else {
                format!(" while running '{command}'")
            };
            let (what, status) = match ending {
                Ending::Exited(code) if !self.vm_init => std::process::exit(code),
                Ending::Exited(code) => (format!("exited with status {code}"), code.max(1)),
                Ending::Signaled(sig, core) => (
                    format!(
                        "was killed by {}{}",
                        sig.as_str(),
                        if core { " (core dumped)" } else { "" }
                    ),
                    signal_status(sig),
                ),
            };
            let died = format!("myinit: engine (pid {engine}) {what}{running}");
            match phase {
                Phase::PowerOff if self.vm_init => {
                    let requested = self.page.power_status.load(Ordering::SeqCst);
                    say(&format!(
                        "{died} during power off; powering off with status {requested}"
                    ));
                    power::off(requested);
                }
                Phase::Reboot if self.vm_init => {
                    say(&format!("{died} during reboot; rebooting"));
                    power::reboot();
                }
                Phase::Unattended if self.debug_exit => {
                    say(&format!(
                        "{died} {}; powering off with status {status} (myinit.debug_exit)",
                        phase.describe()
                    ));
                    power::off(status);
                }
                _ => {}
            }
            if let Some(pause) = next_pause(&mut crashes) {
                say(&format!(
                    "{died} {}; starting a new shell",
                    phase.describe()
                ));
                std::thread::sleep(pause);
            } else {
                say(&format!(
                    "{died}; {} engine failures within {} s: giving up, {} with status {status}",
                    crashes.len(),
                    CRASH_WINDOW.as_secs(),
                    if self.vm_init {
                        "powering off"
                    } else {
                        "exiting"
                    }
                ));
                if self.vm_init {
                    power::off(status);
                }
                std::process::exit(status);
            }
            restarted = true;
        }
    }

    /// The child side of the fork: undo what was the supervisor's only.
    fn become_engine(&self) {
        if !self.vm_init {
            // SAFETY: restoring default dispositions; prctl with integers.
            unsafe {
                let _ = signal(Signal::SIGINT, SigHandler::SigDfl);
                let _ = signal(Signal::SIGQUIT, SigHandler::SigDfl);
                // A host supervisor that is killed takes its engine along
                // (which stops its jobs cleanly on SIGTERM).
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
            }
        }
    }
}

/// The status for an engine killed by signal N: 64+N. Not the shell's
/// 128+N, which does not fit the 0-123 that qemu's debug exit carries back.
fn signal_status(sig: Signal) -> i32 {
    (64 + sig as i32).min(123)
}

/// One line on the console in one write(2), so kernel messages do not
/// land in the middle of it.
fn say(line: &str) {
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

/// Counts a crash; the pause before the next start, or None to give up.
fn next_pause(crashes: &mut VecDeque<Instant>) -> Option<Duration> {
    let now = Instant::now();
    crashes.retain(|t| now.duration_since(*t) < CRASH_WINDOW);
    crashes.push_back(now);
    if crashes.len() > MAX_CRASHES {
        return None;
    }
    // 0 for a first crash, then 250 ms, 500 ms, 1 s ... up to MAX_BACKOFF.
    let pause = match crashes.len() as u32 - 1 {
        0 => Duration::ZERO,
        n => Duration::from_millis(250 << (n - 1).min(8)),
    };
    Some(pause.min(MAX_BACKOFF))
}

/// Reaps children until `engine` ends (orphans of a dead engine come here).
fn wait_for(engine: Pid) -> Ending {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == engine => return Ending::Exited(code),
            Ok(WaitStatus::Signaled(pid, sig, core)) if pid == engine => {
                return Ending::Signaled(sig, core)
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                // ECHILD cannot happen while the engine lives; do not spin.
                eprintln!("myinit: supervisor: waitpid: {}", e.desc());
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crash_loop_backs_off_then_gives_up() {
        let mut crashes = VecDeque::new();
        let pauses: Vec<_> = (0..MAX_CRASHES).map(|_| next_pause(&mut crashes)).collect();
        assert_eq!(pauses[0], Some(Duration::ZERO));
        assert_eq!(pauses[1], Some(Duration::from_millis(250)));
        assert_eq!(pauses[2], Some(Duration::from_millis(500)));
        assert!(pauses.iter().all(|p| p.is_some_and(|p| p <= MAX_BACKOFF)));
        assert_eq!(next_pause(&mut crashes), None);
    }
}
