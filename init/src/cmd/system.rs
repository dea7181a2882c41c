//! System commands: mount, umount, insmod, dmesg, ps, kconfig.

use clap::{CommandFactory, Parser};
use std::collections::HashMap;
use std::io::Write;

use anyhow::{anyhow, bail};
use nix::errno::Errno;
use nix::mount::{mount as mount_fs, umount2, MntFlags, MsFlags};

use super::{usage, CommandSpec};
#[cfg(test)]
use crate::kernel::kconfig::parse_kconfig;
use crate::kernel::kconfig::{default_kconfig_path, read_kconfig};
use crate::kernel::kmsg::read_kmsg;
use crate::kernel::mounts::{is_mounted, read_mounts};
use crate::kernel::procfs::parse_stat;
use crate::kernel::requirements::{Area, KernelOption, Requirements};
use crate::shell::Ctx;
use crate::util::io_error;

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "mount",
        usage: "",
        summary: "list mounts, or mount proc, the 9p host share or any file system",
        help: concat!(
            "Without arguments: the mount table, as SRC on TGT type T (OPTS).\n",
            "mount proc     proc on /proc (nothing to do if it is mounted already)\n",
            "mount 9p       the host share: tag host-code on /mnt/host (created),\n",
            "               trans=virtio,version=9p2000.L\n",
            "Example: mount -t tmpfs tmpfs /mnt/tmp -o size=16m,noexec",
        ),
        run: mount,
        cli: Some(MountArgs::command),
    },
    CommandSpec {
        name: "umount",
        usage: "",
        summary: "unmount a file system",
        help: "",
        run: umount,
        cli: Some(UmountArgs::command),
    },
    CommandSpec {
        name: "insmod",
        usage: "insmod PATH [PARAM=VALUE...]",
        summary: "load a kernel module (tries PATH, PATH.ko, PATH.ko.zst)",
        help: "A module that is loaded already or built into the kernel is reported\n\
in one line; the next command runs as usual. Compressed modules (.zst)\n\
need a kernel that decompresses them itself.",
        run: insmod,
        cli: None,
    },
    CommandSpec {
        name: "dmesg",
        usage: "dmesg [LINES]",
        summary: "print the kernel log, or its newest LINES lines",
        help: "Reads /dev/kmsg without waiting for new messages.\nFormat: [   12.345678] message",
        run: dmesg,
        cli: None,
    },
    CommandSpec {
        name: "ps",
        usage: "ps",
        summary: "list processes: PID, PPID, STATE, RSS and VSZ (KiB), COMMAND",
        help: "COMMAND is the command line, or [name] for kernel threads.\n\
STATE is the kernel's letter: R running, S sleeping, D disk wait,\n\
Z zombie, T stopped, I idle. The last line counts the orphaned\n\
processes myinit has reaped.",
        run: ps,
        cli: None,
    },
    CommandSpec {
        name: "kconfig",
        usage: "kconfig tracing|bpf|net|all [CONFIG_FILE]",
        summary: "check the kernel options myinit's commands need",
        help: "Reads /proc/config.gz, else /boot/config-RELEASE or /boot/config (or\nCONFIG_FILE; gzip or plain text) and shows\n\
each option of the group as y, m (module) or missing, with the\n\
commands that need a missing one. Status 1 when a needed option is\n\
missing. `kconfig bpf` also loads and attaches the embedded eBPF drop\n\
tracer and makes a drop on loopback, to prove eBPF works here.\n\
The file is streamed; one with a line over 4096 bytes or more than\n\
200000 lines is no kernel config and is refused (/dev/zero ends at once).",
        run: kconfig,
        cli: None,
    },
];

// ---------------------------------------------------------------- mount

