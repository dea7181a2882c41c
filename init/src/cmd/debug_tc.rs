//! debug-tc: a hidden developer command that drives the shared TC attach
//! (`ebpf/tc.rs`) with the capture object one hook at a time. `capture`
//! is the user's command; this one stays for what it cannot do: leave a
//! filter attached as a killed process would (`--leave`), and list the
//! raw filters and TCX programs on a hook (`show`), which the host and VM
//! tests of orphan removal need.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use aya::programs::SchedClassifier;
use clap::{CommandFactory, Parser, Subcommand};
use myinit_common::capture::{
    CaptureHeader, CAPTURE_EGRESS, CAPTURE_HAS_TASK, CAPTURE_INGRESS, SNAPLEN_MAX,
};

use super::parse_seconds;
use super::{parse_args, usage, CommandSpec};
use crate::ebpf::ring::{self, RingReader};
use crate::ebpf::tc::{self, Attached, Hook};
use crate::ebpf::Object;
use crate::kernel::btf::KernelBtf;
use crate::shell::Ctx;

pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "debug-tc",
    usage: "",
    summary: "developer: attach the capture programs to a TC hook",
    help: "TCX is used if the kernel has it, else clsact; MYINIT_TC=clsact|tcx forces one.",
    run: debug_tc,
    cli: Some(Cli::command),
}];

/// The capture object built from `ebpf-programs/src/bin/capture.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/capture"));

/// Records taken from the ring per batch, so one read stays short.
const BATCH: usize = 1024;

#[derive(Parser, Debug)]
#[command(
    name = "debug-tc",
    disable_help_subcommand = true,
    override_usage = "debug-tc attach IF [ingress|egress] [--seconds S] [--snaplen N] [--leave]\n\
                      debug-tc detach IF [ingress|egress]\n\
                      debug-tc show IF [ingress|egress]"
)]
struct Cli {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// load the capture object, attach capture_ingress or capture_egress,
    /// count the packets it sees and stay attached; filters of the same
    /// program left by an earlier process are removed first
    Attach {
        /// the interface
        #[arg(value_name = "IF")]
        iface: String,
        /// ingress (default) or egress
        #[arg(value_name = "ingress|egress")]
        hook: Option<String>,
        /// how long to count packets (default 1)
        #[arg(long, value_name = "S")]
        seconds: Option<String>,
        /// bytes copied per packet (default and most: the largest record)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=SNAPLEN_MAX as i64))]
        snaplen: Option<u32>,
        /// let go without detaching, as a killed process would
        #[arg(long)]
        leave: bool,
    },
    /// detach and report the packets seen since attach; with nothing
    /// attached here, remove filters left by an earlier process
    Detach {
        /// the interface
        #[arg(value_name = "IF")]
        iface: String,
        /// ingress (default) or egress
        #[arg(value_name = "ingress|egress")]
        hook: Option<String>,
    },
    /// the BPF filters and TCX programs on the hook
    Show {
        /// the interface
        #[arg(value_name = "IF")]
        iface: String,
        /// ingress (default) or egress
        #[arg(value_name = "ingress|egress")]
        hook: Option<String>,
    },
}

/// An attachment this process holds until `detach`.
struct Active {
    attached: Attached,
    program: &'static str,
    ring: RingReader,
    // Declared last: dropped after the ring reader that reads its map.
    object: Object,
    tally: Tally,
    ifindex: u32,
}

static ACTIVE: Mutex<Vec<Active>> = Mutex::new(Vec::new());

fn hook_of(word: Option<&str>) -> anyhow::Result<Hook> {
    match word {
        None => Ok(Hook::Ingress),
        Some(w) => {
            Hook::parse(w).ok_or_else(|| usage(format!("expected ingress or egress, not {w}")))
        }
    }
}

fn program_for(hook: Hook) -> &'static str {
    match hook {
        Hook::Ingress => "capture_ingress",
        Hook::Egress => "capture_egress",
    }
}

/// Local senders remembered per attachment, to keep the list bounded.
const MAX_SENDERS: usize = 4;

