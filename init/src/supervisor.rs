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
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::cmd::{usage, CommandSpec};
use crate::shell::Ctx;

/// Set to `1` to run the supervisor outside PID 1 as well (host tests).
pub const SUPERVISE_ENV: &str = "MYINIT_SUPERVISE";

/// More crashes than this within `CRASH_WINDOW` is a crash loop: give up.
const MAX_CRASHES: usize = 5;
const CRASH_WINDOW: Duration = Duration::from_secs(60);
/// The longest pause before a restart (the pause doubles per recent crash).
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// The bytes of the last command kept for the supervisor's line.
const COMMAND_BYTES: usize = 240;

/// What the engine is doing, as the supervisor needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Phase {
    /// Boot stages, autoexec, the countdowns: nobody is at the prompt.
    Unattended = 0,
    /// The interactive shell.
    Shell = 1,
    /// `poweroff STATUS` is under way (status in the page).
    PowerOff = 2,
    /// `reboot` is under way.
    Reboot = 3,
}

impl Phase {
    fn from_u32(v: u32) -> Phase {
        match v {
            1 => Phase::Shell,
            2 => Phase::PowerOff,
            3 => Phase::Reboot,
            _ => Phase::Unattended,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Phase::Unattended => "unattended (boot stages, autoexec or a countdown)",
            Phase::Shell => "in the shell",
            Phase::PowerOff => "powering off",
            Phase::Reboot => "rebooting",
        }
    }
}

/// The page shared between the supervisor and its engine. Atomics only:
/// it is zero-initialised by mmap, which is a valid state for all of them,
/// and the engine may die at any instruction.
#[repr(C)]
struct EnginePage {
    phase: AtomicU32,
    power_status: AtomicI32,
    command_len: AtomicU32,
    command: [AtomicU8; COMMAND_BYTES],
}

/// The shared page, once mapped (null in-process: then nothing is recorded).
static PAGE: AtomicPtr<EnginePage> = AtomicPtr::new(std::ptr::null_mut());

fn page() -> Option<&'static EnginePage> {
    let ptr = PAGE.load(Ordering::Acquire);
    // SAFETY: set once from a successful mmap that is never unmapped.
    (!ptr.is_null()).then(|| unsafe { &*ptr })
}

fn map_page() -> std::io::Result<&'static EnginePage> {
    // SAFETY: a fresh anonymous shared mapping of the struct's size; zeroed
    // memory is a valid EnginePage (atomics only).
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            std::mem::size_of::<EnginePage>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    PAGE.store(ptr.cast(), Ordering::Release);
    // SAFETY: just mapped, never unmapped.
    Ok(unsafe { &*ptr.cast::<EnginePage>() })
}

/// Whether this process is an engine under a supervisor.
pub fn is_engine() -> bool {
    page().is_some() && std::process::id() != 1
}

/// Records the engine's phase for the supervisor.
pub fn set_phase(phase: Phase) {
    if let Some(page) = page() {
        page.phase.store(phase as u32, Ordering::SeqCst);
    }
}

/// Tells the supervisor that a power off (`Some(status)`) or a reboot
/// (`None`) is under way, so it finishes the job if the engine dies now.
pub fn request_power(off: Option<i32>) {
    if let Some(page) = page() {
        if let Some(status) = off {
            page.power_status.store(status, Ordering::SeqCst);
        }
        set_phase(match off {
            Some(_) => Phase::PowerOff,
            None => Phase::Reboot,
        });
    }
}

/// Records the command the engine is about to run (truncated).
pub fn note_command(name: &str, args: &[String]) {
    let Some(page) = page() else {
        return;
    };
    let mut len = 0;
    let words = std::iter::once(name).chain(args.iter().map(String::as_str));
    'words: for (i, word) in words.enumerate() {
        let sep = if i == 0 { "" } else { " " };
        for c in sep.chars().chain(word.chars()) {
            let mut buf = [0u8; 4];
            let bytes = c.encode_utf8(&mut buf).as_bytes();
            if len + bytes.len() > COMMAND_BYTES {
                break 'words;
            }
            for b in bytes {
                page.command[len].store(*b, Ordering::Relaxed);
                len += 1;
            }
        }
    }
    page.command_len.store(len as u32, Ordering::SeqCst);
}

fn last_command(page: &EnginePage) -> String {
    let len = (page.command_len.load(Ordering::SeqCst) as usize).min(COMMAND_BYTES);
    let bytes: Vec<u8> = page.command[..len]
        .iter()
        .map(|b| b.load(Ordering::Relaxed))
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

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
            power_off(1)
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
                            power_off(1);
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
                    power_off(requested);
                }
                Phase::Reboot if self.vm_init => {
                    say(&format!("{died} during reboot; rebooting"));
                    reboot();
                }
                Phase::Unattended if self.debug_exit => {
                    say(&format!(
                        "{died} {}; powering off with status {status} (myinit.debug_exit)",
                        phase.describe()
                    ));
                    power_off(status);
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
                    power_off(status);
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

/// The supervisor's own power off: sync, report the status, power off;
/// PID 1 never returns from here (it goes on reaping if reboot(2) fails).
fn power_off(status: i32) -> ! {
    nix::unistd::sync();
    crate::vmexit::report_status(status);
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    reap_forever()
}

fn reboot() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    reap_forever()
}

fn reap_forever() -> ! {
    eprintln!("myinit: supervisor: reboot(2) failed; waiting");
    let _ = std::io::stderr().flush();
    loop {
        if waitpid(Pid::from_raw(-1), None).is_err() {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// `debug-crash segv|abort`: kills the engine on purpose, for the VM tests
/// of the supervisor. A hidden command (in no list, so `help`, completion
/// and the tests that walk `help` never run it) rather than a `kill`
/// builtin: it needs no pid, and it is exactly the two ways a Rust process
/// dies that `catch_unwind` cannot stop.
pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "debug-crash",
    usage: "debug-crash segv|abort",
    summary: "test only: kill the engine by SIGSEGV or abort()",
    help: "",
    run: debug_crash,
    cli: None,
}];

fn debug_crash(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let _ = ctx.out.flush();
    match args {
        [how] if how == "segv" => {
            // SAFETY: deliberately ends the process. std's own SIGSEGV
            // handler (stack overflow reports) is replaced by the default
            // action first, so raise() kills as a real segfault does.
            unsafe {
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                libc::raise(libc::SIGSEGV);
            }
            Ok(128 + libc::SIGSEGV)
        }
        [how] if how == "abort" => std::process::abort(),
        _ => Err(usage("expected segv or abort")),
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