/// Splits `-o` options into mount flags and the file system's own data.
pub fn parse_mount_options(options: &str) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for opt in options.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "defaults" => {}
            "ro" => flags.insert(MsFlags::MS_RDONLY),
            "rw" => flags.remove(MsFlags::MS_RDONLY),
            "nosuid" => flags.insert(MsFlags::MS_NOSUID),
            "suid" => flags.remove(MsFlags::MS_NOSUID),
            "nodev" => flags.insert(MsFlags::MS_NODEV),
            "dev" => flags.remove(MsFlags::MS_NODEV),
            "noexec" => flags.insert(MsFlags::MS_NOEXEC),
            "exec" => flags.remove(MsFlags::MS_NOEXEC),
            "sync" => flags.insert(MsFlags::MS_SYNCHRONOUS),
            "async" => flags.remove(MsFlags::MS_SYNCHRONOUS),
            "noatime" => flags.insert(MsFlags::MS_NOATIME),
            "nodiratime" => flags.insert(MsFlags::MS_NODIRATIME),
            "relatime" => flags.insert(MsFlags::MS_RELATIME),
            "strictatime" => flags.insert(MsFlags::MS_STRICTATIME),
            "remount" => flags.insert(MsFlags::MS_REMOUNT),
            "bind" => flags.insert(MsFlags::MS_BIND),
            "rbind" => flags.insert(MsFlags::MS_BIND | MsFlags::MS_REC),
            "private" => flags.insert(MsFlags::MS_PRIVATE),
            "rprivate" => flags.insert(MsFlags::MS_PRIVATE | MsFlags::MS_REC),
            "shared" => flags.insert(MsFlags::MS_SHARED),
            "rshared" => flags.insert(MsFlags::MS_SHARED | MsFlags::MS_REC),
            "slave" => flags.insert(MsFlags::MS_SLAVE),
            "rslave" => flags.insert(MsFlags::MS_SLAVE | MsFlags::MS_REC),
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

/// A mount error with a hint for the usual causes.
fn mount_error(what: &str, e: Errno) -> anyhow::Error {
    let hint = match e {
        Errno::ENODEV => " (file system type not in this kernel: insmod its module?)",
        Errno::ENOENT => " (missing mount point or source)",
        Errno::EBUSY => " (already mounted or in use)",
        _ => "",
    };
    anyhow!("{what}: {}{hint}", e.desc())
}

fn mount(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    if args.is_empty() {
        let mut text = String::new();
        for m in read_mounts()? {
            text.push_str(&format!(
                "{} on {} type {} ({})\n",
                m.source, m.target, m.fstype, m.options
            ));
        }
        ctx.out.write_all(text.as_bytes())?;
        return Ok(0);
    }
    let MountArgs {
        fstype,
        mut options,
        bind,
        positional,
    } = super::parse_args("mount", args)?;
    if bind {
        options.push("bind".into());
    }
    let options = options.join(",");
    let shortcut = fstype.is_none() && options.is_empty();
    match positional.as_slice() {
        [word] if shortcut && word == "proc" => mount_proc(),
        [word, rest @ ..] if shortcut && word == "9p" && rest.len() <= 2 => {
            let tag = rest.first().map_or("host-code", String::as_str);
            let dir = rest.get(1).map_or("/mnt/host", String::as_str);
            mount_9p(tag, dir)
        }
        [source, target] => mount_generic(Some(source), target, fstype.as_deref(), &options),
        // `mount -o remount,ro /` names only the target.
        [target] if options.split(',').any(|o| o == "remount") => {
            mount_generic(None, target, fstype.as_deref(), &options)
        }
        _ => Err(usage("expected proc, 9p, or SRC and TGT")),
    }
}

fn mount_proc() -> anyhow::Result<i32> {
    if is_mounted("/proc", "proc") {
        return Ok(0);
    }
    std::fs::create_dir_all("/proc").map_err(|e| anyhow!("/proc: {}", io_error(&e)))?;
    mount_fs(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| mount_error("proc on /proc", e))?;
    Ok(0)
}