/// What the programs reported for one attachment.
#[derive(Default)]
struct Tally {
    /// Records whose header matches the hook (interface, direction) and
    /// whose captured length is the packet's, cut at the snap length.
    seen: u64,
    /// Records that do not (a bug in the programs if ever non-zero).
    bad: u64,
    /// IPv4 frames among `seen`, by the EtherType in the copied bytes.
    ipv4: u64,
    /// Packets longer than the snap length, cut to it.
    cut: u64,
    /// The snap length the program was given.
    snaplen: u32,
    /// Distinct (tgid, comm) of locally sent packets.
    senders: Vec<(u32, String)>,
}

impl Tally {
    fn add(&mut self, bytes: &[u8], ifindex: u32, direction: u8) {
        let Some(h) = ring::record::<CaptureHeader>(bytes) else {
            self.bad += 1;
            return;
        };
        let data = &bytes[HEADER_LEN..];
        let expected = h.orig_len.min(self.snaplen) as usize;
        if h.ifindex != ifindex || h.direction != direction || h.cap_len as usize != expected {
            self.bad += 1;
            return;
        }
        self.seen += 1;
        if (h.cap_len as usize) < h.orig_len as usize {
            self.cut += 1;
        }
        if data.get(12..14) == Some(&[0x08, 0x00][..]) {
            self.ipv4 += 1;
        }
        if h.flags & CAPTURE_HAS_TASK != 0 && self.senders.len() < MAX_SENDERS {
            let end = h.comm.iter().position(|&b| b == 0).unwrap_or(h.comm.len());
            let comm = String::from_utf8_lossy(&h.comm[..end]).into_owned();
            if !self.senders.iter().any(|(tgid, _)| *tgid == h.tgid) {
                self.senders.push((h.tgid, comm));
            }
        }
    }

    /// Takes what is queued, in bounded batches.
    fn drain(&mut self, ring: &mut RingReader, ifindex: u32, direction: u8) {
        while ring.drain(BATCH, |bytes| self.add(bytes, ifindex, direction)) == BATCH {}
    }

    fn report(&self, lost: u64) -> String {
        let mut text = format!(
            "{} packet(s) seen ({} IPv4, {} cut at {} bytes), {lost} lost, {} malformed",
            self.seen, self.ipv4, self.cut, self.snaplen, self.bad
        );
        if !self.senders.is_empty() {
            text.push_str("; local senders:");
            for (tgid, comm) in &self.senders {
                text.push_str(&format!(" {tgid} ({comm})"));
            }
        }
        text
    }
}

const HEADER_LEN: usize = std::mem::size_of::<CaptureHeader>();

fn direction_of(hook: Hook) -> u8 {
    match hook {
        Hook::Ingress => CAPTURE_INGRESS,
        Hook::Egress => CAPTURE_EGRESS,
    }
}

fn debug_tc(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let cli: Cli = parse_args("debug-tc", args)?;
    match cli.command {
        Sub::Attach {
            iface,
            hook,
            seconds,
            snaplen,
            leave,
        } => {
            let hook = hook_of(hook.as_deref())?;
            let seconds = match seconds {
                Some(s) => parse_seconds(&s)?,
                None => Duration::from_secs(1),
            };
            let snaplen = snaplen.unwrap_or(SNAPLEN_MAX as u32);
            let text = ctx.block_on(attach(iface, hook, seconds, snaplen, leave))??;
            ctx.out.write_all(text.as_bytes())?;
        }
        Sub::Detach { iface, hook } => {
            let hook = hook_of(hook.as_deref())?;
            let text = ctx.block_on(detach(iface, hook))??;
            ctx.out.write_all(text.as_bytes())?;
        }
        Sub::Show { iface, hook } => {
            let hook = hook_of(hook.as_deref())?;
            let text = ctx.block_on(show(iface, hook))??;
            ctx.out.write_all(text.as_bytes())?;
        }
    }
    Ok(0)
}

