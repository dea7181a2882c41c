//! Programs made at run time (a filter translated from classic BPF, see
//! `filter/ebpf.rs`). aya loads programs from ELF objects only and keeps
//! its bpf(2) wrappers private, so these three calls are made here: load
//! instructions (with the verifier's log when it refuses them), put a
//! program in a `PROG_ARRAY` slot, and test-run one on a packet. The
//! attribute layouts are the stable UAPI of `include/uapi/linux/bpf.h`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use thiserror::Error;

const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// `enum bpf_prog_type` values used here.
pub const PROG_TYPE_SCHED_CLS: u32 = 3;
pub const PROG_TYPE_TRACEPOINT: u32 = 5;
pub const PROG_TYPE_TRACING: u32 = 26;
/// `enum bpf_attach_type` BPF_TRACE_RAW_TP (tp_btf programs).
pub const ATTACH_TRACE_RAW_TP: u32 = 23;

/// Bytes of verifier log kept when a load is refused: the end of it says why.
const LOG_BYTES: usize = 1 << 20;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// What a loaded program is for.
#[derive(Clone, Copy, Debug)]
pub struct ProgramKind {
    pub prog_type: u32,
    pub expected_attach_type: u32,
    /// The BTF id of the hook (tp_btf: `btf_trace_<name>`), else 0.
    pub attach_btf_id: u32,
}

impl ProgramKind {
    /// A TC classifier.
    pub const SCHED_CLS: ProgramKind = ProgramKind {
        prog_type: PROG_TYPE_SCHED_CLS,
        expected_attach_type: 0,
        attach_btf_id: 0,
    };
}

#[derive(Debug, Error)]
pub enum RawError {
    #[error("{name}: the kernel's verifier refused the program ({errno}); its log ends:\n{log}")]
    Refused {
        name: String,
        errno: io::Error,
        log: String,
    },
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_prog_fd: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is the command's attribute block, sized by the call;
    // every pointer in it refers to memory that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Loads `insns` as a program named `name` (15 bytes kept). A refusal
/// carries the end of the verifier's log.
pub fn load(name: &str, kind: ProgramKind, insns: &[Insn]) -> Result<OwnedFd, RawError> {
    let license = c"Dual MIT/GPL";
    let mut prog_name = [0u8; 16];
    for (to, from) in prog_name.iter_mut().zip(name.bytes().take(15)) {
        *to = if from.is_ascii_alphanumeric() {
            from
        } else {
            b'_'
        };
    }
    let mut attr = ProgLoadAttr {
        prog_type: kind.prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name,
        expected_attach_type: kind.expected_attach_type,
        attach_btf_id: kind.attach_btf_id,
        ..Default::default()
    };
    if let Ok(fd) = bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: a new fd the kernel returned, owned by no one else.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    }
    // Again with the log: only a refused program pays for it.
    let mut log = vec![0u8; LOG_BYTES];
    attr.log_level = 1;
    attr.log_size = log.len() as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: as above.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
        Err(errno) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            Err(RawError::Refused {
                name: name.to_string(),
                errno,
                log: tail,
            })
        }
    }
}

/// Puts program `prog` in slot `index` of the `PROG_ARRAY` map `map`.
pub fn set_slot(map: RawFd, index: u32, prog: BorrowedFd<'_>) -> Result<(), RawError> {
    let value = prog.as_raw_fd() as u32;
    let mut attr = MapElemAttr {
        map_fd: map as u32,
        key: &index as *const u32 as u64,
        value: &value as *const u32 as u64,
        ..Default::default()
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr)
        .map(|_| ())
        .map_err(|source| RawError::Sys {
            what: "putting the filter in its program array",
            source,
        })
}

/// Runs a SCHED_CLS program `repeat` times on `packet` in the kernel
/// (`BPF_PROG_TEST_RUN`): its return value and the mean ns per run.
pub fn test_run(prog: &impl AsRawFd, packet: &[u8], repeat: u32) -> Result<(u32, u32), RawError> {
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_in: packet.as_ptr() as u64,
        repeat,
        ..Default::default()
    };
    bpf(BPF_PROG_TEST_RUN, &mut attr).map_err(|source| RawError::Sys {
        what: "test-running the program",
        source,
    })?;
    Ok((attr.retval, attr.duration))
}
