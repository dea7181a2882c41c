//! The eBPF backend: `ebpf-programs/src/bin/fakehost.rs` attached at the
//! interface's TC egress (TCX, or clsact on older kernels). Userspace only
//! fills the host map and prints the log lines from the event ring; every
//! answer is made in the kernel.

use std::net::IpAddr;
use std::time::Instant;

use anyhow::Context as _;
use aya::maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues};
use aya::programs::SchedClassifier;
use myinit_common::fakehost::{
    FakeHostBudget, FakeHostConfig, FakeHostCounters, FakeHostEvent, FakeHostKey, MAX_ROUTERS,
};

use super::{Answer, Counts, FakeHost, HostSet, LogLimiter};
use crate::ebpf::ring::{self, RingReader};
use crate::ebpf::tc::{self, Attached, Hook};
use crate::ebpf::Object;
use crate::jobs::{Drained, EventSource};
use crate::kernel::btf::KernelBtf;
use crate::packet::MacAddr;
use crate::state::State;

/// The object built from `ebpf-programs/src/bin/fakehost.rs` by init/build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fakehost"));

const PROGRAM: &str = "fakehost_egress";
/// Events taken per turn before other tasks get theirs.
const BATCH: usize = 1024;

/// The routers in the program's router slots, as the job sees them: it
/// says each router goes when the job ends with it still there.
type RouterMirror = std::sync::Arc<std::sync::Mutex<Vec<Option<FakeHost>>>>;

/// Sends a leaving router's last RA out through the interface, where the
/// program (still attached, still knowing the router) hands it to the
/// interface's ingress; the kernel then drops its default route through
/// this router at once.
fn say_router_leaves(ifindex: u32, host: &FakeHost) {
    if let Some(frame) = super::af_packet::leaving_router_frame(host) {
        if let Ok(sender) = crate::net::packet_socket::PacketSender::open() {
            let _ = sender.send(ifindex, 0x86dd, &frame);
        }
    }
}

struct EbpfHosts {
    ifindex: u32,
    router_mirror: RouterMirror,
    hosts: HashMap<MapData, FakeHostKey, FakeHostConfig>,
    counters: PerCpuHashMap<MapData, FakeHostKey, FakeHostCounters>,
    router: Array<MapData, FakeHostConfig>,
}

impl EbpfHosts {
    fn put(&mut self, ip: IpAddr, config: FakeHostConfig) -> anyhow::Result<()> {
        let key = super::key_of(ip);
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        let zero = PerCpuValues::try_from(vec![FakeHostCounters::default(); cpus])?;
        self.counters
            .insert(key, zero, 0)
            .context("adding to the counter map")?;
        self.hosts
            .insert(key, config, 0)
            .context("adding to the host map")?;
        Ok(())
    }

    fn take(&mut self, ip: IpAddr) {
        let key = super::key_of(ip);
        let _ = self.hosts.remove(&key);
        let _ = self.counters.remove(&key);
    }
}

