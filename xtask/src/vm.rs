//! `cargo xtask vm`: boots the kernel with the initrd under qemu, the serial
//! console on this terminal, a 9p share tagged `host-code` (mounted at
//! `/mnt/host` by stage 1) and a virtio NIC with user networking.
//!
//! Exit status: the guest's `poweroff STATUS` comes back through qemu's
//! `isa-debug-exit` device (myinit writes STATUS when the kernel command
//! line has `myinit.debug_exit`; qemu then exits with `(STATUS << 1) | 1`).
//! Only 0-123 map back exactly (qemu's exit code has 8 bits). Besides:
//! 124 = `--timeout` expired (the guest was killed); 125 = the guest stopped
//! without reporting a status (kernel panic, `reboot`, a triple fault) or
//! qemu itself failed.

use std::collections::VecDeque;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};

use crate::initrd;
use crate::kernel::{Kernel, KernelArgs};

pub const STATUS_TIMEOUT: i32 = 124;
pub const STATUS_NO_STATUS: i32 = 125;

/// The I/O port of the debug-exit device; init/src/vmexit.rs writes to it.
const DEBUG_EXIT_PORT: &str = "0xf4";

/// The machine every boot uses unless told (see `bench boot`'s table of
/// machine and CPU models).
pub const DEFAULT_MACHINE: &str = "pc";

/// Console lines kept for the failure report.
const KEPT_LINES: usize = 25;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvmMode {
    /// KVM if a short probe boots with it, else TCG.
    #[default]
    Auto,
    On,
    Off,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsoleMode {
    /// ttyS0 only.
    #[default]
    Serial,
    /// A virtconsole (hvc0) and ttyS0, muxed on one stdio.
    Hvc0,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    /// Two NICs back to back (as `vng --net loop`).
    Loop,
    /// No user-network NIC.
    None,
}

/// The MACs of `--net loop`'s two NICs, in PCI (and so eth) order.
pub const LOOP_MACS: [&str; 2] = ["52:54:00:00:10:01", "52:54:00:00:10:02"];

/// One `--nic`: a datagram wire (local and remote socket paths) or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSpec {
    pub wire: Option<(PathBuf, PathBuf)>,
    pub mac: Option<String>,
}

impl NicSpec {
    pub fn parse(text: &str) -> anyhow::Result<NicSpec> {
        let (head, mac) = match text.split_once(",mac=") {
            Some((head, mac)) => (head, Some(mac.to_string())),
            None => (text, None),
        };
        let wire = match head {
            "none" => None,
            _ => {
                let spec = head
                    .strip_prefix("unix:")
                    .with_context(|| format!("--nic {text}: expected unix:LOCAL=REMOTE or none"))?;
                let (local, remote) = spec
                    .split_once('=')
                    .with_context(|| format!("--nic {text}: expected unix:LOCAL=REMOTE"))?;
                Some((PathBuf::from(local), PathBuf::from(remote)))
            }
        };
        Ok(NicSpec { wire, mac })
    }
}

/// One `--share`: `[TAG=]DIR[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareSpec {
    pub tag: String,
    pub dir: PathBuf,
    pub readonly: bool,
}

/// The tag of the share stage 1 mounts at /mnt/host.
pub const HOST_CODE: &str = "host-code";

impl ShareSpec {
    /// Parses `--share` words; the first without a TAG is host-code. Each
    /// directory must exist, each tag be unique.
    pub fn parse_all(words: &[String]) -> anyhow::Result<Vec<ShareSpec>> {
        let mut shares: Vec<ShareSpec> = Vec::new();
        for word in words {
            let (tag, rest) = match word.split_once('=') {
                Some((tag, rest)) if !tag.contains('/') => (Some(tag.to_string()), rest),
                _ => (None, word.as_str()),
            };
            let (dir, readonly) = match rest.strip_suffix(":ro") {
                Some(dir) => (dir, true),
                None => (rest.strip_suffix(":rw").unwrap_or(rest), false),
            };
            let tag = match tag {
                Some(t) => t,
                None if shares.iter().any(|s| s.tag == HOST_CODE) => bail!(
                    "--share {word}: a share without a TAG is host-code, and host-code is given already; name it TAG=DIR"
                ),
                None => HOST_CODE.to_string(),
            };
            ensure!(
                !tag.is_empty()
                    && tag.len() <= 31
                    && tag
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                "--share {word}: a TAG is 1-31 letters, digits, '-', '_' or '.'"
            );
            ensure!(
                !shares.iter().any(|s| s.tag == tag),
                "--share {word}: the tag {tag} is given twice"
            );
            let path = Path::new(dir);
            let dir = path
                .canonicalize()
                .map_err(|e| anyhow::anyhow!("--share {word}: {}: {e}", path.display()))?;
            ensure!(
                dir.is_dir(),
                "--share {word}: {} is not a directory",
                dir.display()
            );
            shares.push(ShareSpec { tag, dir, readonly });
        }
        Ok(shares)
    }
}

