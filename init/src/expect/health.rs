//! The kernel's health while a test runs: the kernel log watched from the
//! test's start for oopses, BUGs, WARNINGs and sanitizer reports, each
//! named by the function that faulted, and kmemleak asked for leaks after
//! it. A test that passes its own checks but made the kernel complain has
//! still failed.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use crate::kernel::kallsyms::Kallsyms;
use crate::kernel::kmsg::{next_kmsg_record, open_kmsg_at_end, KmsgError};
use crate::kernel::mounts::is_mounted;
use crate::util::io_error;

/// Records read by one poll at most: a kernel logging in a loop must not
/// keep the test runner here.
const MAX_RECORDS_PER_POLL: usize = 100_000;

/// Records after a problem's first line searched for its function: an
/// oops prints its RIP within about 10, an RCU stall its NMI backtrace's
/// RIP within about 30.
const CONTEXT_RECORDS: usize = 40;

/// Functions that only report or route a problem; the culprit is the
/// first frame that is none of them. Compared without a `.cold`-like
/// suffix.
const REPORTING_FUNCTIONS: &[&str] = &[
    "dump_stack",
    "dump_stack_lvl",
    "__dump_stack",
    "show_stack",
    "show_trace_log_lvl",
    "__warn",
    "warn_slowpath_fmt",
    "report_bug",
    "handle_bug",
    "exc_invalid_op",
    "asm_exc_invalid_op",
    "panic",
    "refcount_warn_saturate",
    "print_report",
    "print_address_description",
    "kasan_report",
    "kasan_check_range",
    "kfence_report_error",
    "ubsan_epilogue",
    "__might_resched",
    "__might_sleep",
    "__might_fault",
    "__schedule_bug",
    "__list_add_valid_or_report",
    "__list_del_entry_valid_or_report",
    // An RCU stall's backtrace runs through the timer interrupt.
    "nmi_cpu_backtrace",
    "nmi_trigger_cpumask_backtrace",
    "arch_trigger_cpumask_backtrace",
    "rcu_dump_cpu_stacks",
    "print_cpu_stall",
    "check_cpu_stall",
    "rcu_pending",
    "rcu_sched_clock_irq",
    "update_process_times",
    "tick_sched_handle",
    "tick_nohz_handler",
    "tick_sched_timer",
    "__hrtimer_run_queues",
    "hrtimer_interrupt",
    "__sysvec_apic_timer_interrupt",
    "sysvec_apic_timer_interrupt",
    "asm_sysvec_apic_timer_interrupt",
];

/// Families of reporting functions (sanitizer entry points).
const REPORTING_PREFIXES: &[&str] = &["__ubsan_handle_", "__asan_", "__kasan_", "__hwasan_"];

/// The allocator's own frames at the top of a kmemleak backtrace; the
/// leak is the caller's.
const ALLOCATOR_PREFIXES: &[&str] = &[
    "kmemleak_",
    "__kmalloc",
    "kmalloc",
    "__do_kmalloc",
    "__kmem_cache_alloc",
    "kmem_cache_alloc",
    "slab_",
    "__slab_",
    "___slab_",
    "kvmalloc",
    "__kvmalloc",
    "kvzalloc",
    "vmalloc",
    "__vmalloc",
    "vzalloc",
    "alloc_pages",
    "__alloc_pages",
    "krealloc",
    "__krealloc",
    "kmemdup",
    "kstrdup",
    "kstrndup",
    "pcpu_alloc",
    "__alloc_percpu",
    "mempool_alloc",
];

/// Where the kernel shows kmemleak (debugfs).
const DEBUGFS: &str = "/sys/kernel/debug";

/// A problem the kernel reported while a test ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Which pattern matched: "Oops", "BUG", "WARNING", "KASAN", "UBSAN",
    /// "kmemleak", "refcount_t", "RCU stall", "general protection fault",
    /// "Kernel panic".
    pub kind: &'static str,
    /// The first matching log line, without the dmesg timestamp.
    pub line: String,
    /// The faulting function as `name+0xoff/0xsize [module]`, from the
    /// line itself or the RIP / pc / call trace that follows it; a raw
    /// address the kernel could not name is looked up in kallsyms (and
    /// stays in hex when that fails too).
    pub function: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.function {
            Some(function) => write!(f, "kernel {} in {function}", self.kind),
            // "kernel BUG: kernel NULL pointer dereference", not "BUG: BUG:".
            None if self.line.starts_with(self.kind) => write!(f, "kernel {}", self.line),
            None => write!(f, "kernel {}: {}", self.kind, self.line),
        }
    }
}

