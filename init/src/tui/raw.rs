//! The single-key console mode of the boot countdowns and `droptrace watch`:
//! no echo, no line buffering, but signals and output processing kept.

use std::time::Duration;

use nix::sys::termios::{self, LocalFlags, SetArg, Termios};

/// The console in non-canonical, no-echo mode while this guard lives, so a
/// single key (no Enter) can be read; the old mode comes back on drop.
pub struct RawConsole {
    saved: Option<Termios>,
}

impl RawConsole {
    /// Switches stdin if it is a terminal; otherwise the guard is inactive.
    pub fn new() -> Self {
        let stdin = std::io::stdin();
        if !nix::unistd::isatty(&stdin).unwrap_or(false) {
            return RawConsole { saved: None };
        }
        let saved = termios::tcgetattr(&stdin).ok();
        if let Some(saved) = &saved {
            let mut raw = saved.clone();
            raw.local_flags
                .remove(LocalFlags::ICANON | LocalFlags::ECHO);
            let _ = termios::tcsetattr(&stdin, SetArg::TCSANOW, &raw);
        }
        RawConsole { saved }
    }

    /// Whether stdin is a terminal we switched.
    pub fn is_active(&self) -> bool {
        self.saved.is_some()
    }

    /// True if a key arrives within `timeout`; the key (and the rest of an
    /// escape sequence) is consumed. Inactive: waits out the timeout, false.
    pub fn key_pressed(&self, timeout: Duration) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        if !self.is_active() {
            std::thread::sleep(timeout);
            return false;
        }
        let stdin = std::io::stdin();
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(&stdin),
            PollFlags::POLLIN,
        )];
        let millis = PollTimeout::try_from(timeout.as_millis().min(60_000) as i32)
            .unwrap_or(PollTimeout::NONE);
        let pressed = matches!(poll(&mut fds, millis), Ok(n) if n > 0);
        if pressed {
            let mut buf = [0u8; 64];
            let _ = nix::unistd::read(&stdin, &mut buf);
        }
        pressed
    }
}

impl Drop for RawConsole {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, saved);
        }
    }
}