#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "Exit status: the guest's `poweroff STATUS` (0-123 exact), 124 when \
--timeout killed the guest, 125 when it stopped without a status (panic, reboot) or qemu failed.\n\
Console: the serial line on this terminal; Ctrl-A x quits qemu."
)]
pub struct VmArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Boot this initrd instead of building one (`cargo xtask initrd`).
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// A 9p share, `[TAG=]DIR[:ro]`, repeatable. The first without a TAG
    /// is `host-code` (/mnt/host in the guest, mounted by stage 1, where
    /// the scripts are found); mount the others in a script with `mount -t
    /// 9p TAG DIR -o trans=virtio,version=9p2000.L`. `:ro`: read-only.
    /// Without a host-code share: a fresh temporary directory, removed
    /// afterwards.
    #[arg(long, value_name = "[TAG=]DIR[:ro]")]
    pub share: Vec<String>,
    /// `hvc0`: a virtio console beside the serial port, both on this
    /// terminal (`console=hvc0 console=ttyS0`), as the nat46 harness boots.
    #[arg(long, value_enum, default_value_t = ConsoleMode::Serial)]
    pub console: ConsoleMode,
    /// No debug-exit device, as the nat46 harness boots: a power off then
    /// reads as status 0 and a panic as 125 (from the console).
    #[arg(long)]
    pub no_debug_exit: bool,
    /// The stage-3 script (default: the initrd's demo, /autoexec.run).
    #[arg(long, value_name = "FILE")]
    pub autoexec: Option<PathBuf>,
    /// The stage-2 script (default: the share's startup.run, else the initrd's).
    #[arg(long, value_name = "FILE")]
    pub startup: Option<PathBuf>,
    /// More kernel command line, e.g. "myinit.countdown=1 myinit.shell".
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub append: Option<String>,
    /// Kill the guest after this many seconds (0: never).
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub timeout: u64,
    #[arg(long, value_enum, default_value_t = KvmMode::Auto)]
    pub kvm: KvmMode,
    /// Guest memory.
    #[arg(long, value_name = "MB", default_value_t = 512)]
    pub mem: u32,
    /// `loop`: two more virtio-net NICs (eth1, eth2; MACs 52:54:00:00:10:01
    /// and :02) wired to each other through a qemu hub, inside this qemu.
    /// `none`: no user-network NIC (eth0), so nothing leaves the host.
    #[arg(long, value_enum)]
    pub net: Option<NetMode>,
    /// One more virtio-net NIC (repeatable, in order after the others):
    /// `unix:LOCAL=REMOTE[,mac=MAC]` sends its frames to the datagram socket
    /// REMOTE and receives on LOCAL (qemu's `-netdev dgram`: `cargo xtask
    /// lab` wires nodes so), `none[,mac=MAC]` is a NIC on no wire.
    #[arg(long, value_name = "SPEC")]
    pub nic: Vec<String>,
    /// qemu's machine type (`-machine`), e.g. pc or q35.
    #[arg(long, value_name = "TYPE", default_value = DEFAULT_MACHINE)]
    pub machine: String,
    /// qemu's CPU model (`-cpu`), e.g. max; default: qemu's own.
    #[arg(long, value_name = "MODEL")]
    pub cpu: Option<String>,
}