async fn attach(
    iface: String,
    hook: Hook,
    seconds: Duration,
    snaplen: u32,
    leave: bool,
) -> anyhow::Result<String> {
    let name = program_for(hook);
    if ACTIVE
        .lock()
        .map_err(|_| anyhow!("attachment list poisoned"))?
        .iter()
        .any(|a| a.attached.iface == iface && a.attached.hook == hook)
    {
        bail!(
            "{iface} {}: already attached (debug-tc detach {iface} {} first)",
            hook.name(),
            hook.name()
        );
    }
    let path = tc::choose_path()?;
    let btf = KernelBtf::get();
    let aya_btf = btf.as_ref().ok().map(|b| &b.aya);
    let task_helpers = u8::from(tc::task_helpers_allowed());
    let mut object = tc::load_object(OBJECT, aya_btf, &iface, |loader| {
        loader.override_global("TASK_HELPERS", &task_helpers, true);
        loader.override_global("SNAPLEN", &snaplen, true);
    })?;
    let program: &mut SchedClassifier = object.program_mut(name)?;
    tc::load_program(program, name)?;
    let attached = tc::attach(program, name, &iface, hook, path, tc::Order::Any).await?;
    object.forward_log();
    let mut ring = RingReader::take(&mut object, "CAPTURE_RING", "CAPTURE_LOST")?;
    let mut text = format!(
        "{iface} {}: attached {name} via {}",
        hook.name(),
        attached.path.name()
    );
    if attached.path == tc::TcPath::Clsact {
        text.push_str(&format!(
            ", removed {} old filter(s) named {name}",
            attached.removed_orphans
        ));
    }
    text.push('\n');
    let ifindex = crate::net::iface::ifindex(&iface)?;
    let direction = direction_of(hook);
    let mut tally = Tally {
        snaplen,
        ..Tally::default()
    };
    let end = Instant::now() + seconds;
    tally.drain(&mut ring, ifindex, direction);
    while Instant::now() < end {
        tokio::select! {
            _ = ring.ready() => {}
            _ = tokio::time::sleep_until(end.into()) => {}
        }
        tally.drain(&mut ring, ifindex, direction);
    }
    text.push_str(&format!(
        "{iface} {}: {} in {:.1} s\n",
        hook.name(),
        tally.report(ring.lost()),
        seconds.as_secs_f64()
    ));
    if leave {
        let program: &mut SchedClassifier = object.program_mut(name)?;
        tc::leave(program, attached)?;
        text.push_str(&format!("{iface} {}: left attached\n", hook.name()));
        return Ok(text);
    }
    ACTIVE
        .lock()
        .map_err(|_| anyhow!("attachment list poisoned"))?
        .push(Active {
            attached,
            program: name,
            ring,
            object,
            tally,
            ifindex,
        });
    Ok(text)
}

async fn detach(iface: String, hook: Hook) -> anyhow::Result<String> {
    let active = {
        let mut list = ACTIVE
            .lock()
            .map_err(|_| anyhow!("attachment list poisoned"))?;
        list.iter()
            .position(|a| a.attached.iface == iface && a.attached.hook == hook)
            .map(|i| list.swap_remove(i))
    };
    let Some(mut active) = active else {
        let name = program_for(hook);
        let removed = tc::remove_filters(&iface, hook, name).await?;
        if removed == 0 {
            bail!("{iface} {}: nothing attached", hook.name());
        }
        return Ok(format!(
            "{iface} {}: removed {removed} old filter(s) named {name}\n",
            hook.name()
        ));
    };
    let program: &mut SchedClassifier = active.object.program_mut(active.program)?;
    tc::detach(program, active.attached)?;
    // Packets queued before the detach are still counted.
    let direction = direction_of(hook);
    active
        .tally
        .drain(&mut active.ring, active.ifindex, direction);
    Ok(format!(
        "{iface} {}: detached; {} since attach\n",
        hook.name(),
        active.tally.report(active.ring.lost())
    ))
}

async fn show(iface: String, hook: Hook) -> anyhow::Result<String> {
    let entries = tc::filters(&iface, hook).await?;
    let mut text = String::new();
    for e in &entries {
        match e.path {
            tc::TcPath::Clsact => text.push_str(&format!(
                "{iface} {}: bpf filter pref {} handle {:#x} {}\n",
                hook.name(),
                e.priority,
                e.handle,
                e.name
            )),
            tc::TcPath::Tcx => text.push_str(&format!(
                "{iface} {}: tcx program {}\n",
                hook.name(),
                e.name
            )),
        }
    }
    text.push_str(&format!(
        "{iface} {}: {} BPF program(s) attached\n",
        hook.name(),
        entries.len()
    ));
    Ok(text)
}
