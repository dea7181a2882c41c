//! Background jobs (capture, droptrace, fakehost): each owns its kernel
//! resources and output file; `stop_all` (poweroff) stops every one and
//! waits until each has flushed and closed what it wrote.

use std::sync::Mutex;

/// A running background job.
pub trait Job: Send {
    /// What `jobs` shows, e.g. "capture tap0 -> /tmp/x.pcap".
    fn describe(&self) -> String;
    /// Stops the job, drains and flushes its output; returns a one-line report.
    fn stop(self: Box<Self>) -> String;
}

#[derive(Default)]
pub struct JobRegistry {
    jobs: Mutex<Vec<Box<dyn Job>>>,
}

impl JobRegistry {
    pub fn add(&self, job: Box<dyn Job>) {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(job);
    }

    pub fn describe_all(&self) -> Vec<String> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|j| j.describe())
            .collect()
    }

    /// Removes and stops the jobs `pick` selects; returns their reports.
    pub fn stop_matching(&self, pick: impl Fn(&dyn Job) -> bool) -> Vec<String> {
        let picked: Vec<Box<dyn Job>> = {
            let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            let (picked, kept) = std::mem::take(&mut *jobs)
                .into_iter()
                .partition(|j| pick(j.as_ref()));
            *jobs = kept;
            picked
        };
        picked.into_iter().map(|j| j.stop()).collect()
    }

    /// Stops every job (poweroff, reboot, program end).
    pub fn stop_all(&self) -> Vec<String> {
        self.stop_matching(|_| true)
    }
}