/// The kernel log followed from a test's start, so that a test is failed
/// for what the kernel reported while it ran and not for what came before.
pub struct HealthWatch {
    kmsg: File,
    /// One record at a time; /dev/kmsg gives EINVAL to a buffer too small
    /// for the record (at most about 8 KiB).
    buf: Vec<u8>,
    scanner: ProblemScanner,
}

impl HealthWatch {
    /// Starts watching the kernel log from now (records already in it are
    /// ignored). Err when /dev/kmsg cannot be opened (the caller then runs
    /// tests without the watch and says so once).
    pub fn start() -> Result<HealthWatch, KmsgError> {
        Ok(HealthWatch {
            kmsg: open_kmsg_at_end()?,
            buf: vec![0; 16 * 1024],
            scanner: ProblemScanner::default(),
        })
    }

    /// Reads what the kernel logged since the last call (without blocking,
    /// at most MAX_RECORDS_PER_POLL records) and returns the first problem
    /// seen since start. Records after it are still read, as they name the
    /// function a WARNING or Oops was in.
    pub fn poll(&mut self) -> Option<Problem> {
        for _ in 0..MAX_RECORDS_PER_POLL {
            match next_kmsg_record(&mut self.kmsg, &mut self.buf) {
                Ok(Some(record)) => self.scanner.feed(&record),
                // Nothing new; another read error is not one /dev/kmsg
                // gives, and the next poll tries again anyway.
                Ok(None) | Err(_) => break,
            }
        }
        self.scanner.problem.clone()
    }
}

/// Kernel log records in order, keeping the first problem and completing
/// its function from the records that follow it. Pure: the tests feed it
/// record texts.
#[derive(Default)]
struct ProblemScanner {
    problem: Option<Problem>,
    /// Records after the problem's line still searched for its function.
    context_left: usize,
    /// Inside a "Call Trace:", where each record is one frame.
    in_call_trace: bool,
    /// Set by tests; else the running kernel's, loaded at the first raw
    /// address.
    symbols: Option<Arc<Kallsyms>>,
}

impl ProblemScanner {
    /// Takes one /dev/kmsg record ("PRIO,SEQ,USEC,FLAGS;message\n KEY=v…").
    fn feed(&mut self, record: &str) {
        // The lines after the first are the record's key=value dictionary.
        let Some((_, message)) = record.lines().next().and_then(|l| l.split_once(';')) else {
            return;
        };
        match &self.problem {
            None => {
                if let Some(kind) = problem_kind(message) {
                    let function = culprit(symbol_token(message));
                    self.context_left = if function.is_some() {
                        0
                    } else {
                        CONTEXT_RECORDS
                    };
                    self.problem = Some(Problem {
                        kind,
                        line: message.trim().to_string(),
                        function,
                    });
                }
            }
            Some(problem) if problem.function.is_none() && self.context_left > 0 => {
                self.context_left -= 1;
                let function = self.function_in_context(message);
                if let Some(problem) = &mut self.problem {
                    problem.function = function;
                }
            }
            Some(_) => {}
        }
    }

    /// The faulting function named by a record after the problem's line:
    /// a kernel RIP / pc, a call trace frame, or a further report line
    /// (the WARNING after a "refcount_t:" line) that is not a reporting
    /// helper.
    fn function_in_context(&mut self, message: &str) -> Option<String> {
        let text = message.trim();
        if text.starts_with("Call Trace:") || text.starts_with("Call trace:") {
            self.in_call_trace = true;
            return None;
        }
        // Frames are indented; anything else ends the trace.
        let frame = self.in_call_trace && message.starts_with(' ');
        self.in_call_trace = frame;
        if let Some(value) = register_value(text) {
            return match symbol_token(value) {
                Some(function) => culprit(Some(function)),
                None => self.symbolize_kernel_address(value),
            };
        }
        // "? name": a stale address found on the stack, not a caller.
        if frame && !text.starts_with('?') && !text.starts_with('<') {
            return culprit(symbol_token(text));
        }
        if problem_kind(text).is_some() {
            return culprit(symbol_token(text));
        }
        None
    }

    /// A raw kernel address ("0xffffffffc0123456", what %pS prints for an
    /// address the kernel could not name) looked up in kallsyms; None for
    /// a user-space address (a syscall's RIP: 0033:0x7f…).
    fn symbolize_kernel_address(&mut self, value: &str) -> Option<String> {
        let hex = value.split_whitespace().next()?.strip_prefix("0x")?;
        let addr = u64::from_str_radix(hex, 16).ok()?;
        if addr < 0xffff_8000_0000_0000 {
            return None;
        }
        let symbols = self.symbols.get_or_insert_with(Kallsyms::get);
        culprit(Some(symbols.symbolize(addr)))
    }
}

