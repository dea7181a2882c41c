//! Process-wide state shared by the shell, the commands and background jobs.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::jobs::JobRegistry;
use crate::net::tap::TapRegistry;
use crate::proc::Reaper;

pub struct State {
    /// The tokio runtime that background jobs and async commands run on.
    pub rt: tokio::runtime::Handle,
    /// Counts SIGINTs (Ctrl-C); a command watches it to stop early.
    pub interrupts: watch::Receiver<u64>,
    /// Whether this process is the VM's init: PID 1, or the engine that
    /// PID 1 supervises (then `exit` is refused, `poweroff` powers off).
    pub is_pid1: bool,
    /// TAP devices created by `tap add`, kept open for later commands.
    pub taps: Mutex<TapRegistry>,
    pub jobs: JobRegistry,
    pub reaper: Arc<Reaper>,
    /// Results that outlive a job, one per type (droptrace's drops of the
    /// current or last run): this layer knows no capability's types.
    slots: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl State {
    /// The slot of type `T`, made (empty) on first use.
    pub fn slot<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let any = slots
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()))
            .clone();
        // The key is T's own type id: the value is a T.
        any.downcast::<T>()
            .unwrap_or_else(|_| unreachable!("a slot holds its own type"))
    }

    /// Starts the runtime's signal tasks (Ctrl-C counter, child reaper, and
    /// outside PID 1 a clean stop on SIGTERM/SIGHUP). The runtime must
    /// outlive the state; `main` keeps it.
    pub fn start(rt: &tokio::runtime::Runtime, is_pid1: bool) -> Arc<State> {
        let (tx, rx) = watch::channel(0u64);
        let state = Arc::new(State {
            rt: rt.handle().clone(),
            interrupts: rx,
            is_pid1,
            taps: Mutex::new(TapRegistry::default()),
            jobs: JobRegistry::default(),
            reaper: Arc::new(Reaper::default()),
            slots: Mutex::default(),
        });
        let for_tasks = state.clone();
        rt.block_on(async move {
            use tokio::signal::unix::{signal, SignalKind};
            // Registered before any command runs, so Ctrl-C never takes the
            // default action (ending the shell). A failure here must not
            // end PID 1: it is reported and the shell runs without it.
            match signal(SignalKind::interrupt()) {
                Ok(mut sigint) => {
                    tokio::spawn(async move {
                        while sigint.recv().await.is_some() {
                            tx.send_modify(|n| *n += 1);
                        }
                    });
                }
                Err(e) => eprintln!("myinit: no Ctrl-C handling: {e}"),
            }
            let mut sigchld = signal(SignalKind::child())
                .map_err(|e| eprintln!("myinit: reaping children once a second only: {e}"))
                .ok();
            let reaper = for_tasks.reaper.clone();
            tokio::spawn(async move {
                loop {
                    reaper.reap();
                    // A periodic pass as well: signals coalesce, and a child
                    // may exit between a reap and the next wait.
                    let tick = std::time::Duration::from_secs(1);
                    match sigchld.as_mut() {
                        Some(sigchld) => {
                            let _ = tokio::time::timeout(tick, sigchld.recv()).await;
                        }
                        None => tokio::time::sleep(tick).await,
                    }
                }
            });
            if !is_pid1 {
                // Killed politely: stop the jobs (flush their files, detach
                // tracers, remove tracefs instances) before exiting.
                for (kind, number) in [
                    (SignalKind::terminate(), libc::SIGTERM),
                    (SignalKind::hangup(), libc::SIGHUP),
                ] {
                    let Ok(mut stream) = signal(kind) else {
                        continue;
                    };
                    let state = for_tasks.clone();
                    tokio::spawn(async move {
                        if stream.recv().await.is_some() {
                            // The command the shell runs goes too.
                            state
                                .reaper
                                .signal_running(nix::sys::signal::Signal::SIGTERM);
                            let _ = tokio::task::spawn_blocking(move || {
                                state.jobs.stop_all_reporting(&mut std::io::stderr());
                            })
                            .await;
                            std::process::exit(128 + number);
                        }
                    });
                }
            }
        });
        state
    }
}