fn mount_9p(tag: &str, dir: &str) -> anyhow::Result<i32> {
    if is_mounted(dir, "9p") {
        return Ok(0);
    }
    std::fs::create_dir_all(dir).map_err(|e| anyhow!("{dir}: {}", io_error(&e)))?;
    mount_fs(
        Some(tag),
        dir,
        Some("9p"),
        MsFlags::empty(),
        Some("trans=virtio,version=9p2000.L"),
    )
    .map_err(|e| match e {
        Errno::ENODEV => anyhow!("9p {tag} on {dir}: 9p not in this kernel (insmod 9p.ko first?)"),
        Errno::ENOENT => anyhow!("9p {tag} on {dir}: no virtio-9p device with tag {tag}"),
        e => mount_error(&format!("9p {tag} on {dir}"), e),
    })?;
    Ok(0)
}

fn mount_generic(
    source: Option<&String>,
    target: &str,
    fstype: Option<&str>,
    options: &str,
) -> anyhow::Result<i32> {
    let (flags, data) = parse_mount_options(options);
    let needs_no_type = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_PRIVATE
        | MsFlags::MS_SHARED
        | MsFlags::MS_SLAVE;
    if fstype.is_none() && !flags.intersects(needs_no_type) {
        return Err(usage("missing -t TYPE"));
    }
    let data = (!data.is_empty()).then_some(data.as_str());
    // As the original: a missing mount point is made (one level; a
    // remount or bind needs an existing one anyway).
    if !flags.intersects(needs_no_type) && !std::path::Path::new(target).exists() {
        std::fs::create_dir(target).map_err(|e| anyhow!("{target}: {}", io_error(&e)))?;
    }
    mount_fs(source.map(String::as_str), target, fstype, flags, data).map_err(|e| {
        let what = format!("{} on {target}", source.map_or("", String::as_str));
        mount_error(what.trim_start(), e)
    })?;
    Ok(0)
}

#[derive(Parser, Debug)]
#[command(
    name = "mount",
    disable_help_flag = true,
    override_usage = "mount\nmount proc\nmount 9p [TAG [DIR]]\nmount -t TYPE SRC TGT [-o OPTS]"
)]
struct MountArgs {
    /// the file system type (tmpfs, ext4, 9p, …)
    #[arg(short = 't', value_name = "TYPE")]
    fstype: Option<String>,
    /// ro, rw, nosuid, nodev, noexec, sync, noatime, relatime, remount,
    /// bind, rbind, private, shared, slave become mount flags; other
    /// options go to the file system (size=16m); may be given several times
    #[arg(short = 'o', value_name = "OPTS")]
    options: Vec<String>,
    /// the same as -o bind
    #[arg(long)]
    bind: bool,
    /// proc, 9p [TAG [DIR]], or SRC TGT (just TGT with -o remount)
    #[arg(value_name = "SRC TGT")]
    positional: Vec<String>,
}

#[derive(Parser, Debug)]
#[command(
    name = "umount",
    disable_help_flag = true,
    override_usage = "umount [-l] TGT"
)]
struct UmountArgs {
    /// lazy: detach now, clean up when it is no longer busy
    #[arg(short = 'l')]
    lazy: bool,
    /// the mount point
    #[arg(value_name = "TGT")]
    target: Option<String>,
}

fn umount(_ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let UmountArgs { lazy, target } = super::parse_args("umount", args)?;
    let target = target.ok_or_else(|| usage("expected TGT"))?;
    let flags = if lazy {
        MntFlags::MNT_DETACH
    } else {
        MntFlags::empty()
    };
    umount2(target.as_str(), flags).map_err(|e| match e {
        Errno::EINVAL => anyhow!("{target}: not mounted"),
        Errno::EBUSY => anyhow!("{target}: busy (try umount -l)"),
        e => anyhow!("{target}: {}", e.desc()),
    })?;
    Ok(0)
}

// ---------------------------------------------------------------- insmod

