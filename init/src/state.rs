//! Process-wide state shared by the shell, the commands and background jobs.

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
    /// Whether this process is the VM's PID 1.
    pub is_pid1: bool,
    /// TAP devices created by `tap add`, kept open for later commands.
    pub taps: Mutex<TapRegistry>,
    pub jobs: JobRegistry,
    pub reaper: Arc<Reaper>,
}

impl State {
    /// Starts the runtime's signal tasks (Ctrl-C counter, child reaper).
    /// The runtime must outlive the state; `main` keeps it.
    pub fn start(rt: &tokio::runtime::Runtime, is_pid1: bool) -> Arc<State> {
        let (tx, rx) = watch::channel(0u64);
        let reaper = Arc::new(Reaper::default());
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            // Registering the handlers here, before any command runs, means
            // Ctrl-C never takes the default action (ending the shell).
            let mut sigint = signal(SignalKind::interrupt()).expect("SIGINT handler");
            let mut sigchld = signal(SignalKind::child()).expect("SIGCHLD handler");
            tokio::spawn(async move {
                while sigint.recv().await.is_some() {
                    tx.send_modify(|n| *n += 1);
                }
            });
            let reaper = reaper.clone();
            tokio::spawn(async move {
                loop {
                    reaper.reap();
                    // A periodic pass as well: signals coalesce, and a child
                    // may exit between a reap and the next wait.
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), sigchld.recv())
                        .await;
                }
            });
        });
        Arc::new(State {
            rt: rt.handle().clone(),
            interrupts: rx,
            is_pid1,
            taps: Mutex::new(TapRegistry::default()),
            jobs: JobRegistry::default(),
            reaper,
        })
    }
}
