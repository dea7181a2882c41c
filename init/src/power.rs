//! The engine's shared page and the one way to power off or reboot.
//!
//! The page (a shared anonymous mapping made before the engine is forked)
//! tells the supervisor what the engine is doing: its phase, a power off
//! or reboot under way, the last command. The supervisor finishes a power
//! off its engine started if the engine dies; either powers off through
//! `off` and `reboot` here.

use std::io::Write;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicU8, Ordering};
use std::time::Duration;

use nix::sys::wait::waitpid;
use nix::unistd::Pid;

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
    pub fn from_u32(v: u32) -> Phase {
        match v {
            1 => Phase::Shell,
            2 => Phase::PowerOff,
            3 => Phase::Reboot,
            _ => Phase::Unattended,
        }
    }

    pub fn describe(self) -> &'static str {
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
pub struct EnginePage {
    pub phase: AtomicU32,
    pub power_status: AtomicI32,
    pub command_len: AtomicU32,
    pub command: [AtomicU8; COMMAND_BYTES],
}

/// The shared page, once mapped (null in-process: then nothing is recorded).
static PAGE: AtomicPtr<EnginePage> = AtomicPtr::new(std::ptr::null_mut());

fn page() -> Option<&'static EnginePage> {
    let ptr = PAGE.load(Ordering::Acquire);
    // SAFETY: set once from a successful mmap that is never unmapped.
    (!ptr.is_null()).then(|| unsafe { &*ptr })
}

pub fn map_page() -> std::io::Result<&'static EnginePage> {
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
pub fn request(off: Option<i32>) {
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

pub fn last_command(page: &EnginePage) -> String {
    let len = (page.command_len.load(Ordering::SeqCst) as usize).min(COMMAND_BYTES);
    let bytes: Vec<u8> = page.command[..len]
        .iter()
        .map(|b| b.load(Ordering::Relaxed))
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Powers the machine off after syncing, with `status` for the host (the
/// debug-exit port). As the VM's init only: PID 1 or its engine (reboot(2)
/// and the port work from any root process). Never returns.
pub fn off(status: i32) -> ! {
    // First, so that the supervisor finishes the power off if we die now.
    request(Some(status));
    nix::unistd::sync();
    crate::vmexit::report_status(status);
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    failed(status)
}

/// Reboots after syncing. Never returns.
pub fn reboot() -> ! {
    request(None);
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    failed(0)
}

/// reboot(2) only returns on error. An engine leaves it to its supervisor
/// (which tries again); PID 1 must not exit, so it goes on reaping.
fn failed(status: i32) -> ! {
    if is_engine() {
        std::process::exit(status);
    }
    eprintln!("myinit: reboot(2) failed; waiting");
    let _ = std::io::stderr().flush();
    loop {
        if waitpid(Pid::from_raw(-1), None).is_err() {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}