/// `cargo xtask vm`: returns the exit status to leave with.
pub fn run(args: &VmArgs) -> anyhow::Result<i32> {
    let kernel = args.kernel.resolve()?;
    let initrd = match &args.initrd {
        Some(path) => {
            ensure!(path.is_file(), "--initrd {}: no such file", path.display());
            path.clone()
        }
        None => {
            let path = initrd::default_output();
            initrd::build(&kernel, &[], None, &path)?;
            path
        }
    };
    let shares = ShareSpec::parse_all(&args.share)?;
    let share = Share::new(args, &shares)?;
    let host_code_ro = shares.iter().any(|s| s.tag == HOST_CODE && s.readonly);
    ensure!(
        !(host_code_ro && (args.startup.is_some() || args.autoexec.is_some()) && !share.options.is_empty()
            && share.cleanup.is_some()),
        "--startup/--autoexec copy a script into host-code, which is read-only: put the script in the share"
    );
    let extra: Vec<ShareSpec> = shares
        .iter()
        .filter(|s| s.tag != HOST_CODE)
        .cloned()
        .collect();
    let kvm = match args.kvm {
        KvmMode::On => true,
        KvmMode::Off => false,
        KvmMode::Auto => kvm_works(&kernel),
    };
    let consoles = match args.console {
        ConsoleMode::Serial => "console=ttyS0",
        ConsoleMode::Hvc0 => "console=hvc0 console=ttyS0",
    };
    let debug_exit = if args.no_debug_exit {
        ""
    } else {
        " myinit.debug_exit"
    };
    let mut cmdline = format!(
        "{consoles} panic=-1{debug_exit} {}",
        share.options.join(" ")
    );
    if let Some(extra) = &args.append {
        cmdline.push(' ');
        cmdline.push_str(extra);
    }
    let host_code = ShareSpec {
        tag: HOST_CODE.into(),
        dir: share.dir.clone(),
        readonly: host_code_ro,
    };
    let all: Vec<ShareSpec> = std::iter::once(host_code).chain(extra).collect();
    let result = boot(&kernel, &initrd, &all, cmdline.trim(), kvm, args);
    drop(share);
    result
}

/// The 9p share and the kernel options naming the scripts in it.
struct Share {
    dir: PathBuf,
    /// Remove `dir` (a temporary share) or `dir/.myinit-vm` (copied scripts) at the end.
    cleanup: Option<PathBuf>,
    options: Vec<String>,
}

