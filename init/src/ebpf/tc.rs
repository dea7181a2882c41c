//! Attaching TC classifiers (`SchedClassifier`) of a loaded object to an
//! interface's ingress or egress, capability-free. TCX links where the
//! running kernel has them (decided from its BTF, not its version: distro
//! kernels backport), else a `clsact` qdisc and a netlink `cls_bpf` filter.
//!
//! A netlink filter outlives the process that made it (the kernel holds the
//! program), so a killed myinit leaves its filters behind; TCX links die
//! with their fd. Before attaching program P through netlink, the filters
//! on that hook named P whose program no process holds open any more (a
//! killed one's) are removed, and the caller is told how many; those of a
//! live process (another myinit answering for its own fake hosts) stay.

use std::io;

use aya::programs::links::{Link as _, LinkOrder};
use aya::programs::tc::{
    self, NlOptions, SchedClassifierLink, SchedClassifierLinkId, TcAttachOptions, TcAttachType,
    TcError as AyaTcError, TcHandle as AyaTcHandle,
};
use aya::programs::{ProgramError, SchedClassifier};
use futures::StreamExt as _;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST};
use rtnetlink::packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_utils::nla::{Nla as _, NlasIterator};
use thiserror::Error;

use crate::kernel::btf::KernelBtf;

/// Environment variable forcing a path: `clsact` (also on a TCX kernel, so
/// both paths can be tested on one machine) or `tcx`.
pub const PATH_ENV: &str = "MYINIT_TC";

/// `TCA_BPF_NAME` and `TCA_BPF_ID` in a cls_bpf filter's options (stable
/// UAPI, `include/uapi/linux/pkt_cls.h`); netlink-packet-route has no
/// cls_bpf options type, so its raw attributes are read.
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_ID: u16 = 11;

/// Which side of the interface a program sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Ingress,
    Egress,
}

impl Hook {
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "ingress" => Some(Hook::Ingress),
            "egress" => Some(Hook::Egress),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Hook::Ingress => "ingress",
            Hook::Egress => "egress",
        }
    }

    fn attach_type(self) -> TcAttachType {
        match self {
            Hook::Ingress => TcAttachType::Ingress,
            Hook::Egress => TcAttachType::Egress,
        }
    }

    /// The clsact qdisc's minor for this hook (the filters' parent).
    fn clsact_minor(self) -> u16 {
        match self {
            Hook::Ingress => TcHandle::MIN_INGRESS,
            Hook::Egress => TcHandle::MIN_EGRESS,
        }
    }
}

/// Where on the hook a program goes, among the others there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Ahead of every program attached so far (TCX `BPF_F_BEFORE`; clsact
    /// priority 1, the first a filter can have): a capture, which must see
    /// what the stack sent whatever else is attached.
    First,
    /// Where the kernel puts a new program: after the others on TCX, and
    /// ahead of the others on clsact (its automatic priority is one below
    /// the lowest there, or 49152).
    Any,
}

/// How a program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcPath {
    /// A TCX link (Linux 6.6+): gone when its fd closes.
    Tcx,
    /// A `clsact` qdisc and a netlink `cls_bpf` filter (Linux 4.5+): stays
    /// until removed.
    Clsact,
}

impl TcPath {
    pub fn name(self) -> &'static str {
        match self {
            TcPath::Tcx => "tcx",
            TcPath::Clsact => "clsact",
        }
    }
}

/// Errors of TC attach and detach, each one line a user can act on.
#[derive(Debug, Error)]
pub enum TcError {
    #[error("{0}: no such interface")]
    NoSuchInterface(String),
    #[error("{iface}: attaching a TC program needs root (CAP_NET_ADMIN and CAP_BPF)")]
    NotRoot { iface: String },
    #[error(
        "{iface}: the kernel has no clsact qdisc: load the sch_ingress module \
         (modprobe sch_ingress) or build CONFIG_NET_SCH_INGRESS in"
    )]
    NoClsact { iface: String },
    #[error(
        "{iface}: the kernel has no BPF classifier: load the cls_bpf module \
         (modprobe cls_bpf) or build CONFIG_NET_CLS_BPF in"
    )]
    NoClsBpf { iface: String },
    #[error("{PATH_ENV}={0}: expected tcx or clsact")]
    BadOverride(String),
    #[error("{PATH_ENV}=tcx: this kernel has no TCX (no BPF_TCX_INGRESS in its BTF; Linux 6.6+)")]
    NoTcx,
    #[error(transparent)]
    Object(#[from] super::ObjectError),
    #[error("loading {name}")]
    Load {
        name: String,
        #[source]
        error: ProgramError,
    },
    #[error("{iface} {hook}: {what}: {message}")]
    Kernel {
        iface: String,
        hook: &'static str,
        what: &'static str,
        message: String,
    },
}