fn insmod(_ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let Some((path, params)) = args.split_first() else {
        return Err(usage("expected PATH"));
    };
    // The original also tried PATH.ko and PATH.ko.zst.
    let candidates = [path.clone(), format!("{path}.ko"), format!("{path}.ko.zst")];
    let Some(found) = candidates.iter().find(|c| std::path::Path::new(c).exists()) else {
        bail!("{path}: no such file");
    };
    match crate::kmod::load(std::path::Path::new(found), &params.join(" ")) {
        Ok(()) => Ok(0),
        Err(crate::kmod::LoadError::BadParams) => {
            Err(usage("parameters must not contain NUL bytes"))
        }
        Err(crate::kmod::LoadError::AlreadyLoaded(_)) => {
            bail!("{path}: already loaded or built in")
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------- dmesg

fn dmesg(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let keep = match args {
        [] => usize::MAX,
        [n] => n
            .parse::<usize>()
            .map_err(|_| usage(format!("not a number of lines: {n}")))?,
        _ => return Err(usage("expected at most one LINES")),
    };
    let lines = read_kmsg(keep)?;
    let mut text = String::new();
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    ctx.out.write_all(text.as_bytes())?;
    Ok(0)
}

// ---------------------------------------------------------------- ps

fn ps(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    if !args.is_empty() {
        return Err(usage("takes no arguments"));
    }
    let dir = std::fs::read_dir("/proc")
        .map_err(|e| anyhow!("/proc: {} (mount proc first)", io_error(&e)))?;
    let mut pids: Vec<i32> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let page_kib = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4, |bytes| (bytes / 1024) as u64);
    let mut text = format!(
        "{:>7} {:>7} {:<5} {:>8} {:>9} COMMAND\n",
        "PID", "PPID", "STATE", "RSS", "VSZ"
    );
    for pid in pids {
        // A process may exit while we look: skip it.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(stat) = parse_stat(&stat) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let command = if cmdline.is_empty() {
            format!("[{}]", stat.comm)
        } else {
            let joined: Vec<String> = cmdline
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            joined.join(" ")
        };
        text.push_str(&format!(
            "{:>7} {:>7} {:<5} {:>8} {:>9} {command}\n",
            stat.pid,
            stat.ppid,
            stat.state,
            stat.rss_pages * page_kib,
            stat.vsize_bytes / 1024,
        ));
    }
    text.push_str(&format!(
        "orphans reaped by myinit: {}\n",
        ctx.shell.state.reaper.orphans_reaped()
    ));
    ctx.out.write_all(text.as_bytes())?;
    Ok(0)
}

// ---------------------------------------------------------------- kconfig

/// Every capability's requirements, in the order `kconfig` shows them.
const REQUIREMENTS: &[&Requirements] = &[
    &crate::droptrace::REQUIREMENTS,
    &crate::capture::REQUIREMENTS,
    &crate::net::REQUIREMENTS,
    &crate::fakehost::REQUIREMENTS,
];

/// The options of `area`, each once, in the order the capabilities list them.
fn options_of(area: Area) -> Vec<&'static KernelOption> {
    let mut options: Vec<&KernelOption> = Vec::new();
    for o in REQUIREMENTS.iter().flat_map(|r| r.options) {
        if o.area == area && !options.iter().any(|seen| seen.name == o.name) {
            options.push(o);
        }
    }
    options
}

/// The report of one group; the bool says whether a needed option is missing.
fn kconfig_report(
    group: &str,
    options: &[&KernelOption],
    config: &HashMap<String, String>,
) -> (String, bool) {
    let mut text = format!("{group}:\n");
    let mut missing = false;
    for o in options {
        let state = match config.get(o.name).map(String::as_str) {
            Some("y") => "y".to_string(),
            Some("m") => "m (module: insmod it first)".to_string(),
            Some(other) => other.to_string(),
            None if o.optional => format!("missing (optional: {})", o.needed_by),
            None => {
                missing = true;
                format!("missing: needed by {}", o.needed_by)
            }
        };
        text.push_str(&format!("  {:<24} {state}\n", o.name));
    }
    (text, missing)
}