impl Share {
    fn new(args: &VmArgs, shares: &[ShareSpec]) -> anyhow::Result<Self> {
        let (dir, temporary) = match shares.iter().find(|s| s.tag == HOST_CODE) {
            Some(share) => (share.dir.clone(), false),
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or_default();
                let dir = std::env::temp_dir()
                    .join(format!("myinit-vm-{}-{nanos:x}", std::process::id()));
                std::fs::create_dir_all(&dir)?;
                (dir, true)
            }
        };
        let mut share = Share {
            cleanup: temporary.then(|| dir.clone()),
            dir,
            options: Vec::new(),
        };
        for (name, file) in [("startup", &args.startup), ("autoexec", &args.autoexec)] {
            let Some(file) = file else { continue };
            let file = file
                .canonicalize()
                .with_context(|| format!("--{name} {}", file.display()))?;
            // A script inside the share is used in place; others are copied
            // in: as NAME.run in a temporary share (the original layout),
            // under .myinit-vm/ in the user's.
            let rel = match file.strip_prefix(&share.dir) {
                Ok(rel) if !temporary => rel.to_path_buf(),
                _ => {
                    let rel = if temporary {
                        PathBuf::from(format!("{name}.run"))
                    } else {
                        let sub = share.dir.join(".myinit-vm");
                        std::fs::create_dir_all(&sub)?;
                        share.cleanup.get_or_insert(sub);
                        PathBuf::from(format!(".myinit-vm/{name}.run"))
                    };
                    std::fs::copy(&file, share.dir.join(&rel))
                        .with_context(|| format!("copying {} into the share", file.display()))?;
                    rel
                }
            };
            share
                .options
                .push(format!("myinit.{name}=/mnt/host/{}", rel.display()));
        }
        Ok(share)
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        if let Some(dir) = &self.cleanup {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn qemu_command(
    kernel: &Kernel,
    initrd: &Path,
    shares: &[ShareSpec],
    nics: &[NicSpec],
    cmdline: &str,
    kvm: bool,
    args: &VmArgs,
) -> Command {
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-accel", if kvm { "kvm" } else { "tcg" }])
        .args(["-machine", &args.machine])
        .args(["-m", &args.mem.to_string()])
        .arg("-kernel")
        .arg(&kernel.image)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", cmdline])
        .arg("-no-reboot");
    if let Some(cpu) = &args.cpu {
        qemu.args(["-cpu", cpu]);
    }
    match args.console {
        // Serial console (multiplexed with the monitor: Ctrl-A x quits).
        ConsoleMode::Serial => {
            qemu.arg("-nographic");
        }
        // The harness's: a virtconsole and the serial port on one stdio.
        ConsoleMode::Hvc0 => {
            qemu.args(["-display", "none"])
                .args(["-chardev", "stdio,mux=on,id=con0,signal=off"])
                .args(["-serial", "chardev:con0"])
                .args(["-mon", "chardev=con0,mode=readline"])
                .args(["-device", "virtio-serial-pci"])
                .args(["-device", "virtconsole,chardev=con0"]);
        }
    }
    if !args.no_debug_exit {
        qemu.args([
            "-device",
            &format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT},iosize=0x04"),
        ]);
    }
    for (i, share) in shares.iter().enumerate() {
        let readonly = if share.readonly { ",readonly=on" } else { "" };
        qemu.arg("-fsdev")
            .arg(format!(
                "local,id=fs{i},path={},security_model=none{readonly}",
                share.dir.display()
            ))
            .args([
                "-device",
                &format!("virtio-9p-pci,fsdev=fs{i},mount_tag={}", share.tag),
            ]);
    }
    if args.net != Some(NetMode::None) {
        qemu.args(["-netdev", "user,id=net0"])
            // No option ROM: iPXE would only slow the boot down.
            .args(["-device", "virtio-net-pci,netdev=net0,romfile="]);
    }
    if args.net == Some(NetMode::Loop) {
        // A hub with two ports: what one NIC sends, the other receives.
        for (i, mac) in LOOP_MACS.iter().enumerate() {
            qemu.args(["-netdev", &format!("hubport,id=loop{i},hubid=7")])
                .args([
                    "-device",
                    &format!("virtio-net-pci,netdev=loop{i},mac={mac},romfile="),
                ]);
        }
    }
    for (i, nic) in nics.iter().enumerate() {
        let netdev = match &nic.wire {
            Some((local, remote)) => format!(
                "dgram,id=nic{i},local.type=unix,local.path={},remote.type=unix,remote.path={}",
                local.display(),
                remote.display()
            ),
            // A hub of its own: a NIC on no wire.
            None => format!("hubport,id=nic{i},hubid={}", 100 + i),
        };
        let mac = nic
            .mac
            .as_deref()
            .map(|m| format!(",mac={m}"))
            .unwrap_or_default();
        qemu.args(["-netdev", &netdev]).args([
            "-device",
            &format!("virtio-net-pci,netdev=nic{i}{mac},romfile="),
        ]);
    }
    qemu
}

/// Boots once: console passed through and watched, timeout enforced.
fn boot(
    kernel: &Kernel,
    initrd: &Path,
    shares: &[ShareSpec],
    cmdline: &str,
    kvm: bool,
    args: &VmArgs,
) -> anyhow::Result<i32> {
    let accel = if kvm { "KVM" } else { "TCG" };
    let shown: Vec<String> = shares
        .iter()
        .map(|s| {
            let ro = if s.readonly { " (read-only)" } else { "" };
            format!("{} as {}{ro}", s.dir.display(), s.tag)
        })
        .collect();
    eprintln!(
        "xtask vm: kernel {} ({accel}), share {}\nxtask vm: append: {cmdline}",
        kernel.version,
        shown.join(", ")
    );
    let started = Instant::now();
    // Raw like qemu would make it, so keys (Ctrl-C, Ctrl-A x) go to the VM.
    let raw = RawTerminal::enable();
    let nics = args
        .nic
        .iter()
        .map(|n| NicSpec::parse(n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut child = qemu_command(kernel, initrd, shares, &nics, cmdline, kvm, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot run qemu-system-x86_64 (cargo xtask setup installs it)")?;
    let console = Arc::new(Mutex::new(Console::new(started)));
    let keys = child.stdin.take().context("qemu stdin")?;
    // Never joined: it blocks reading our stdin until the process ends.
    std::thread::spawn(move || relay_keys(keys));
    let mut stdout = child.stdout.take().context("qemu stdout")?;
    let reader = {
        let console = console.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut out = std::io::stdout();
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let _ = out.write_all(&buf[..n]);
                let _ = out.flush();
                console
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .feed(&buf[..n]);
            }
        })
    };
    let deadline = (args.timeout > 0).then(|| started + Duration::from_secs(args.timeout));
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            stop(&mut child);
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = reader.join();
    drop(raw);
    let console = console.lock().unwrap_or_else(|e| e.into_inner());
    // The console may have ended mid-line (a countdown, a prompt).
    println!();
    let elapsed = started.elapsed();
    let Some(status) = status else {
        eprintln!(
            "xtask vm: timeout: the guest did not power off within {} s; killed it. Last console lines:",
            args.timeout
        );
        console.print_last();
        eprintln!("{}", console.timing(accel, elapsed));
        return Ok(STATUS_TIMEOUT);
    };
    eprintln!("{}", console.timing(accel, elapsed));
    let code = status.code();
    let guest_status = match code {
        Some(c) if c % 2 == 1 && console.seen_output => Some(c >> 1),
        _ => None,
    };
    match guest_status {
        Some(s) => {
            eprintln!("xtask vm: the guest powered off with status {s}");
            Ok(s)
        }
        // Without debug-exit a power off leaves no status: the console
        // tells a power off from a panic.
        None if code == Some(0)
            && args.no_debug_exit
            && console.powered_off
            && !console.panicked =>
        {
            eprintln!(
                "xtask vm: the guest powered off (no debug-exit: its status is not reported; 0)"
            );
            Ok(0)
        }
        None if code == Some(0) => {
            let why = match (console.panicked, &console.running_test) {
                (true, Some(test)) => format!("the kernel panicked during test {test}"),
                (true, None) => "the kernel panicked".to_string(),
                (false, Some(test)) => format!(
                    "a reboot, a kernel panic or a power off outside myinit, during test {test}"
                ),
                (false, None) => {
                    "a reboot, a kernel panic or a power off outside myinit".to_string()
                }
            };
            eprintln!("xtask vm: the guest stopped without reporting a status ({why}). Last console lines:");
            console.print_last();
            Ok(STATUS_NO_STATUS)
        }
        None => {
            eprintln!("xtask vm: qemu failed ({status}). Last console lines:");
            console.print_last();
            Ok(STATUS_NO_STATUS)
        }
    }
}

/// Copies our stdin to qemu as it comes.
fn relay_keys(mut keys: std::process::ChildStdin) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 1024];
    while let Ok(n) = stdin.read(&mut buf) {
        if n == 0
            || keys
                .write_all(&buf[..n])
                .and_then(|()| keys.flush())
                .is_err()
        {
            return;
        }
    }
}