/// Whether the running kernel has TCX links: its BTF's `enum
/// bpf_attach_type` has `BPF_TCX_INGRESS`.
pub fn kernel_has_tcx() -> bool {
    KernelBtf::get()
        .ok()
        .and_then(|btf| btf.types.enum_values("bpf_attach_type"))
        .is_some_and(|values| values.iter().any(|(name, _)| name == "BPF_TCX_INGRESS"))
}

/// The path to use: `MYINIT_TC` if set, else TCX when the kernel has it.
pub fn choose_path() -> Result<TcPath, TcError> {
    let forced = std::env::var(PATH_ENV).unwrap_or_default();
    match forced.as_str() {
        "clsact" => Ok(TcPath::Clsact),
        "tcx" if kernel_has_tcx() => Ok(TcPath::Tcx),
        "tcx" => Err(TcError::NoTcx),
        "" if kernel_has_tcx() => Ok(TcPath::Tcx),
        "" => Ok(TcPath::Clsact),
        other => Err(TcError::BadOverride(other.to_string())),
    }
}

/// A program attached by `attach`; hand it back to `detach` or `leave`.
#[derive(Debug)]
pub struct Attached {
    pub iface: String,
    pub hook: Hook,
    pub path: TcPath,
    /// Filters of the same program name left on the hook by an earlier
    /// process, removed before attaching (clsact path only).
    pub removed_orphans: usize,
    link: SchedClassifierLinkId,
}

/// One filter or link on a hook, as `filters` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookEntry {
    pub path: TcPath,
    /// The program's name (cls_bpf's `TCA_BPF_NAME`, or the TCX program's).
    pub name: String,
    /// Filter priority and handle (clsact); zero for TCX.
    pub priority: u16,
    pub handle: u32,
    /// The program's id (clsact filters).
    pub prog_id: Option<u32>,
}

fn errno_of(error: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if let Some(code) = io.raw_os_error() {
                return Some(code);
            }
        }
        if let Some(nl) = e.downcast_ref::<aya::sys::NetlinkError>() {
            if let Some(code) = nl.raw_os_error() {
                return Some(code);
            }
        }
        source = e.source();
    }
    None
}

fn kernel_error(
    iface: &str,
    hook: Hook,
    what: &'static str,
    error: &(dyn std::error::Error + 'static),
) -> TcError {
    if errno_of(error) == Some(libc::EPERM) {
        return TcError::NotRoot {
            iface: iface.to_string(),
        };
    }
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        message.push_str(": ");
        message.push_str(&e.to_string());
        source = e.source();
    }
    TcError::Kernel {
        iface: iface.to_string(),
        hook: hook.name(),
        what,
        message,
    }
}

/// Whether TC programs may call the task helpers here (probed: 6.1's
/// verifier refuses them to SCHED_CLS, 6.18's allows them).
pub fn task_helpers_allowed() -> bool {
    use aya::programs::ProgramType;
    use aya::sys::{is_helper_supported, BpfHelper};
    [
        BpfHelper::BPF_FUNC_get_current_pid_tgid,
        BpfHelper::BPF_FUNC_get_current_comm,
    ]
    .into_iter()
    .all(|helper| is_helper_supported(ProgramType::SchedClassifier, helper).unwrap_or(false))
}

/// Loads an object of TC programs for `iface`. Without privileges its
/// first map already fails: the error then says what is needed rather than
/// which map.
pub fn load_object<'a>(
    object: &[u8],
    btf: Option<&'a aya::Btf>,
    iface: &str,
    configure: impl FnOnce(&mut aya::EbpfLoader<'a>),
) -> Result<super::Object, TcError> {
    super::Object::load(object, btf, configure).map_err(|e| {
        if errno_of(&e) == Some(libc::EPERM) {
            TcError::NotRoot {
                iface: iface.to_string(),
            }
        } else {
            e.into()
        }
    })
}

/// Loads one program of such an object into the kernel, naming it (and
/// every cause, the verifier's log among them) in the error.
pub fn load_program(program: &mut SchedClassifier, name: &str) -> Result<(), TcError> {
    program.load().map_err(|error| TcError::Load {
        name: name.to_string(),
        error,
    })
}