impl HostSet for EbpfHosts {
    fn insert(&mut self, host: &FakeHost) -> anyhow::Result<()> {
        self.put(host.ip, host.config())?;
        if let Some(alias) = host.alias() {
            if let Err(e) = self.put(IpAddr::V6(alias), host.alias_config()) {
                self.take(host.ip);
                return Err(e);
            }
        }
        if host.advertises() {
            let mut mirror = self.router_mirror.lock().unwrap_or_else(|e| e.into_inner());
            mirror.resize(MAX_ROUTERS as usize, None);
            let slot = mirror.iter().position(Option::is_none);
            let set = slot
                .ok_or_else(|| {
                    anyhow::anyhow!("{MAX_ROUTERS} routers answer on this interface already")
                })
                .and_then(|slot| {
                    self.router
                        .set(slot as u32, host.config(), 0)
                        .context("setting a router slot")?;
                    mirror[slot] = Some(host.clone());
                    Ok(())
                });
            if let Err(e) = set {
                drop(mirror);
                self.take(host.ip);
                if let Some(alias) = host.alias() {
                    self.take(IpAddr::V6(alias));
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn remove(&mut self, host: &FakeHost) -> anyhow::Result<()> {
        if host.advertises() {
            say_router_leaves(self.ifindex, host);
            let mut mirror = self.router_mirror.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = mirror.iter().position(|h| h.as_ref() == Some(host)) {
                mirror[slot] = None;
                self.router
                    .set(slot as u32, FakeHostConfig::default(), 0)
                    .context("clearing a router slot")?;
            }
        }
        self.take(host.ip);
        if let Some(alias) = host.alias() {
            self.take(IpAddr::V6(alias));
        }
        Ok(())
    }

    fn counts(&self, host: &FakeHost) -> Counts {
        let mut counts = Counts::default();
        let addresses = std::iter::once(host.ip).chain(host.alias().map(IpAddr::V6));
        for ip in addresses {
            if let Ok(per_cpu) = self.counters.get(&super::key_of(ip), 0) {
                for c in per_cpu.iter() {
                    super::add_counts(&mut counts, c);
                }
            }
        }
        counts
    }
}

fn address(version: u8, bytes: &[u8; 16]) -> IpAddr {
    if version == 4 {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        IpAddr::from(*bytes)
    }
}

/// The attached program and its event ring, owned by the job.
struct EbpfAnswerer {
    iface: String,
    object: Object,
    attached: Option<Attached>,
    events: RingReader,
    /// Each CPU's event budget: what it skipped after its last event.
    budget: PerCpuArray<MapData, FakeHostBudget>,
    limiter: LogLimiter,
    answers: u64,
    ifindex: u32,
    router_mirror: RouterMirror,
}

impl EventSource for EbpfAnswerer {
    async fn ready(&mut self) {
        self.events.ready().await;
    }

    fn drain(&mut self, max: usize) -> Drained {
        let (iface, limiter, answers) = (&self.iface, &mut self.limiter, &mut self.answers);
        let now = Instant::now();
        let taken = self.events.drain(max, |bytes| {
            if let Some(e) = ring::record::<FakeHostEvent>(bytes) {
                // The answers the program made no event for came first.
                limiter.skipped(u64::from(e.skipped));
                *answers += 1 + u64::from(e.skipped);
                let answer = Answer {
                    kind: e.kind,
                    target: address(e.ip_version, &e.target),
                    asker: address(e.ip_version, &e.asker),
                    mac: MacAddr(e.mac),
                };
                super::print_lines(limiter.offer(|| answer.line(iface), now));
            }
        });
        // Idle: the job ends if its interface went away (the program went
        // with it).
        let done = taken == 0 && !crate::net::iface::index_exists(self.ifindex);
        Drained { taken, done }
    }

    fn stop_new(&mut self) {
        // A router still here as the job ends (poweroff, the end of the
        // script) says it goes, as `del` has it say: while the program is
        // attached, which hands the RA to the interface's ingress.
        let routers =
            std::mem::take(&mut *self.router_mirror.lock().unwrap_or_else(|e| e.into_inner()));
        for host in routers.into_iter().flatten() {
            say_router_leaves(self.ifindex, &host);
        }
        self.detach();
    }
}

impl EbpfAnswerer {
    /// Counts the answers after each CPU's last event as suppressed lines
    /// (once detached and drained, nothing adds to them).
    fn count_trailing_skipped(&mut self) {
        let skipped: u64 = self
            .budget
            .get(&0, 0)
            .map(|per_cpu| per_cpu.iter().map(|b| b.skipped).sum())
            .unwrap_or(0);
        self.limiter.skipped(skipped);
        self.answers += skipped;
    }

    fn detach(&mut self) {
        if let Some(attached) = self.attached.take() {
            // An interface that went away took its filter or link along.
            if !crate::net::iface::index_exists(self.ifindex) {
                return;
            }
            if let Ok(program) = self.object.program_mut::<SchedClassifier>(PROGRAM) {
                if let Err(e) = tc::detach(program, attached) {
                    eprintln!("fakehost: {e}");
                }
            }
        }
    }
}

impl Drop for EbpfAnswerer {
    fn drop(&mut self) {
        self.detach();
    }
}

/// `kconfig bpf`'s proof for fakehost: its program passes this kernel's
/// verifier (loaded, not attached).
pub async fn self_test() -> anyhow::Result<String> {
    let btf = KernelBtf::get();
    let aya_btf = btf.as_ref().ok().map(|b| &b.aya);
    let mut object = tc::load_object(OBJECT, aya_btf, "lo", |_| {})?;
    tc::load_program(object.program_mut(PROGRAM)?, PROGRAM)?;
    Ok(format!("fakehost: eBPF backend: loaded {PROGRAM}"))
}

/// Loads and attaches the program on `iface` and starts its job; returns
/// the host maps and the backend's name.
pub fn start(state: &State, iface: &str) -> anyhow::Result<(Box<dyn HostSet>, String)> {
    let _runtime = state.rt.enter();
    let ifindex = crate::net::iface::ifindex(iface)?;
    let btf = KernelBtf::get();
    let aya_btf = btf.as_ref().ok().map(|b| &b.aya);
    let mut object = Object::load(OBJECT, aya_btf, |_| {})?;
    let path = tc::choose_path()?;
    {
        let program: &mut SchedClassifier = object.program_mut(PROGRAM)?;
        program.load().context("loading the TC program")?;
    }
    let attached = {
        let program: &mut SchedClassifier = object.program_mut(PROGRAM)?;
        state.rt.block_on(tc::attach(
            program,
            PROGRAM,
            iface,
            Hook::Egress,
            path,
            tc::Order::Any,
        ))?
    };
    let name = format!("ebpf ({})", path.name());
    let router_mirror = RouterMirror::default();
    let hosts = EbpfHosts {
        ifindex,
        router_mirror: router_mirror.clone(),
        hosts: HashMap::try_from(object.take_map("FAKEHOSTS")?)?,
        counters: PerCpuHashMap::try_from(object.take_map("FAKEHOST_COUNTERS")?)?,
        router: Array::try_from(object.take_map("FAKEHOST_ROUTERS")?)?,
    };
    object.forward_log();
    let events = RingReader::take(&mut object, "FAKEHOST_EVENTS", "FAKEHOST_LOST")?;
    let budget = PerCpuArray::try_from(object.take_map("FAKEHOST_BUDGET")?)?;
    let answerer = EbpfAnswerer {
        iface: iface.to_string(),
        object,
        attached: Some(attached),
        events,
        budget,
        limiter: LogLimiter::new(iface),
        answers: 0,
        ifindex,
        router_mirror,
    };
    let (report_name, target) = (name.clone(), iface.to_string());
    super::spawn_answerer(
        state,
        iface,
        &name,
        BATCH,
        answerer,
        move |mut answerer, ended| {
            answerer.count_trailing_skipped();
            let lost = answerer.events.lost();
            let (answers, suppressed) = (answerer.answers, answerer.limiter.suppressed_total);
            if let Some(line) = answerer.limiter.flush() {
                eprintln!("{line}");
            }
            // Detached before the report says so.
            drop(answerer);
            let how = match ended {
                crate::jobs::Ended::ByItself => "the interface went away",
                crate::jobs::Ended::Stopped => "stopped",
            };
            format!(
                "fakehost: {target}: {how} ({report_name}): {answers} answers logged, \
             {suppressed} log lines suppressed, {lost} events lost; program detached"
            )
        },
    )?;
    Ok((Box::new(hosts), name))
}
