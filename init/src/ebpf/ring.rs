//! Reading a ring buffer map without blocking: tokio's `AsyncFd` wakes the
//! reader when the kernel side signals (programs signal only once a batch
//! is queued, see `submit_batched` in ebpf-programs), records are taken in
//! bounded batches as raw bytes (decoding is the caller's, and only of
//! what it needs), and the per-CPU counter of records the programs could
//! not queue is summed on demand.

use std::time::Duration;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use tokio::io::unix::AsyncFd;

use super::Object;

/// How long a reader sleeps before looking for records queued below the
/// programs' wake-up mark.
pub const POLL: Duration = Duration::from_millis(10);

/// A ring buffer map and its lost counter (a `PerCpuArray<u64>` of one).
pub struct RingReader {
    ring: AsyncFd<RingBuf<MapData>>,
    lost: PerCpuArray<MapData, u64>,
    /// The kernel said data is there and the last batch did not empty it.
    more: bool,
    /// How long `ready` waits for a wake-up (`POLL` unless set).
    poll: Duration,
}

/// Why a ring buffer could not be set up for reading.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("reading a ring buffer needs the runtime")]
    NoRuntime,
    #[error(transparent)]
    Object(#[from] super::ObjectError),
    #[error(transparent)]
    Map(#[from] aya::maps::MapError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl RingReader {
    /// Takes the two maps out of `object`. Must run inside the tokio runtime.
    pub fn take(object: &mut Object, ring: &str, lost: &str) -> Result<Self, RingError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RingError::NoRuntime);
        }
        let ring = RingBuf::try_from(object.take_map(ring)?)?;
        let lost = PerCpuArray::try_from(object.take_map(lost)?)?;
        // SAFETY: the RingBuf owns its map fd and moves into the AsyncFd,
        // so the fd stays open for as long as it is registered.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| RingError::Io(e.into_parts().1))?;
        Ok(RingReader {
            ring,
            lost,
            more: false,
            poll: POLL,
        })
    }

    /// A longer wait between looks for a ring whose programs wake the
    /// reader often enough under load: each look is a few context switches.
    pub fn set_poll(&mut self, poll: Duration) {
        self.poll = poll;
    }

    /// Waits for the kernel's wake-up or the poll period, whichever comes first.
    pub async fn ready(&mut self) {
        if self.more {
            return;
        }
        if let Ok(Ok(mut guard)) = tokio::time::timeout(self.poll, self.ring.readable_mut()).await {
            // Cleared here, and set again by the kernel's next wake-up:
            // `drain` takes what is queued either way.
            guard.clear_ready();
        }
    }

    /// Hands at most `max` queued records to `f`, oldest first; returns how
    /// many it took.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        let ring = self.ring.get_mut();
        let mut taken = 0;
        while taken < max {
            let Some(item) = ring.next() else {
                break;
            };
            f(&item);
            taken += 1;
        }
        self.more = taken == max && max > 0;
        taken
    }

    /// Records the programs could not queue (ring full), summed over CPUs.
    pub fn lost(&self) -> u64 {
        self.lost
            .get(&0, 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0)
    }
}

/// A record as the `#[repr(C)]` type the programs wrote; None when it is
/// shorter than one.
pub fn record<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    (bytes.len() >= std::mem::size_of::<T>()).then(|| {
        // SAFETY: T is Pod (every bit pattern valid) and the slice is long
        // enough; read_unaligned needs no alignment.
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_records_are_refused() {
        assert_eq!(record::<u64>(&[1, 0, 0, 0, 0, 0, 0, 0, 9]), Some(1));
        assert_eq!(record::<u64>(&[1, 2, 3]), None);
    }
}