fn check_interface(iface: &str) -> Result<u32, TcError> {
    crate::net::iface::ifindex(iface).map_err(|_| TcError::NoSuchInterface(iface.to_string()))
}

/// Attaches a loaded `program` (named `name` in its object) to `iface`'s
/// `hook` by `path`, at `order` among the programs there. On the clsact
/// path the qdisc is added if missing and filters named `name` already on
/// the hook are removed first. Must run inside the tokio runtime (the
/// filter dump uses rtnetlink).
pub async fn attach(
    program: &mut SchedClassifier,
    name: &str,
    iface: &str,
    hook: Hook,
    path: TcPath,
    order: Order,
) -> Result<Attached, TcError> {
    check_interface(iface)?;
    let mut removed_orphans = 0;
    let options = match path {
        TcPath::Tcx => TcAttachOptions::TcxOrder(match order {
            Order::First => LinkOrder::first(),
            Order::Any => LinkOrder::default(),
        }),
        TcPath::Clsact => {
            match tc::qdisc_add_clsact(iface) {
                Ok(()) => {}
                Err(AyaTcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) if errno_of(&e) == Some(libc::ENOENT) => {
                    return Err(TcError::NoClsact {
                        iface: iface.to_string(),
                    })
                }
                Err(e) => return Err(kernel_error(iface, hook, "adding the clsact qdisc", &e)),
            }
            removed_orphans = remove_filters(iface, hook, name).await?;
            TcAttachOptions::Netlink(NlOptions {
                priority: match order {
                    Order::First => 1,
                    Order::Any => 0,
                },
                ..NlOptions::default()
            })
        }
    };
    let link = program
        .attach_with_options(iface, hook.attach_type(), options)
        .map_err(|e| match (path, errno_of(&e)) {
            // cls_bpf missing: the kernel finds no classifier of kind "bpf".
            (TcPath::Clsact, Some(libc::ENOENT)) => TcError::NoClsBpf {
                iface: iface.to_string(),
            },
            _ => kernel_error(iface, hook, "attaching", &e),
        })?;
    Ok(Attached {
        iface: iface.to_string(),
        hook,
        path,
        removed_orphans,
        link,
    })
}

/// Detaches what `attach` attached (the TCX link or the netlink filter).
pub fn detach(program: &mut SchedClassifier, attached: Attached) -> Result<(), TcError> {
    program
        .detach(attached.link)
        .map_err(|e| kernel_error(&attached.iface, attached.hook, "detaching", &e))
}

/// Lets go of an attachment without detaching it, as a killed process
/// would: a netlink filter stays in the kernel; a TCX link stays only while
/// this process keeps its fd (until it exits).
pub fn leave(program: &mut SchedClassifier, attached: Attached) -> Result<(), TcError> {
    let link = program
        .take_link(attached.link)
        .map_err(|e: ProgramError| kernel_error(&attached.iface, attached.hook, "leaving", &e))?;
    // Dropping the link would detach it; leaving it attached is the point.
    std::mem::forget(link);
    Ok(())
}

/// Removes the netlink filters on `iface`'s `hook` whose program is named
/// `name` and held open by no process (left by a killed one); returns how
/// many there were.
pub async fn remove_filters(iface: &str, hook: Hook, name: &str) -> Result<usize, TcError> {
    let orphans: Vec<HookEntry> = netlink_filters(iface, hook)
        .await?
        .into_iter()
        .filter(|f| f.name == name && !f.prog_id.is_some_and(program_held_open))
        .collect();
    let mut removed = 0;
    for f in &orphans {
        let link = SchedClassifierLink::attached(
            iface,
            hook.attach_type(),
            f.priority,
            AyaTcHandle::from(f.handle),
            None,
        )
        .map_err(|e| kernel_error(iface, hook, "removing old filters", &e))?;
        match link.detach() {
            Ok(()) => removed += 1,
            // Gone in between (another process removed it).
            Err(e) if errno_of(&e) == Some(libc::ENOENT) => {}
            Err(e) => return Err(kernel_error(iface, hook, "removing old filters", &e)),
        }
    }
    Ok(removed)
}

