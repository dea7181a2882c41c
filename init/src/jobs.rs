//! Background jobs (droptrace, capture, fakehost): each is a tokio task that
//! owns its kernel resources and output file. The registry knows them by a
//! typed identity (kind + target, so `capture tap0` never matches
//! `tap01`), starts them on one path (a cancellation token, panic
//! containment, a final report, a notice when one ends by itself) and stops
//! any set of them concurrently, so poweroff with N jobs waits for the
//! slowest one, not the sum. Every job's drain loop has one shape
//! (`drain_events`), whichever backend feeds it.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

/// How long stopping waits for jobs to drain, flush and report.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// What a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobKind {
    Droptrace,
    Capture,
    /// The fake hosts of one interface (target: the interface).
    Fakehost,
    /// The registry's own tests.
    #[cfg(test)]
    Test,
}

impl JobKind {
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Droptrace => "droptrace",
            JobKind::Capture => "capture",
            JobKind::Fakehost => "fakehost",
            #[cfg(test)]
            JobKind::Test => "test",
        }
    }
}

/// A job's identity: its kind and what it works on (an interface name, or
/// empty for a job of which only one can run).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JobId {
    pub kind: JobKind,
    pub target: String,
}

impl JobId {
    pub fn new(kind: JobKind, target: impl Into<String>) -> Self {
        JobId {
            kind,
            target: target.into(),
        }
    }

    /// The one job of a kind that has no target (droptrace).
    pub fn single(kind: JobKind) -> Self {
        Self::new(kind, "")
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.target.is_empty() {
            f.write_str(self.kind.name())
        } else {
            write!(f, "{} {}", self.kind.name(), self.target)
        }
    }
}

/// Where a job's final report goes once its task ends.
#[derive(Default)]
struct Outcome {
    report: Option<String>,
    /// It ended without being asked to (COUNT reached, a write error, a panic).
    by_itself: bool,
}

struct Entry {
    id: JobId,
    description: String,
    cancel: CancellationToken,
    outcome: Arc<(Mutex<Outcome>, std::sync::Condvar)>,
}

