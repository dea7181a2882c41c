//! Replay (`inject FILE IF`): sends the packets of a pcap, pcapng or JSONL file
//! into an interface. Into a TAP made by `tap add` the frames are written to
//! the TAP's fd, so the kernel *receives* them on IF (what a test bench
//! needs); on any other interface they go out through an AF_PACKET socket
//! (sent on IF, received by its peer).
//!
//! The whole file is checked before the first packet leaves, so bad input
//! sends nothing, and memory stays bounded whatever the file's size: the
//! file is read twice, streaming (packet/pcap.rs, packet/jsonl.rs), once to
//! check every packet and once to send. A regular file is simply read
//! again; anything else (a FIFO, a device, stdin) cannot be, so the first
//! pass keeps a copy of what it reads, up to `UNSEEKABLE_LIMIT` bytes;
//! beyond that it is an error before anything is sent. The format comes
//! from the content, never from the name.
//!
//! Pacing: by default the file's own timing. Each packet is due at an
//! absolute time, counted from when the first packet went, so a late packet
//! never delays the ones after it (errors do not add up over a long file,
//! tcpreplay's drift). As the original, a pause of 10 s or more between two
//! packets is not waited (`--max-gap`): fixtures mix timestamps of 0 with
//! real ones.
//!
//! Its last line is the original's, which scripts grep for: `Injection
//! complete: N packets sent`, N the packets sent; ours, with the figures,
//! comes before it. A paced replay runs at real-time priority (see
//! `Pacer`): the wait sleeps while the packet is far off and spins the last
//! `SPIN` for precision (a sleep wakes up tens of µs late, a spin on the
//! vDSO clock does not); it gives part of the CPU back by sleeping in
//! some of the short gaps (a millisecond at a time on a schedule too dense
//! for that), as the kernel would otherwise stop it for 50 ms at a time.
//!
//! Sends the kernel keeps refusing (a full queue, ENOBUFS from a peer whose
//! MTU is smaller than the frame) are retried for `REFUSED_FOR`, then the
//! command stops and says what was sent and why the rest was not.

mod pacer;
mod replay;
mod source;

use std::time::Duration;

pub use replay::{Replay, Sink, Tally};
pub use source::check_input;

/// How the packets are paced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// The file's own gaps, divided by a speed factor.
    Recorded { speed: f64 },
    /// As fast as the interface takes them.
    Top,
    /// The same gap between all packets (--pps, --interval).
    Every(Duration),
}

/// The original's: it slept between two packets only below 10 s.
pub const MAX_GAP: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::source::{Checked, Offsets};
    use super::*;

    #[test]
    fn the_schedule_is_absolute_never_goes_back_and_rounds_keep_the_pace() {
        // 0, 10 ms, 5 ms (back in time: at once after its predecessor), 30 ms.
        let mut offsets = Offsets::new(Some(MAX_GAP));
        let got: Vec<u64> = [1_000, 10_001_000, 5_001_000, 30_001_000]
            .into_iter()
            .map(|ts| offsets.next(ts))
            .collect();
        assert_eq!(got, [0, 10_000_000, 10_000_000, 30_000_000]);
        // A pause of 10 s or more is not waited, as the original did: a
        // fixture that starts at 0 and goes on with real timestamps.
        let mut offsets = Offsets::new(Some(MAX_GAP));
        let s = 1_000_000_000;
        let got: Vec<u64> = [
            0,
            1_761_000_000 * s,
            1_761_000_000 * s + s / 2,
            1_761_000_011 * s,
        ]
        .into_iter()
        .map(|ts| offsets.next(ts))
        .collect();
        assert_eq!(got, [0, 0, s / 2, s / 2]);
        assert_eq!(offsets.skipped, 2);
        let mut offsets = Offsets::new(None);
        assert_eq!((offsets.next(0), offsets.next(20 * s)), (0, 20 * s));
        let checked = Checked {
            packets: 4,
            linktypes: vec![1],
            span_ns: 30_000_000,
            skipped_gaps: 0,
        };
        let ms = |ms: u64| Some(Duration::from_millis(ms));
        let recorded = Pace::Recorded { speed: 1.0 };
        assert_eq!(recorded.due(3, 0, 30_000_000, &checked), ms(30));
        // A round lasts the span plus one average gap (10 ms).
        assert_eq!(recorded.due(4, 1, 0, &checked), ms(40));
        assert_eq!(recorded.due(11, 2, 30_000_000, &checked), ms(110));
        let twice = Pace::Recorded { speed: 2.0 };
        assert_eq!(twice.due(3, 0, 30_000_000, &checked), ms(15));
        // A fixed gap counts packets over all rounds.
        assert_eq!(
            Pace::Every(Duration::from_millis(2)).due(7, 1, 0, &checked),
            ms(14)
        );
        assert_eq!(Pace::Top.due(7, 1, 0, &checked), None);
    }
}