/// Whether some process holds the BPF program `id` open (its fdinfo says
/// `prog_id: id`): a filter of such a program is not an orphan.
fn program_held_open(id: u32) -> bool {
    let wanted = format!("prog_id:\t{id}\n");
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        let is_pid = p
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        is_pid
            && std::fs::read_dir(p.path().join("fdinfo")).is_ok_and(|fds| {
                fds.flatten().any(|fd| {
                    std::fs::read_to_string(fd.path()).is_ok_and(|info| info.contains(&wanted))
                })
            })
    })
}

/// The BPF programs on `iface`'s `hook`: cls_bpf filters, then TCX links
/// (when the kernel has TCX). Must run inside the tokio runtime.
pub async fn filters(iface: &str, hook: Hook) -> Result<Vec<HookEntry>, TcError> {
    let mut entries = netlink_filters(iface, hook).await?;
    if kernel_has_tcx() {
        let (_, programs) = SchedClassifier::query_tcx(iface, hook.attach_type())
            .map_err(|e| kernel_error(iface, hook, "listing TCX links", &e))?;
        entries.extend(programs.iter().map(|p| HookEntry {
            path: TcPath::Tcx,
            name: p.name_as_str().unwrap_or("?").to_string(),
            priority: 0,
            handle: 0,
            prog_id: None,
        }));
    }
    Ok(entries)
}

/// Dumps the cls_bpf filters under the clsact qdisc's `hook` (an
/// interface without clsact has none).
async fn netlink_filters(iface: &str, hook: Hook) -> Result<Vec<HookEntry>, TcError> {
    let index = check_interface(iface)?;
    let fail = |what: &'static str, message: String| TcError::Kernel {
        iface: iface.to_string(),
        hook: hook.name(),
        what,
        message,
    };
    let (connection, mut handle, _) =
        rtnetlink::new_connection().map_err(|e| fail("netlink socket", e.to_string()))?;
    let task = tokio::spawn(connection);
    let mut request = TcMessage::default();
    request.header.index = index as i32;
    request.header.parent = TcHandle {
        major: TcHandle::CLSACT.major,
        minor: hook.clsact_minor(),
    };
    let mut message = NetlinkMessage::from(RouteNetlinkMessage::GetTrafficFilter(request));
    message.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let result = async {
        let mut responses = handle
            .request(message)
            .map_err(|e| fail("listing filters", e.to_string()))?;
        let mut entries = Vec::new();
        while let Some(response) = responses.next().await {
            match response.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewTrafficFilter(filter)) => {
                    if let Some(entry) = bpf_filter(&filter) {
                        entries.push(entry);
                    }
                }
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    let code = e.code.map_or(0, |c| -c.get());
                    if code == libc::EPERM {
                        return Err(TcError::NotRoot {
                            iface: iface.to_string(),
                        });
                    }
                    return Err(fail(
                        "listing filters",
                        io::Error::from_raw_os_error(code).to_string(),
                    ));
                }
                _ => {}
            }
        }
        Ok(entries)
    }
    .await;
    task.abort();
    result
}

/// A cls_bpf filter's program name, priority and handle; None for other
/// kinds and for the per-priority chain heads (no options).
fn bpf_filter(filter: &TcMessage) -> Option<HookEntry> {
    let is_bpf = filter
        .attributes
        .iter()
        .any(|a| matches!(a, TcAttribute::Kind(kind) if kind == "bpf"));
    if !is_bpf {
        return None;
    }
    // Options of kinds it does not know come as one raw attribute holding
    // the nested ones.
    let option = |kind: u16| -> Option<Vec<u8>> {
        filter.attributes.iter().find_map(|a| match a {
            TcAttribute::Options(options) => options.iter().find_map(|o| match o {
                TcOption::Other(nested) => {
                    let mut value = vec![0; nested.value_len()];
                    nested.emit_value(&mut value);
                    NlasIterator::new(&value[..]).find_map(|nla| {
                        let nla = nla.ok()?;
                        (nla.kind() == kind).then(|| nla.value().to_vec())
                    })
                }
                _ => None,
            }),
            _ => None,
        })
    };
    let name = option(TCA_BPF_NAME).map(|bytes| {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    })?;
    let prog_id = option(TCA_BPF_ID)
        .and_then(|b| <[u8; 4]>::try_from(&b[..]).ok())
        .map(u32::from_ne_bytes);
    Some(HookEntry {
        path: TcPath::Clsact,
        name,
        priority: (filter.header.info >> 16) as u16,
        handle: u32::from(filter.header.handle),
        prog_id,
    })
}