/// The kind of problem a kernel log message reports, if it reports one.
/// The more specific kinds are tried first ("BUG: KASAN:" is KASAN,
/// "Oops: general protection fault" is a general protection fault).
fn problem_kind(message: &str) -> Option<&'static str> {
    let m = message.trim_start();
    if has_word(m, "KASAN:") {
        Some("KASAN")
    } else if has_word(m, "UBSAN:") {
        Some("UBSAN")
    } else if m.starts_with("kmemleak:") && m.contains("new suspected memory leaks") {
        Some("kmemleak")
    } else if has_word(m, "refcount_t:") {
        Some("refcount_t")
    } else if (m.contains("INFO: rcu_") && m.contains("stall")) || has_word(m, "RCU stall") {
        Some("RCU stall")
    // Anchored: "traps: prog[42] general protection fault ip:…" is a user
    // program's crash, which the kernel survives.
    } else if m.starts_with("general protection fault")
        || m.starts_with("Oops: general protection fault")
    {
        Some("general protection fault")
    } else if has_word(m, "Kernel panic") {
        Some("Kernel panic")
    } else if has_word(m, "Oops") {
        Some("Oops")
    } else if has_word(m, "BUG:") || has_word(m, "kernel BUG at") {
        Some("BUG")
    // Anchored: "Spectre V2 : WARNING: Unprivileged eBPF is enabled…" is
    // advice, logged again whenever the sysctl changes.
    } else if m.starts_with("WARNING:") {
        Some("WARNING")
    } else {
        None
    }
}

/// Whether `word` occurs in `text` with no identifier character glued to
/// either end: "BUG:" is not found in "DEBUG:", "Oops" not in "Oopsie".
fn has_word(text: &str, word: &str) -> bool {
    let glued = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        let after_matters = word.ends_with(|c: char| c.is_alphanumeric());
        !(glued(before) || after_matters && glued(after))
    })
}

/// The value of a kernel register line naming the faulting instruction:
/// x86's "RIP: 0010:func+0x5/0x10 [mod]", arm64's "pc : func+…", arm's
/// "PC is at func+…".
fn register_value(text: &str) -> Option<&str> {
    if let Some(rest) = text.strip_prefix("RIP: ") {
        // After the code segment ("0010:", "0033:" for user space).
        return rest.split_once(':').map(|(_, value)| value);
    }
    text.strip_prefix("pc : ")
        .or_else(|| text.strip_prefix("PC is at "))
}

/// The first `name+0xoff/0xsize` in `text`, with the ` [module]` that
/// follows it.
fn symbol_token(text: &str) -> Option<String> {
    let is_symbol_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$');
    let hex_end = |from: usize| {
        text[from..]
            .find(|c: char| !c.is_ascii_hexdigit())
            .map_or(text.len(), |n| from + n)
    };
    for (plus, _) in text.match_indices("+0x") {
        let start = text[..plus]
            .rfind(|c: char| !is_symbol_char(c))
            .map_or(0, |i| i + 1);
        let offset_end = hex_end(plus + 3);
        if start == plus || offset_end == plus + 3 || !text[offset_end..].starts_with("/0x") {
            continue;
        }
        let end = hex_end(offset_end + 3);
        if end == offset_end + 3 {
            continue;
        }
        let mut token = text[start..end].to_string();
        if let Some((module, _)) = text[end..]
            .strip_prefix(" [")
            .and_then(|rest| rest.split_once(']'))
        {
            token.push_str(&format!(" [{module}]"));
        }
        return Some(token);
    }
    None
}

/// `function` unless it only reports the problem (dump_stack,
/// refcount_warn_saturate, kasan_report, …).
fn culprit(function: Option<String>) -> Option<String> {
    function.filter(|f| {
        let name = function_name(f);
        !REPORTING_FUNCTIONS.contains(&name)
            && !REPORTING_PREFIXES.iter().any(|p| name.starts_with(p))
    })
}

/// "name" of "name.cold+0x1/0x2 [mod]".
fn function_name(function: &str) -> &str {
    let end = function.find(['+', '.', ' ']).unwrap_or(function.len());
    &function[..end]
}

