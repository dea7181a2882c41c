//! Child processes. One reaper is the only caller of `waitpid`: it reaps
//! every exited child, including orphans re-parented to PID 1, and hands the
//! status of the children myinit itself started to whoever waits for them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::Notify;

#[derive(Default)]
pub struct Reaper {
    /// Children someone waits for; `Some` once they exited (exit status).
    wanted: Mutex<HashMap<i32, Option<i32>>>,
    exited: Notify,
    /// Orphans and untracked children reaped so far (for `ps` and tests).
    reaped_others: std::sync::atomic::AtomicU64,
}

impl Reaper {
    /// Reaps every child that has exited. Holding the lock across `waitpid`
    /// means a child being spawned (also under the lock) cannot be reaped
    /// before it is registered as wanted.
    pub fn reap(&self) {
        let mut wanted = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
        let mut any = false;
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    any = true;
                    self.record(&mut wanted, pid.as_raw(), code)
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    any = true;
                    self.record(&mut wanted, pid.as_raw(), 128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        drop(wanted);
        if any {
            self.exited.notify_waiters();
        }
    }

    fn record(&self, wanted: &mut HashMap<i32, Option<i32>>, pid: i32, status: i32) {
        match wanted.get_mut(&pid) {
            Some(slot) => *slot = Some(status),
            None => {
                self.reaped_others
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// How many children nobody waited for (orphans) were reaped.
    pub fn orphans_reaped(&self) -> u64 {
        self.reaped_others
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Spawns `cmd` and registers the child as wanted, atomically.
    pub fn spawn(&self, cmd: &mut Command) -> std::io::Result<Pid> {
        let mut wanted = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
        let child = cmd.spawn()?;
        let pid = child.id() as i32;
        wanted.insert(pid, None);
        // The reaper, not std's Child, collects the status.
        drop(child);
        Ok(Pid::from_raw(pid))
    }

    /// Sends `signal` to every spawned child still running (a command the
    /// shell waits for): myinit ending on SIGTERM must not leave them
    /// behind, orphaned and running.
    pub fn signal_running(&self, signal: nix::sys::signal::Signal) {
        let wanted = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
        for (&pid, status) in wanted.iter() {
            if status.is_none() {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
            }
        }
    }

    /// Waits for a spawned child's exit status (128+N when killed by signal N).
    pub async fn wait(&self, pid: Pid) -> i32 {
        loop {
            let notified = self.exited.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut wanted = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(Some(status)) = wanted.get(&pid.as_raw()) {
                    let status = *status;
                    wanted.remove(&pid.as_raw());
                    return status;
                }
            }
            // The timeout covers a SIGCHLD that raced the enable above.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(200), notified).await;
            self.reap();
        }
    }

    /// Waits for a child; on Ctrl-C it sends SIGINT, on a second Ctrl-C SIGKILL.
    pub async fn wait_interruptible(
        &self,
        pid: Pid,
        mut interrupts: tokio::sync::watch::Receiver<u64>,
    ) -> i32 {
        let wait = self.wait(pid);
        tokio::pin!(wait);
        let mut sent = 0;
        loop {
            tokio::select! {
                status = &mut wait => return status,
                changed = interrupts.changed() => {
                    if changed.is_err() {
                        return wait.await;
                    }
                    let sig = if sent == 0 { Signal::SIGINT } else { Signal::SIGKILL };
                    let _ = kill(pid, sig);
                    sent += 1;
                }
            }
        }
    }
}

/// Finds an executable: a word with a `/` is a path, else it is searched in `path_var`.
pub fn find_executable(word: &str, path_var: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if word.contains('/') {
        let p = PathBuf::from(word);
        return is_exec(&p).then_some(p);
    }
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(word))
        .find(|p| is_exec(p))
}

/// The default search path when the script did not set `PATH`.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
