//! Waiting for a packet's due time with µs precision: real-time priority,
//! a spin for the last `SPIN`, the CPU given back in a fair share, the
//! thread held on one CPU for the replay.

use std::time::{Duration, Instant};

use crate::util::Interrupted;

/// The last part of a wait that is spun rather than slept. Measured on the
/// loaded 2-core VM of this project (its other builds and qemu runs at a
/// load average of 3-4; 20,000 waits 100 µs apart at real-time priority):
/// sleeping in every gap until 50 µs before the packet gave a p99 lateness
/// of 51-884 µs, as a woken thread often waits for the task it preempts to
/// leave the kernel (no kernel preemption there); spinning through the
/// gaps, with the fair share below slept, gave 2-17 µs in 3 runs out of 4.
/// Past this the wait sleeps: a long gap is not worth a CPU.
const SPIN: Duration = Duration::from_micros(200);
/// The CPU a real-time replay gives back while it spins: it owes this part
/// of the time it was awake, and pays it by sleeping in a gap long enough
/// (`PAY_AHEAD` + `PAY_MIN`), or, when the schedule is too dense for that,
/// `PAY_AT_ONCE` at a time. Never sleeping, it is stopped by the kernel
/// (its real-time limit, `sched_rt_runtime_us`: 95 %) for 50 ms about once
/// a second, packets 50 ms late. Short sleeps count for less than they
/// last (two context switches each), so the share is well above 5 %:
/// measured on the loaded VM (10 s replays, 100 µs apart), 1/11 still got
/// those 50 ms stops in 2 runs of 3 (p99 lateness 24 µs-42 ms), 1/6 in 1
/// of 3 (p99 3 µs in the others).
const FAIR_SHARE: f64 = 1.0 / 6.0;
const PAY_AHEAD: Duration = Duration::from_micros(50);
const PAY_MIN: Duration = Duration::from_micros(20);
const PAY_AT_ONCE: Duration = Duration::from_millis(1);
/// The longest single sleep, so that Ctrl-C is noticed during long gaps.
const SLEEP_SLICE: Duration = Duration::from_millis(50);

/// Waits for each packet's due time, holding the calling thread at
/// real-time priority (SCHED_FIFO 1) and a timer slack of 1 ns for the
/// whole paced replay, then restoring both. On a loaded machine an
/// ordinary thread is preempted for milliseconds while it spins and is run
/// late after a sleep; a real-time one is neither, but must give the CPU
/// back itself (`FAIR_SHARE`); it stays on one CPU (`pin`). Without the right to real-time priority (no
/// CAP_SYS_NICE, a cgroup without a real-time budget) the replay runs at
/// its ordinary priority and the scheduler shares the CPU by itself.
pub struct Pacer {
    realtime: Option<(libc::c_int, libc::sched_param)>,
    slack: Option<libc::c_int>,
    /// The thread's CPUs before it was held on one (see `pin`).
    cpus: Option<libc::cpu_set_t>,
    /// The CPU time owed to other tasks, in s (negative: paid ahead).
    owed: f64,
    /// Until when the time awake has been counted into `owed`.
    counted: Instant,
}

impl Pacer {
    pub fn new() -> Pacer {
        // Hand-written: no maintained crate wraps these; plain calls on the
        // calling thread. The pthread calls, not sched_setscheduler: musl's
        // sched_* functions are stubs that fail with ENOSYS (POSIX means
        // them per process, Linux per thread), so the shipped static build
        // never got real-time priority through them.
        // SAFETY: sched_param is plain old data; the calls only read and
        // write the values passed, which live for the calls.
        let realtime = unsafe {
            let me = libc::pthread_self();
            let mut policy = 0;
            let mut param: libc::sched_param = std::mem::zeroed();
            // Zeroed, then set: musl's sched_param has more fields than glibc's.
            let mut fifo: libc::sched_param = std::mem::zeroed();
            fifo.sched_priority = 1;
            (libc::pthread_getschedparam(me, &mut policy, &mut param) == 0
                && libc::pthread_setschedparam(me, libc::SCHED_FIFO, &fifo) == 0)
                .then_some((policy, param))
        };
        // SAFETY: prctl with integer arguments only.
        let slack = unsafe {
            let old = libc::prctl(libc::PR_GET_TIMERSLACK);
            (old > 0 && libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) == 0)
                .then_some(old)
        };
        Pacer {
            realtime,
            slack,
            cpus: pin(),
            owed: 0.0,
            counted: Instant::now(),
        }
    }

    /// Waits until `deadline`: sleeps until `SPIN` before it, then spins,
    /// paying the fair share on the way.
    pub fn wait_until(
        &mut self,
        deadline: Instant,
        interrupts: &tokio::sync::watch::Receiver<u64>,
    ) -> Result<(), Interrupted> {
        loop {
            let now = Instant::now();
            if self.realtime.is_some() {
                self.owed += (now - self.counted).as_secs_f64() * FAIR_SHARE;
            }
            self.counted = now;
            let Some(left) = deadline
                .checked_duration_since(now)
                .filter(|d| !d.is_zero())
            else {
                return Ok(());
            };
            let pause = if left > SPIN {
                (left - SPIN).min(SLEEP_SLICE)
            } else if self.owed > 0.0 && left > PAY_AHEAD + PAY_MIN {
                left - PAY_AHEAD
            } else if self.owed >= PAY_AT_ONCE.as_secs_f64() {
                PAY_AT_ONCE
            } else {
                std::hint::spin_loop();
                continue;
            };
            if interrupts.has_changed().unwrap_or(false) {
                return Err(Interrupted);
            }
            std::thread::sleep(pause);
            let woke = Instant::now();
            // Credit for a long sleep is capped: it must not allow a long
            // stretch of spinning later.
            self.owed = (self.owed - (woke - now).as_secs_f64()).max(-PAY_AT_ONCE.as_secs_f64());
            self.counted = woke;
        }
    }
}

/// Holds the calling thread on the CPU it runs on, for the replay; returns
/// the CPUs it had. A real-time thread free to move follows the scheduler's
/// push and pull between CPUs, and lands beside tasks that cannot leave
/// (a capture pinned to a CPU, per-CPU kernel threads), which it then
/// starves until the kernel stops it: measured on the 2-core VM (10 s
/// replays 100 µs apart, tcpdump held on CPU 0, the receiver's timestamps),
/// p99 lateness 16.8 ms and 141 ms free, 3.6 µs and 7.9 µs held. On one CPU
/// the scheduler moves the tasks that can move away from it. None: left as
/// it was.
fn pin() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain old data; pid 0 is the calling thread;
    // the calls only read and write the sets passed, which outlive them.
    unsafe {
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let cpu = usize::try_from(libc::sched_getcpu()).ok()?;
        if libc::sched_getaffinity(0, size, &mut old) != 0 {
            return None;
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        (libc::sched_setaffinity(0, size, &one) == 0).then_some(old)
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        // SAFETY: as in new(); the values were read from this thread.
        unsafe {
            if let Some((policy, param)) = &self.realtime {
                libc::pthread_setschedparam(libc::pthread_self(), *policy, param);
            }
            if let Some(slack) = self.slack {
                libc::prctl(libc::PR_SET_TIMERSLACK, slack as libc::c_ulong);
            }
            if let Some(cpus) = &self.cpus {
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), cpus);
            }
        }
    }
}