/// kmemleak's debugfs file could not be used.
#[derive(Debug, Error)]
pub enum KmemleakError {
    /// Missing or unopenable: no debugfs, or a kernel without kmemleak.
    #[error("{}: {}: mount debugfs on {DEBUGFS} and use a kernel built with CONFIG_DEBUG_KMEMLEAK", .path.display(), io_error(.error))]
    Open {
        path: PathBuf,
        error: std::io::Error,
    },
    /// kmemleak answers EBUSY once it is off.
    #[error("{}: kmemleak is off: boot with kmemleak=on (it also turns itself off after an internal error; dmesg says why)", .path.display())]
    Off { path: PathBuf },
    #[error("{}: writing \"{command}\": {}", .path.display(), io_error(.error))]
    Command {
        path: PathBuf,
        command: &'static str,
        error: std::io::Error,
    },
    #[error("{}: reading the leak report: {}", .path.display(), io_error(.error))]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Whether this kernel has kmemleak, mounting debugfs for it when nothing
/// is mounted there yet (a bare VM has only what init mounted).
pub fn kmemleak_available() -> bool {
    kmemleak_available_in(Path::new(DEBUGFS))
}

fn kmemleak_available_in(debugfs: &Path) -> bool {
    let file = debugfs.join("kmemleak");
    if file.exists() {
        return true;
    }
    if debugfs.is_dir() && !is_mounted(&debugfs.to_string_lossy(), "debugfs") {
        let _ = nix::mount::mount(
            Some("debugfs"),
            debugfs,
            Some("debugfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        );
    }
    file.exists()
}

/// Runs a kmemleak scan and returns the first leak's summary
/// ("unreferenced object 0x… (size 64): allocated by f+0x1c/0x30 [mod]"),
/// or None when no leak is reported. Clears the report afterwards so the
/// next test starts clean. Objects younger than 5 s are not judged yet.
pub fn kmemleak_scan() -> Result<Option<String>, KmemleakError> {
    kmemleak_scan_at(&Path::new(DEBUGFS).join("kmemleak"))
}

fn kmemleak_scan_at(path: &Path) -> Result<Option<String>, KmemleakError> {
    kmemleak_command(path, "scan")?;
    let report = read_kmemleak_report(path);
    // Cleared even when the read failed: the next test must not inherit
    // this one's leaks.
    kmemleak_command(path, "clear")?;
    Ok(first_leak(&report?))
}

/// Writes one command in one write(2), as kmemleak parses each write whole.
fn kmemleak_command(path: &Path, command: &'static str) -> Result<(), KmemleakError> {
    let failed = |error: std::io::Error| {
        if error.raw_os_error() == Some(libc::EBUSY) {
            KmemleakError::Off { path: path.into() }
        } else {
            KmemleakError::Command {
                path: path.into(),
                command,
                error,
            }
        }
    };
    let mut file =
        OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|error| match error.raw_os_error() {
                Some(libc::EBUSY) => KmemleakError::Off { path: path.into() },
                _ => KmemleakError::Open {
                    path: path.into(),
                    error,
                },
            })?;
    file.write_all(command.as_bytes()).map_err(failed)
}

fn read_kmemleak_report(path: &Path) -> Result<String, KmemleakError> {
    let read_error = |error| KmemleakError::Read {
        path: path.into(),
        error,
    };
    let file = File::open(path).map_err(read_error)?;
    let mut report = String::new();
    // The first leak is all we print; a kernel leaking in a loop can make
    // the report huge.
    file.take(4 << 20)
        .read_to_string(&mut report)
        .map_err(read_error)?;
    Ok(report)
}

/// The first leak of a kmemleak report, with the function that allocated
/// it (its first backtrace frame that is not the allocator) and how many
/// more leaks there are.
fn first_leak(report: &str) -> Option<String> {
    let mut objects = report.split("unreferenced object").skip(1);
    let first = objects.next()?;
    let header = first.lines().next().unwrap_or_default().trim();
    let mut summary = format!("unreferenced object {header}");
    let frames: Vec<String> = first
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("backtrace"))
        .skip(1)
        .filter_map(symbol_token)
        .collect();
    let allocator = |f: &&String| {
        let name = function_name(f);
        ALLOCATOR_PREFIXES.iter().any(|p| name.starts_with(p))
    };
    if let Some(function) = frames
        .iter()
        .find(|f| !allocator(f))
        .or_else(|| frames.first())
    {
        summary.push_str(&format!(" allocated by {function}"));
    }
    let more = objects.count();
    if more > 0 {
        summary.push_str(&format!(" (and {more} more)"));
    }
    Some(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first problem of these messages, logged one record each as
    /// /dev/kmsg gives them.
    fn scan(messages: &[&str], symbols: Kallsyms) -> Option<Problem> {
        let mut scanner = ProblemScanner {
            symbols: Some(Arc::new(symbols)),
            ..ProblemScanner::default()
        };
        for (seq, message) in messages.iter().enumerate() {
            scanner.feed(&format!(
                "4,{},{},-,caller=T231;{message}\n SUBSYSTEM=test\n",
                1000 + seq,
                5_000_000 + seq
            ));
        }
        scanner.problem
    }

    fn problem_of(messages: &[&str]) -> Option<Problem> {
        scan(messages, Kallsyms::default())
    }

    #[test]
    fn a_warning_is_named_by_the_function_and_module_on_its_line() {
        let p = problem_of(&[
            "------------[ cut here ]------------",
            "WARNING: CPU: 0 PID: 231 at drivers/warnmod.c:10 trigger_write+0x1c/0x30 [warnmod]",
            "Modules linked in: warnmod(O)",
            "RIP: 0010:trigger_write+0x1c/0x30 [warnmod]",
        ])
        .expect("a WARNING");
        assert_eq!(p.kind, "WARNING");
        assert_eq!(
            p.line,
            "WARNING: CPU: 0 PID: 231 at drivers/warnmod.c:10 trigger_write+0x1c/0x30 [warnmod]"
        );
        assert_eq!(
            p.function.as_deref(),
            Some("trigger_write+0x1c/0x30 [warnmod]")
        );
        assert_eq!(
            p.to_string(),
            "kernel WARNING in trigger_write+0x1c/0x30 [warnmod]"
        );
    }

    #[test]
    fn a_warning_in_the_6_18_layout_is_named_too() {
        // Since 6.18 the CPU and task follow the function, after a comma.
        let p = problem_of(&[
            "WARNING: drivers/warnmod.c:10 at trigger_write+0x1c/0x30 [warnmod], CPU#0: sh/231",
        ])
        .unwrap();
        assert_eq!(
            p.function.as_deref(),
            Some("trigger_write+0x1c/0x30 [warnmod]")
        );
        let p =
            problem_of(&["WARNING: kernel/x.c:3 at built_in+0x1/0x2, CPU#1: swapper/1"]).unwrap();
        assert_eq!(p.function.as_deref(), Some("built_in+0x1/0x2"));
    }

    #[test]
    fn a_null_dereference_is_a_bug_named_by_the_rip_that_follows() {
        let p = problem_of(&[
            "BUG: kernel NULL pointer dereference, address: 0000000000000000",
            "#PF: supervisor write access in kernel mode",
            "#PF: error_code(0x0002) - not-present page",
            "PGD 0 P4D 0 ",
            "Oops: 0002 [#1] PREEMPT SMP NOPTI",
            "CPU: 0 PID: 231 Comm: sh Tainted: G           O       6.1.0-18-amd64 #1  Debian 6.1.76-1",
            "Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014",
            "RIP: 0010:oops_write+0x5/0x10 [oopsmod]",
            "Code: Unable to access opcode bytes at 0xffffffffc0123456.",
            "Call Trace:",
            " <TASK>",
            " full_proxy_write+0x5c/0x90",
        ])
        .unwrap();
        assert_eq!(p.kind, "BUG");
        assert_eq!(
            p.line,
            "BUG: kernel NULL pointer dereference, address: 0000000000000000"
        );
        assert_eq!(p.function.as_deref(), Some("oops_write+0x5/0x10 [oopsmod]"));
        assert_eq!(p.to_string(), "kernel BUG in oops_write+0x5/0x10 [oopsmod]");
    }

    #[test]
    fn a_raw_rip_is_looked_up_in_kallsyms() {
        let symbols = Kallsyms::parse(
            "ffffffffc0123400 t oops_write\t[oopsmod]\nffffffffc0123480 t oops_read\t[oopsmod]\n",
        );
        let p = scan(
            &[
                "Oops: 0002 [#1] PREEMPT SMP NOPTI",
                "CPU: 0 PID: 231 Comm: sh Tainted: G           O       6.1.0 #1",
                "RIP: 0010:0xffffffffc0123456",
            ],
            symbols,
        )
        .unwrap();
        assert_eq!(p.kind, "Oops");
        assert_eq!(p.function.as_deref(), Some("oops_write+0x56/0x80"));
    }

    #[test]
    fn a_user_space_rip_in_the_trace_is_not_the_culprit() {
        let p = problem_of(&[
            "BUG: sleeping function called from invalid context at mm/slab.h:742",
            "Call Trace:",
            " <TASK>",
            " dump_stack_lvl+0x44/0x5c",
            " __might_resched.cold+0xcc/0xe0",
            " sleepy_write+0x1a/0x40 [sleepmod]",
            " </TASK>",
            "RIP: 0033:0x7f5e2c8f1234",
        ])
        .unwrap();
        assert_eq!(
            p.function.as_deref(),
            Some("sleepy_write+0x1a/0x40 [sleepmod]")
        );
        let p = problem_of(&[
            "BUG: scheduling while atomic: sh/231/0x00000002",
            "RIP: 0033:0x7f5e2c8f1234",
        ])
        .unwrap();
        assert_eq!(p.function, None);
        assert_eq!(
            p.to_string(),
            "kernel BUG: scheduling while atomic: sh/231/0x00000002"
        );
    }

    #[test]
    fn kasan_is_named_by_its_own_line_not_by_its_reporting_frames() {
        let p = problem_of(&[
            "==================================================================",
            "BUG: KASAN: slab-out-of-bounds in kasan_write+0x2a/0x40 [kasanmod]",
            "Write of size 1 at addr ffff888003c0e0c8 by task sh/231",
            "Call Trace:",
            " <TASK>",
            " dump_stack_lvl+0x44/0x5c",
            " print_report+0x184/0x4be",
            " kasan_report+0xb0/0x140",
            " kasan_write+0x2a/0x40 [kasanmod]",
        ])
        .unwrap();
        assert_eq!(p.kind, "KASAN");
        assert_eq!(
            p.function.as_deref(),
            Some("kasan_write+0x2a/0x40 [kasanmod]")
        );
        assert_eq!(
            p.to_string(),
            "kernel KASAN in kasan_write+0x2a/0x40 [kasanmod]"
        );
    }

    #[test]
    fn ubsan_is_named_by_the_first_frame_after_the_sanitizer_s_own() {
        let p = problem_of(&[
            "================================================================================",
            "UBSAN: array-index-out-of-bounds in drivers/ubsanmod.c:12:5",
            "index 10 is out of range for type 'int [4]'",
            "CPU: 0 PID: 231 Comm: sh Tainted: G           O       6.1.0 #1",
            "Call Trace:",
            " <TASK>",
            " dump_stack_lvl+0x44/0x5c",
            " ubsan_epilogue+0x5/0x40",
            " __ubsan_handle_out_of_bounds.cold+0x44/0x49",
            " ? vfs_write+0xcb/0x3e0",
            " ubsan_write+0x4d/0x60 [ubsanmod]",
            " full_proxy_write+0x5c/0x90",
        ])
        .unwrap();
        assert_eq!(p.kind, "UBSAN");
        assert_eq!(
            p.function.as_deref(),
            Some("ubsan_write+0x4d/0x60 [ubsanmod]")
        );
    }

    #[test]
    fn a_refcount_underflow_is_blamed_on_the_caller_of_the_saturation_warning() {
        let p = problem_of(&[
            "------------[ cut here ]------------",
            "refcount_t: underflow; use-after-free.",
            "WARNING: CPU: 0 PID: 231 at lib/refcount.c:28 refcount_warn_saturate+0xba/0x110",
            "Modules linked in: rcmod(O)",
            "RIP: 0010:refcount_warn_saturate+0xba/0x110",
            "Call Trace:",
            " <TASK>",
            " ? __warn+0x7d/0xc0",
            " rc_put_write+0x2e/0x40 [rcmod]",
        ])
        .unwrap();
        assert_eq!(p.kind, "refcount_t");
        assert_eq!(p.line, "refcount_t: underflow; use-after-free.");
        assert_eq!(
            p.function.as_deref(),
            Some("rc_put_write+0x2e/0x40 [rcmod]")
        );
    }

    #[test]
    fn an_rcu_stall_is_named_by_the_interrupted_rip() {
        let p = problem_of(&[
            "rcu: INFO: rcu_preempt self-detected stall on CPU",
            "rcu: \t0-....: (21000 ticks this GP) idle=c1c/1/0x4000000000000000 softirq=1234/1234 fqs=5250",
            "\t(t=21003 jiffies g=2113 q=1234 ncpus=2)",
            "NMI backtrace for cpu 0",
            "CPU: 0 PID: 231 Comm: sh Tainted: G           O       6.1.0 #1",
            "Call Trace:",
            " <IRQ>",
            " dump_stack_lvl+0x44/0x5c",
            " nmi_cpu_backtrace.cold+0x30/0x70",
            " rcu_dump_cpu_stacks+0xe6/0x130",
            " rcu_sched_clock_irq.cold+0x4f/0x2b0",
            " </IRQ>",
            " <TASK>",
            "RIP: 0010:stall_write+0x10/0x20 [stallmod]",
        ])
        .unwrap();
        assert_eq!(p.kind, "RCU stall");
        assert_eq!(
            p.function.as_deref(),
            Some("stall_write+0x10/0x20 [stallmod]")
        );
        assert_eq!(
            problem_of(&["rcu: INFO: rcu_sched detected stalls on CPUs/tasks:"])
                .unwrap()
                .kind,
            "RCU stall"
        );
    }

    #[test]
    fn a_general_protection_fault_wins_over_its_oops_prefix() {
        for line in [
            "general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] PREEMPT SMP NOPTI",
            "Oops: general protection fault, probably for non-canonical address 0xdffffc0000000000: 0000 [#1] PREEMPT SMP KASAN NOPTI",
        ] {
            let p = problem_of(&[
                line,
                "KASAN: null-ptr-deref in range [0x0000000000000000-0x0000000000000007]",
                "CPU: 1 PID: 231 Comm: sh Not tainted 6.12.0 #1",
                "RIP: 0010:gpf_write+0x8/0x20 [gpfmod]",
            ])
            .unwrap();
            assert_eq!(p.kind, "general protection fault");
            assert_eq!(p.line, line);
            assert_eq!(p.function.as_deref(), Some("gpf_write+0x8/0x20 [gpfmod]"));
        }
    }

    #[test]
    fn arm64_oopses_are_named_by_pc() {
        let p = problem_of(&[
            "Unable to handle kernel NULL pointer dereference at virtual address 0000000000000000",
            "Internal error: Oops: 0000000096000045 [#1] PREEMPT SMP",
            "pc : oops_write+0x10/0x20 [oopsmod]",
            "lr : full_proxy_write+0x64/0xb0",
        ])
        .unwrap();
        assert_eq!(p.kind, "Oops");
        assert_eq!(
            p.function.as_deref(),
            Some("oops_write+0x10/0x20 [oopsmod]")
        );
    }

    #[test]
    fn each_reported_kind_is_recognised() {
        let cases = [
            ("kernel BUG at mm/slub.c:435!", "BUG"),
            (
                "BUG: KFENCE: out-of-bounds read in kfence_write+0x1/0x2",
                "BUG",
            ),
            (
                "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [sh:231]",
                "BUG",
            ),
            (
                "Kernel panic - not syncing: Fatal exception",
                "Kernel panic",
            ),
            (
                "kmemleak: 1 new suspected memory leaks (see /sys/kernel/debug/kmemleak)",
                "kmemleak",
            ),
            ("refcount_t: saturated; leaking memory.", "refcount_t"),
            (
                "WARNING: possible circular locking dependency detected",
                "WARNING",
            ),
        ];
        for (line, kind) in cases {
            assert_eq!(problem_kind(line), Some(kind), "{line}");
        }
    }

    #[test]
    fn benign_lines_are_not_problems() {
        let benign = [
            "DEBUG: something harmless",
            "usb 1-1: DEBUG: descriptor read/64, error -71",
            "eth0: link up",
            "e1000: eth0 NIC Link is Up 1000 Mbps Full Duplex, Flow Control: RX",
            "Spectre V2 : WARNING: Unprivileged eBPF is enabled with eIBRS on, data leaks possible via Spectre v2 BHB attacks!",
            "RETBleed: WARNING: Spectre v2 mitigation leaves CPU vulnerable to RETBleed attacks, data leaks possible!",
            "MDS: Vulnerable: Clear CPU buffers attempted, no microcode",
            "x86/fpu: Supporting XSAVE feature 0x001: 'x87 floating point registers'",
            "ACPI Warning: SystemIO range 0x0000000000000600-0x000000000000063F conflicts with OpRegion",
            "[Firmware Bug]: TSC_DEADLINE disabled due to Errata; please update microcode",
            "traps: prog[42] general protection fault ip:401136 sp:7ffd8c2e1f20 error:0 in prog[401000+1000]",
            "prog[42]: segfault at 0 ip 0000000000401136 sp 00007ffd8c2e1f20 error 6 in prog[401000+1000]",
            "kmemleak: Kernel memory leak detector initialized (mem pool available: 15679)",
            "kasan: KernelAddressSanitizer initialized (generic)",
            "rcu: Preemptible hierarchical RCU implementation.",
            "Oopsie: not a word we report",
            "17de0r: entered promiscuous mode",
        ];
        for line in benign {
            assert_eq!(problem_kind(line), None, "{line}");
        }
        assert_eq!(problem_of(&benign), None);
    }

    #[test]
    fn only_the_first_problem_counts_and_the_context_window_closes() {
        let mut messages = vec!["Oops: 0000 [#1] SMP"];
        messages.extend(std::iter::repeat_n("filler", CONTEXT_RECORDS));
        messages.push("RIP: 0010:late+0x1/0x2");
        messages.push("WARNING: CPU: 0 PID: 1 at x.c:1 second+0x1/0x2");
        let p = problem_of(&messages).unwrap();
        assert_eq!(p.kind, "Oops");
        assert_eq!(p.function, None);
        assert_eq!(p.to_string(), "kernel Oops: 0000 [#1] SMP");
    }

    #[test]
    fn dictionary_lines_and_malformed_records_are_ignored() {
        let mut scanner = ProblemScanner::default();
        scanner.feed("6,1,2,-;eth0: link up\n WARNING:=1\n SUBSYSTEM=net\n");
        scanner.feed("no header WARNING: at all");
        assert_eq!(scanner.problem, None);
    }

    #[test]
    fn the_first_leak_is_summarised_with_its_allocating_function() {
        let report = "\
unreferenced object 0xffff888003c5e340 (size 64):
  comm \"insmod\", pid 231, jiffies 4294893456 (age 12.340s)
  hex dump (first 32 bytes):
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................
  backtrace (crc 1f9ec58a):
    [<ffffffff81a32f2b>] kmemleak_alloc+0x4b/0x80
    [<ffffffff8128c6e4>] __kmalloc_cache_noprof+0x1c4/0x2f0
    [<ffffffffc0123456>] leak_init+0x1c/0x30 [leakmod]
    [<ffffffff81002a4b>] do_one_initcall+0x5b/0x320
unreferenced object 0xffff888003c5e380 (size 64):
  comm \"insmod\", pid 231, jiffies 4294893456 (age 12.340s)
  backtrace (crc 1f9ec58a):
    leak_init+0x1c/0x30 [leakmod]
";
        assert_eq!(
            first_leak(report).as_deref(),
            Some(
                "unreferenced object 0xffff888003c5e340 (size 64): \
                 allocated by leak_init+0x1c/0x30 [leakmod] (and 1 more)"
            )
        );
        // 6.6+ prints the frames without addresses.
        let newer = "unreferenced object (percpu) 0xffff8880 (size 8):\n  backtrace (crc 0):\n    kmalloc_trace+0x26/0x90\n    probe+0x1/0x2 [m]\n";
        assert_eq!(
            first_leak(newer).as_deref(),
            Some(
                "unreferenced object (percpu) 0xffff8880 (size 8): allocated by probe+0x1/0x2 [m]"
            )
        );
        assert_eq!(first_leak(""), None);
    }

    #[test]
    fn a_kernel_without_kmemleak_is_told_apart() {
        assert!(!kmemleak_available_in(Path::new("/nonexistent/debugfs")));
        let dir = std::env::temp_dir().join(format!("myinit-health-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("kmemleak"), "").unwrap();
        assert!(kmemleak_available_in(&dir));
        std::fs::remove_dir_all(&dir).unwrap();

        let error = kmemleak_scan_at(Path::new("/nonexistent/debugfs/kmemleak")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "/nonexistent/debugfs/kmemleak: No such file or directory: mount debugfs on \
             /sys/kernel/debug and use a kernel built with CONFIG_DEBUG_KMEMLEAK"
        );
    }

    #[test]
    fn a_watch_sees_what_is_logged_after_it_started_and_nothing_before() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: writing to /dev/kmsg needs root");
            return;
        }
        let ours = Some("myinit_health_test+0x0/0x10".to_string());
        // Other tests inject WARNINGs too (expect's self test); a round one
        // of theirs lands in is run again.
        for _ in 0..5 {
            let mut watch = HealthWatch::start().expect("/dev/kmsg");
            // As root, a write to /dev/kmsg is logged as a record of its own.
            let mut kmsg = OpenOptions::new().write(true).open("/dev/kmsg").unwrap();
            kmsg.write_all(b"<4>WARNING: CPU: 0 PID: 1 at test.c:1 myinit_health_test+0x0/0x10\n")
                .unwrap();
            let problem = watch.poll().expect("the injected WARNING");
            if problem.function != ours {
                continue;
            }
            assert_eq!(problem.kind, "WARNING");

            let mut later = HealthWatch::start().unwrap();
            assert_ne!(later.poll().and_then(|p| p.function), ours);
            // The first problem stays, however much is logged after it.
            assert_eq!(watch.poll(), Some(problem));
            return;
        }
        panic!("five rounds in a row saw another test's WARNING first");
    }
}