impl Entry {
    fn finished(&self) -> bool {
        lock(&self.outcome.0).report.is_some()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One line in `jobs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobInfo {
    pub id: JobId,
    pub description: String,
    pub finished: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0} is already running ({0}: stop it first)")]
    Running(JobId),
}

/// Prints the notice of a job that ended by itself; tests swap it.
pub type Notifier = fn(&JobId, &str);

fn print_notice(id: &JobId, report: &str) {
    // stderr: a background job must never write into a foreground
    // command's redirect file.
    eprintln!("[{id}] finished by itself: {report}");
}

pub struct JobRegistry {
    entries: Mutex<Vec<Entry>>,
    notify: Notifier,
}

impl Default for JobRegistry {
    fn default() -> Self {
        JobRegistry {
            entries: Mutex::new(Vec::new()),
            notify: print_notice,
        }
    }
}

impl JobRegistry {
    #[cfg(test)]
    fn with_notifier(notify: Notifier) -> Self {
        JobRegistry {
            entries: Mutex::new(Vec::new()),
            notify,
        }
    }

    /// Starts `run` as the job `id` on `rt`. `run` gets the job's
    /// cancellation token: once it fires the job stops taking new work,
    /// drains what the kernel queued, flushes, releases its resources and
    /// returns its one-line report. A panic inside becomes a report too.
    /// A finished entry with the same id is replaced; a running one refuses.
    pub fn spawn<F, Fut>(
        &self,
        rt: &tokio::runtime::Handle,
        id: JobId,
        description: String,
        run: F,
    ) -> Result<(), JobError>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = String> + Send + 'static,
    {
        let mut entries = lock(&self.entries);
        if let Some(i) = entries.iter().position(|e| e.id == id) {
            if !entries[i].finished() {
                return Err(JobError::Running(id));
            }
            entries.remove(i);
        }
        let cancel = CancellationToken::new();
        let outcome = Arc::new((Mutex::new(Outcome::default()), std::sync::Condvar::new()));
        let future = run(cancel.clone());
        let (task_cancel, task_outcome, task_id, notify) =
            (cancel.clone(), outcome.clone(), id.clone(), self.notify);
        rt.spawn(async move {
            let report = AssertUnwindSafe(future)
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    format!("{task_id}: stopped: the job failed with an internal error")
                });
            let by_itself = !task_cancel.is_cancelled();
            if by_itself {
                notify(&task_id, &report);
            }
            let (slot, ready) = &*task_outcome;
            let mut o = lock(slot);
            o.report = Some(report);
            o.by_itself = by_itself;
            ready.notify_all();
        });
        entries.push(Entry {
            id,
            description,
            cancel,
            outcome,
        });
        Ok(())
    }

    /// Whether `id` is registered and still running.
    pub fn is_running(&self, id: &JobId) -> bool {
        lock(&self.entries)
            .iter()
            .any(|e| e.id == *id && !e.finished())
    }

    /// Every registered job, in start order.
    pub fn list(&self) -> Vec<JobInfo> {
        lock(&self.entries)
            .iter()
            .map(|e| JobInfo {
                id: e.id.clone(),
                description: e.description.clone(),
                finished: e.finished(),
            })
            .collect()
    }

    /// Removes and stops the jobs `pick` selects, all at once, and waits (at
    /// most `STOP_TIMEOUT` in all) for their reports, in start order. A job
    /// that had finished by itself gives the report it ended with.
    pub fn stop_where(&self, pick: impl Fn(&JobId) -> bool) -> Vec<String> {
        self.stop_where_ids(pick)
            .into_iter()
            .map(|(_, report)| report)
            .collect()
    }

    /// `stop_where`, each report with its job's id.
    pub fn stop_where_ids(&self, pick: impl Fn(&JobId) -> bool) -> Vec<(JobId, String)> {
        self.stop_where_within(pick, STOP_TIMEOUT)
    }

    fn stop_where_within(
        &self,
        pick: impl Fn(&JobId) -> bool,
        limit: Duration,
    ) -> Vec<(JobId, String)> {
        let picked: Vec<Entry> = {
            let mut entries = lock(&self.entries);
            let (picked, kept) = std::mem::take(&mut *entries)
                .into_iter()
                .partition(|e| pick(&e.id));
            *entries = kept;
            picked
        };
        // Cancel every one before waiting for any: they drain in parallel.
        for entry in &picked {
            entry.cancel.cancel();
        }
        let deadline = Instant::now() + limit;
        picked
            .into_iter()
            .map(|entry| {
                let (slot, ready) = &*entry.outcome;
                let mut o = lock(slot);
                while o.report.is_none() {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        let report =
                            format!("{}: did not stop within {} s", entry.id, limit.as_secs());
                        return (entry.id.clone(), report);
                    }
                    o = ready
                        .wait_timeout(o, left)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                (entry.id.clone(), o.report.take().unwrap_or_default())
            })
            .collect()
    }

    /// Stops one job; None when it is not registered.
    pub fn stop(&self, id: &JobId) -> Option<String> {
        self.stop_where(|j| j == id).pop()
    }

    /// Stops every job (poweroff, reboot, program end), concurrently.
    pub fn stop_all(&self) -> Vec<String> {
        self.stop_where(|_| true)
    }

    /// `stop_all`, writing each report as a line to `out`: what every
    /// path that ends myinit (poweroff, reboot, exit, SIGTERM) does.
    pub fn stop_all_reporting(&self, out: &mut dyn std::io::Write) {
        for report in self.stop_all() {
            let _ = writeln!(out, "{report}");
        }
        let _ = out.flush();
    }
}

/// What a drain loop reads from: a backend (eBPF ring buffer, trace_pipe,
/// an AF_PACKET ring) together with what consumes its events (a store, a
/// file writer).
pub trait EventSource {
    /// Waits until events may be queued: the kernel's wake-up, or a short
    /// poll period for what it queues without waking anyone.
    fn ready(&mut self) -> impl Future<Output = ()> + Send;
    /// Consumes at most `max` queued events.
    fn drain(&mut self, max: usize) -> Drained;
    /// No new events from here on (detach, disable); queued ones stay readable.
    fn stop_new(&mut self);
}

/// What one `EventSource::drain` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    pub taken: usize,
    /// The job has what it wanted (COUNT reached) or cannot go on.
    pub done: bool,
}

/// How a drain loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The job was stopped (cancelled).
    Stopped,
    /// The source said it was done.
    ByItself,
}

/// The longest the last drain after `stop_new` may take: a full ring is
/// read in well under a second.
const FINAL_DRAIN: Duration = Duration::from_secs(5);

/// The one drain loop every job runs: read in bounded batches (so a flood
/// cannot starve other tasks) until cancelled or done, then stop new
/// events and take everything still queued, so nothing the kernel captured
/// is lost on stop.
pub async fn drain_events<S: EventSource>(
    source: &mut S,
    cancel: &CancellationToken,
    batch: usize,
) -> Ended {
    let ended = 'reading: loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break Ended::Stopped,
            _ = source.ready() => {}
        }
        // A full batch means more is queued: go on without waiting.
        loop {
            let drained = source.drain(batch);
            if drained.done {
                break 'reading Ended::ByItself;
            }
            tokio::task::yield_now().await;
            if drained.taken < batch || cancel.is_cancelled() {
                break;
            }
        }
    };
    source.stop_new();
    // Bounded even if a source kept queueing after stop_new: stop returns.
    let deadline = Instant::now() + FINAL_DRAIN;
    loop {
        let drained = source.drain(batch);
        if drained.taken == 0 || drained.done || Instant::now() > deadline {
            break;
        }
    }
    ended
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static NOTICES: Mutex<Vec<String>> = Mutex::new(Vec::new());

    fn record_notice(id: &JobId, report: &str) {
        lock(&NOTICES).push(format!("{id}: {report}"));
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// A job that runs until cancelled, then takes `drain` to finish.
    fn slow_stopper(
        drain: Duration,
        name: &'static str,
    ) -> impl FnOnce(CancellationToken) -> std::pin::Pin<Box<dyn Future<Output = String> + Send>>
    {
        move |cancel| {
            Box::pin(async move {
                cancel.cancelled().await;
                tokio::time::sleep(drain).await;
                format!("{name} stopped")
            })
        }
    }

    #[test]
    fn two_jobs_of_one_kind_on_different_targets_stop_independently() {
        let rt = runtime();
        let jobs = JobRegistry::default();
        let tap0 = JobId::new(JobKind::Test, "tap0");
        let tap01 = JobId::new(JobKind::Test, "tap01");
        for id in [&tap0, &tap01] {
            let name = if id.target == "tap0" { "tap0" } else { "tap01" };
            jobs.spawn(
                rt.handle(),
                id.clone(),
                format!("capture {name}"),
                slow_stopper(Duration::ZERO, name),
            )
            .unwrap();
        }
        // Same kind and target twice: refused while running.
        assert!(jobs
            .spawn(
                rt.handle(),
                tap0.clone(),
                "again".into(),
                slow_stopper(Duration::ZERO, "x")
            )
            .is_err());
        assert_eq!(jobs.stop(&tap0), Some("tap0 stopped".to_string()));
        assert!(!jobs.is_running(&tap0));
        assert!(jobs.is_running(&tap01), "stopping tap0 stopped tap01");
        assert_eq!(jobs.stop(&tap0), None);
        assert_eq!(jobs.stop_all(), vec!["tap01 stopped".to_string()]);
        assert_eq!(tap01.to_string(), "test tap01");
        assert_eq!(JobId::single(JobKind::Droptrace).to_string(), "droptrace");
    }

    #[test]
    fn stop_all_stops_jobs_concurrently() {
        let rt = runtime();
        let jobs = JobRegistry::default();
        for target in ["a", "b", "c", "d"] {
            jobs.spawn(
                rt.handle(),
                JobId::new(JobKind::Test, target),
                target.into(),
                slow_stopper(Duration::from_millis(800), "slow"),
            )
            .unwrap();
        }
        let started = Instant::now();
        let reports = jobs.stop_all();
        let took = started.elapsed();
        assert_eq!(reports.len(), 4);
        assert!(reports.iter().all(|r| r == "slow stopped"), "{reports:?}");
        // Four jobs of 0.8 s each: about 0.8 s together, not 3.2 s.
        assert!(took < Duration::from_millis(2000), "took {took:?}");
        assert!(took >= Duration::from_millis(800), "took {took:?}");
    }

    #[test]
    fn a_job_that_ends_by_itself_gives_a_notice_and_keeps_its_report() {
        let rt = runtime();
        let jobs = JobRegistry::with_notifier(record_notice);
        let id = JobId::new(JobKind::Test, "notice-test");
        jobs.spawn(rt.handle(), id.clone(), "short".into(), |_cancel| async {
            "3 of 3 done".to_string()
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while jobs.is_running(&id) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!jobs.is_running(&id));
        assert!(lock(&NOTICES).contains(&"test notice-test: 3 of 3 done".to_string()));
        assert!(jobs.list()[0].finished);
        // Stopping it afterwards gives the report it ended with, no new notice.
        assert_eq!(jobs.stop(&id), Some("3 of 3 done".to_string()));
        assert_eq!(
            lock(&NOTICES)
                .iter()
                .filter(|n| n.starts_with("test notice-test"))
                .count(),
            1
        );
    }

    #[test]
    fn a_panicking_job_reports_instead_of_vanishing() {
        let rt = runtime();
        let jobs = JobRegistry::with_notifier(record_notice);
        let id = JobId::new(JobKind::Test, "panic-test");
        jobs.spawn(rt.handle(), id.clone(), "p".into(), |cancel| async move {
            cancel.cancelled().await;
            panic!("deliberate test panic")
        })
        .unwrap();
        let report = jobs.stop(&id).unwrap();
        assert!(report.contains("internal error"), "{report}");
    }

    #[test]
    fn a_stuck_job_does_not_hold_stop_forever() {
        let rt = runtime();
        let jobs = JobRegistry::default();
        jobs.spawn(
            rt.handle(),
            JobId::new(JobKind::Test, "stuck"),
            "stuck".into(),
            |_cancel| std::future::pending::<String>(),
        )
        .unwrap();
        let started = Instant::now();
        let reports = jobs.stop_where_within(|_| true, Duration::from_millis(300));
        assert!(reports[0].1.contains("did not stop within"), "{reports:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// Counts down `queued` events, `done` after `limit` of them.
    struct Counter {
        queued: usize,
        taken: usize,
        limit: Option<usize>,
        stopped_new: bool,
        polls: Arc<AtomicUsize>,
    }

    impl EventSource for Counter {
        async fn ready(&mut self) {
            self.polls.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        fn drain(&mut self, max: usize) -> Drained {
            let mut n = self.queued.min(max);
            if let Some(limit) = self.limit {
                n = n.min(limit - self.taken);
            }
            self.queued -= n;
            self.taken += n;
            Drained {
                taken: n,
                done: self.limit.is_some_and(|l| self.taken >= l),
            }
        }

        fn stop_new(&mut self) {
            self.stopped_new = true;
        }
    }

    #[test]
    fn the_drain_loop_takes_everything_queued_before_it_ends() {
        let rt = runtime();
        let polls = Arc::new(AtomicUsize::new(0));
        let mut source = Counter {
            queued: 10_000,
            taken: 0,
            limit: None,
            stopped_new: false,
            polls: polls.clone(),
        };
        let cancel = CancellationToken::new();
        cancel.cancel();
        let ended = rt.block_on(drain_events(&mut source, &cancel, 64));
        assert_eq!(ended, Ended::Stopped);
        assert!(source.stopped_new);
        assert_eq!(source.taken, 10_000, "stop must drain what is queued");

        let mut limited = Counter {
            queued: 10_000,
            taken: 0,
            limit: Some(300),
            stopped_new: false,
            polls,
        };
        let ended = rt.block_on(drain_events(&mut limited, &CancellationToken::new(), 64));
        assert_eq!(ended, Ended::ByItself);
        assert_eq!(limited.taken, 300);
    }
}