/// The terminal in raw mode while the VM runs, restored on drop.
struct RawTerminal(Option<libc::termios>);

impl RawTerminal {
    fn enable() -> Self {
        // SAFETY: termios calls on fd 0 with a struct we own.
        unsafe {
            if libc::isatty(0) != 1 {
                return RawTerminal(None);
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return RawTerminal(None);
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            libc::tcsetattr(0, libc::TCSANOW, &raw);
            RawTerminal(Some(saved))
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restoring the attributes read in enable().
            unsafe { libc::tcsetattr(0, libc::TCSANOW, saved) };
        }
    }
}

/// SIGTERM, then SIGKILL if it lingers.
fn stop(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Watches the console for the boot milestones and keeps the last lines.
struct Console {
    started: Instant,
    partial: Vec<u8>,
    last: VecDeque<String>,
    seen_output: bool,
    panicked: bool,
    /// The kernel said it powers off ("reboot: Power down").
    powered_off: bool,
    /// The named test running (`# test N: NAME` printed, no result yet).
    running_test: Option<String>,
    kernel_start: Option<Duration>,
    init_start: Option<Duration>,
    /// The kernel's own clock at "Run /init" (printk time).
    init_kernel_clock: Option<f64>,
    stage1_done: Option<Duration>,
    stage2_done: Option<Duration>,
    autoexec_start: Option<Duration>,
    autoexec_done: Option<Duration>,
    shell_ready: Option<Duration>,
}

impl Console {
    fn new(started: Instant) -> Self {
        Console {
            started,
            partial: Vec::new(),
            last: VecDeque::new(),
            seen_output: false,
            panicked: false,
            powered_off: false,
            running_test: None,
            kernel_start: None,
            init_start: None,
            init_kernel_clock: None,
            stage1_done: None,
            stage2_done: None,
            autoexec_start: None,
            autoexec_done: None,
            shell_ready: None,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.seen_output = true;
        for &b in bytes {
            if b == b'\n' {
                let raw = std::mem::take(&mut self.partial);
                self.line(&String::from_utf8_lossy(&raw));
            } else {
                self.partial.push(b);
            }
        }
    }

    fn line(&mut self, raw: &str) {
        let now = self.started.elapsed();
        // A countdown redraws its line after '\r': keep the last drawing.
        let text = raw
            .split('\r')
            .rfind(|s| !s.trim().is_empty())
            .unwrap_or("")
            .to_string();
        let mark = |slot: &mut Option<Duration>| {
            slot.get_or_insert(now);
        };
        if text.contains("Linux version") {
            mark(&mut self.kernel_start);
        } else if text.contains("Run /init as init process") {
            mark(&mut self.init_start);
            self.init_kernel_clock = printk_time(&text);
        } else if text.contains("myinit: stage 1 done") {
            mark(&mut self.stage1_done);
        } else if text.contains("myinit: stage 2: done") || text.contains("myinit: stage 2: no ") {
            mark(&mut self.stage2_done);
        } else if text.contains("myinit: stage 3: running") {
            mark(&mut self.autoexec_start);
        } else if text.contains("myinit: stage 3: done") || text.contains("myinit: stage 3: no ") {
            mark(&mut self.autoexec_done);
        } else if text.contains("myinit: shell ready") {
            mark(&mut self.shell_ready);
        } else if text.contains("Kernel panic") {
            self.panicked = true;
        } else if text.contains("reboot: Power down") {
            self.powered_off = true;
        }
        // myinit's marker when a named test starts; its KTAP result ends it.
        if let Some(rest) = text.trim_start().strip_prefix("# test ") {
            if !rest.contains(" took ") {
                self.running_test = Some(rest.to_string());
            }
        } else if text
            .strip_prefix("not ")
            .unwrap_or(&text)
            .strip_prefix("ok ")
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        {
            self.running_test = None;
        }
        if self.last.len() == KEPT_LINES {
            self.last.pop_front();
        }
        self.last.push_back(text);
    }

    fn print_last(&self) {
        for line in &self.last {
            eprintln!("  | {line}");
        }
        let partial = String::from_utf8_lossy(&self.partial);
        if let Some(p) = partial.split('\r').rfind(|s| !s.trim().is_empty()) {
            eprintln!("  | {p}");
        }
    }

    /// One line: seconds since qemu started at each milestone seen.
    fn timing(&self, accel: &str, total: Duration) -> String {
        let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
        let mut parts = Vec::new();
        if let Some(t) = self.kernel_start {
            parts.push(format!("kernel start {}", secs(t)));
        }
        if let Some(t) = self.init_start {
            let clock = self
                .init_kernel_clock
                .map(|c| format!(" (kernel clock {c:.2} s)"))
                .unwrap_or_default();
            parts.push(format!("/init {}{clock}", secs(t)));
        }
        if let Some(t) = self.stage1_done {
            parts.push(format!("stage 1 done {}", secs(t)));
        }
        if let Some(t) = self.stage2_done {
            parts.push(format!("stage 2 done {}", secs(t)));
        }
        if let Some(t) = self.shell_ready {
            parts.push(format!("shell ready {}", secs(t)));
        }
        if let Some(t) = self.autoexec_start {
            // A script ending in `poweroff` prints no "done" line: it ends with the VM.
            let end = self.autoexec_done.unwrap_or(total);
            parts.push(format!("autoexec {} to {}", secs(t), secs(end)));
        } else if let Some(t) = self.autoexec_done {
            parts.push(format!("autoexec end {}", secs(t)));
        }
        parts.push(format!("exit {}", secs(total)));
        format!(
            "xtask vm: boot timing ({accel}, since qemu start): {}",
            parts.join(", ")
        )
    }
}

/// The `[  12.345678]` stamp at the start of a kernel message.
fn printk_time(line: &str) -> Option<f64> {
    let start = line.find('[')?;
    let end = start + line[start..].find(']')?;
    line[start + 1..end].trim().parse().ok()
}

/// Whether KVM really boots here (on some hosts /dev/kvm exists but a guest
/// hangs in the firmware): the kernel must print within a few seconds. The
/// answer is cached per host boot.
fn kvm_works(kernel: &Kernel) -> bool {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let cache = crate::target_dir().join("vm-cache").join("kvm-probe");
    let key = format!("{} {}", boot_id.trim(), kernel.image.display());
    if let Ok(text) = std::fs::read_to_string(&cache) {
        if let Some(answer) = text.strip_prefix(&format!("{key} ")) {
            return answer.trim() == "yes";
        }
    }
    let works = probe_kvm(kernel);
    eprintln!(
        "xtask vm: KVM probe: {}",
        if works {
            "works"
        } else {
            "no kernel output within 4 s; using TCG"
        }
    );
    let _ = std::fs::create_dir_all(cache.parent().unwrap_or(Path::new(".")));
    let _ = std::fs::write(
        &cache,
        format!("{key} {}\n", if works { "yes" } else { "no" }),
    );
    works
}

fn probe_kvm(kernel: &Kernel) -> bool {
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "kvm",
            "-m",
            "128",
            "-nographic",
            "-no-reboot",
            "-net",
            "none",
        ])
        .arg("-kernel")
        .arg(&kernel.image)
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    let Some(mut stdout) = child.stdout.take() else {
        return false;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("Linux version") {
                let _ = tx.send(());
                break;
            }
        }
    });
    let works = rx.recv_timeout(Duration::from_secs(4)).is_ok();
    let _ = child.kill();
    let _ = child.wait();
    works
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_marks_milestones_and_keeps_the_last_drawing_of_a_line() {
        let mut c = Console::new(Instant::now());
        c.feed(b"[    0.000000] Linux version 6.1.0-56-amd64\r\n");
        c.feed(b"[    2.500000] Run /init as init process\r\n");
        c.feed(
            b"myinit: stage 1 done in 40 ms\n\rautoexec in 1 s - press any key \rautoexec now   \n",
        );
        c.feed(b"myinit: stage 3: done in 5 ms (status 0)\npartial");
        assert!(c.kernel_start.is_some() && c.init_start.is_some());
        assert_eq!(c.init_kernel_clock, Some(2.5));
        assert!(c.stage1_done.is_some() && c.autoexec_done.is_some());
        assert!(c.shell_ready.is_none());
        assert!(c.last.iter().any(|l| l == "autoexec now   "));
        assert_eq!(c.partial, b"partial");
        let timing = c.timing("TCG", Duration::from_secs(3));
        assert!(timing.contains("kernel clock 2.50 s"), "{timing}");
        assert!(timing.contains("exit 3.0 s"), "{timing}");
    }

    #[test]
    fn console_knows_which_named_test_runs() {
        let mut c = Console::new(Instant::now());
        c.feed(b"KTAP version 1\n# test 1: first\nexpect: ok lo: 1 packet\n");
        assert_eq!(c.running_test.as_deref(), Some("1: first"));
        c.feed(b"# test 1: first took 5 ms\nok 1 - first\n");
        assert_eq!(c.running_test, None);
        c.feed(b"# test 2: crash\n[    9.1] Kernel panic - not syncing: sysrq triggered crash\n");
        assert_eq!(c.running_test.as_deref(), Some("2: crash"));
        assert!(c.panicked);
    }

    #[test]
    fn keeps_only_the_last_lines() {
        let mut c = Console::new(Instant::now());
        for i in 0..100 {
            c.feed(format!("line {i}\n").as_bytes());
        }
        assert_eq!(c.last.len(), KEPT_LINES);
        assert_eq!(c.last.back().map(String::as_str), Some("line 99"));
    }
}