fn kconfig(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let default_path;
    let (group, path) = match args {
        [g] => {
            default_path = default_kconfig_path();
            (g.as_str(), default_path.as_str())
        }
        [g, p] => (g.as_str(), p.as_str()),
        _ => return Err(usage("expected a group: tracing, bpf, net or all")),
    };
    let areas: Vec<Area> = match group {
        "all" => Area::ALL.to_vec(),
        g => match Area::ALL.into_iter().find(|a| a.name() == g) {
            Some(found) => vec![found],
            None => return Err(usage(format!("unknown group {g}"))),
        },
    };
    let wanted = REQUIREMENTS
        .iter()
        .flat_map(|r| r.options.iter().map(|o| o.name))
        .collect();
    let config = read_kconfig(path, &wanted);
    let mut status = 0;
    if let Ok(config) = &config {
        for area in areas {
            let (text, missing) = kconfig_report(area.name(), &options_of(area), config);
            ctx.out.write_all(text.as_bytes())?;
            if missing {
                status = 1;
            }
        }
    }
    if group == "tracing" {
        // Which backends this kernel runs, and why not the others.
        let _runtime = ctx.state().rt.enter();
        for backends in REQUIREMENTS.iter().filter_map(|r| r.backends) {
            writeln!(ctx.out, "{}", backends())?;
        }
    }
    if group == "bpf" {
        // The real proof: the configuration can say y and loading still fail.
        for r in REQUIREMENTS {
            let Some(self_test) = r.self_test else {
                continue;
            };
            match ctx.block_on(self_test())? {
                Ok(line) => writeln!(ctx.out, "{line}")?,
                Err(e) => {
                    config?;
                    bail!("{} eBPF self-test failed: {e:#}", r.capability);
                }
            }
        }
    }
    config?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_split_into_flags_and_data() {
        let (flags, data) = parse_mount_options("ro,nosuid,size=16m,nodev,noexec,mode=755");
        assert_eq!(
            flags,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
        );
        assert_eq!(data, "size=16m,mode=755");
        let (flags, data) = parse_mount_options("remount,bind");
        assert_eq!(flags, MsFlags::MS_REMOUNT | MsFlags::MS_BIND);
        assert_eq!(data, "");
        assert_eq!(parse_mount_options("ro,rw").0, MsFlags::empty());
    }

    #[test]
    fn kconfig_reports_y_m_and_missing_with_the_command() {
        let config = parse_kconfig(
            "CONFIG_TUN=m\n# CONFIG_VETH is not set\nCONFIG_PACKET=y\nCONFIG_IPV6=n\n",
        );
        let net = options_of(Area::Net);
        let (text, missing) = kconfig_report("net", &net, &config);
        assert!(missing);
        assert!(text.contains("CONFIG_TUN"));
        assert!(text
            .lines()
            .any(|l| l.contains("CONFIG_TUN") && l.contains("m (module")));
        assert!(text
            .lines()
            .any(|l| l.contains("CONFIG_PACKET") && l.trim_end().ends_with(" y")));
        assert!(text
            .lines()
            .any(|l| l.contains("CONFIG_VETH") && l.contains("missing")));
        assert!(text
            .lines()
            .any(|l| l.contains("CONFIG_9P_FS") && l.contains("mount 9p")));
        assert!(text
            .lines()
            .any(|l| l.contains("CONFIG_IPV6") && l.contains("missing")));
    }

    #[test]
    fn a_missing_optional_option_is_not_a_failure() {
        let config = parse_kconfig(
            "CONFIG_BPF=y\nCONFIG_BPF_SYSCALL=y\nCONFIG_BPF_EVENTS=y\nCONFIG_DEBUG_INFO_BTF=y\nCONFIG_NET_CLS_BPF=y\nCONFIG_NET_SCH_INGRESS=y\n",
        );
        let bpf = options_of(Area::Bpf);
        let (text, missing) = kconfig_report("bpf", &bpf, &config);
        assert!(!missing, "{text}");
        assert!(text.contains("CONFIG_BPF_JIT"));
    }
}
