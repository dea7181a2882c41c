//! The VM's init: the mount table (PID 1, before the supervisor forks),
//! the console, the three boot stages and the countdowns (the engine), and
//! power off / reboot.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use crate::shell::{Flow, Output, Shell};

/// What PID 1 mounts before anything else: (source, target, fstype, options).
const MOUNTS: &[(&str, &str, &str, &str)] = &[
    ("proc", "/proc", "proc", ""),
    ("sysfs", "/sys", "sysfs", ""),
    ("devtmpfs", "/dev", "devtmpfs", "mode=0755"),
    (
        "devpts",
        "/dev/pts",
        "devpts",
        "gid=5,mode=620,ptmxmode=666",
    ),
    ("tmpfs", "/tmp", "tmpfs", "mode=1777"),
    ("tmpfs", "/run", "tmpfs", "mode=0755"),
];

/// Stage 1: `mount proc`, the kernel modules, `mount 9p`. The script is
/// `initrd/stage1.run`, which is also where `cargo xtask initrd` reads the
/// modules to ship: one list for both.
pub const STAGE1: &str = include_str!("../../initrd/stage1.run");

/// Stage-2 scripts, first found wins (the original's code and its docs disagreed).
pub const STARTUP_CANDIDATES: &[&str] = &[
    "/mnt/host/test-harness/startup.run",
    "/mnt/host/startup.run",
    "/startup.run",
];

/// Stage-3 scripts, first found wins.
pub const AUTOEXEC_CANDIDATES: &[&str] = &[
    "/mnt/host/test-harness/autoexec.run",
    "/mnt/host/autoexec.run",
    "/autoexec.run",
];

/// Options from the kernel command line (`myinit.NAME[=VALUE]`).
#[derive(Debug, Clone, PartialEq)]
pub struct BootOptions {
    /// `myinit.startup=PATH`: tried before the default stage-2 paths.
    pub startup: Option<PathBuf>,
    /// `myinit.autoexec=PATH`: tried before the default stage-3 paths.
    pub autoexec: Option<PathBuf>,
    /// `myinit.countdown=SECONDS`: the countdown before autoexec (default 5).
    pub countdown: u64,
    /// `myinit.poweroff_countdown=SECONDS`: after autoexec (default 10).
    pub poweroff_countdown: u64,
    /// `myinit.shell`: skip autoexec and go straight to the shell.
    pub shell: bool,
}

impl Default for BootOptions {
    fn default() -> Self {
        BootOptions {
            startup: None,
            autoexec: None,
            countdown: 5,
            poweroff_countdown: 10,
            shell: false,
        }
    }
}

impl BootOptions {
    /// Parses `/proc/cmdline`; unknown or malformed options are reported and ignored.
    pub fn parse(cmdline: &str) -> (Self, Vec<String>) {
        let mut opts = BootOptions::default();
        let mut warnings = Vec::new();
        for word in cmdline.split_whitespace() {
            let Some(option) = word.strip_prefix("myinit.") else {
                continue;
            };
            let (name, value) = match option.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (option, None),
            };
            let seconds = |v: Option<&str>| v.and_then(|v| v.parse::<u64>().ok());
            match (name, value) {
                ("startup", Some(path)) => opts.startup = Some(path.into()),
                ("autoexec", Some(path)) => opts.autoexec = Some(path.into()),
                ("countdown", v) if seconds(v).is_some() => {
                    opts.countdown = seconds(v).unwrap_or(5)
                }
                ("poweroff_countdown", v) if seconds(v).is_some() => {
                    opts.poweroff_countdown = seconds(v).unwrap_or(10)
                }
                ("shell", None | Some("1") | Some("yes")) => opts.shell = true,
                // Read by vmexit.rs at power off.
                ("debug_exit", None) => {}
                _ => warnings.push(format!("ignoring kernel option {word}")),
            }
        }
        (opts, warnings)
    }

    fn candidates(extra: &Option<PathBuf>, defaults: &[&str]) -> Vec<PathBuf> {
        extra
            .iter()
            .cloned()
            .chain(defaults.iter().map(PathBuf::from))
            .collect()
    }

    pub fn startup_candidates(&self) -> Vec<PathBuf> {
        Self::candidates(&self.startup, STARTUP_CANDIDATES)
    }

    pub fn autoexec_candidates(&self) -> Vec<PathBuf> {
        Self::candidates(&self.autoexec, AUTOEXEC_CANDIDATES)
    }
}

/// The first candidate that `exists` says is there.
pub fn first_existing(candidates: &[PathBuf], exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    candidates.iter().find(|p| exists(p)).cloned()
}

/// Something that can tell whether a key was pressed within a time.
pub trait KeySource {
    /// True if a key arrived within `timeout` (the key is consumed).
    fn wait_key(&mut self, timeout: Duration) -> bool;
}

/// How a countdown ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Countdown {
    KeyPressed,
    TimedOut,
}

/// Counts down on one updating line; any key ends it early.
pub fn countdown(
    seconds: u64,
    what: &str,
    keys: &mut dyn KeySource,
    out: &mut dyn Write,
) -> Countdown {
    for left in (1..=seconds).rev() {
        let _ = write!(out, "\r{what} in {left} s - press any key for the shell ");
        let _ = out.flush();
        if keys.wait_key(Duration::from_secs(1)) {
            let _ = writeln!(out, "\r{what}: skipped, starting the shell{:10}", "");
            return Countdown::KeyPressed;
        }
    }
    let _ = writeln!(out, "\r{what} now{:40}", "");
    Countdown::TimedOut
}

/// The console, switched for one key at a time (see tui.rs).
pub struct ConsoleKeys;

impl KeySource for ConsoleKeys {
    fn wait_key(&mut self, timeout: Duration) -> bool {
        crate::tui::RawConsole::new().key_pressed(timeout)
    }
}

/// Mounts the base file systems and creates missing device nodes.
pub fn mount_base() {
    for (source, target, fstype, options) in MOUNTS {
        let _ = std::fs::create_dir_all(target);
        let data = (!options.is_empty()).then_some(*options);
        if let Err(e) = mount(
            Some(*source),
            *target,
            Some(*fstype),
            MsFlags::empty(),
            data,
        ) {
            // EBUSY: already mounted (the kernel may mount devtmpfs itself).
            if e != nix::errno::Errno::EBUSY {
                eprintln!("myinit: mount {fstype} on {target}: {}", e.desc());
            }
        }
    }
    if !Path::new("/dev/net/tun").exists() {
        let _ = std::fs::create_dir_all("/dev/net");
        if let Err(e) = mknod(
            "/dev/net/tun",
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(10, 200),
        ) {
            eprintln!("myinit: mknod /dev/net/tun: {}", e.desc());
        }
    }
}

/// Makes the real console device (e.g. ttyS0) our controlling terminal on
/// fds 0-2, so Ctrl-C sends SIGINT; /dev/console itself cannot be one.
pub fn setup_console() {
    use std::os::fd::AsRawFd;
    let active = std::fs::read_to_string("/sys/class/tty/console/active").unwrap_or_default();
    let device = if wants_hvc0() && Path::new(HVC0).exists() {
        HVC0.to_string()
    } else {
        active
            .split_whitespace()
            .last()
            .map(|name| format!("/dev/{name}"))
            .unwrap_or_else(|| "/dev/console".into())
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&device)
        .or_else(|_| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/console")
        });
    let Ok(file) = file else {
        return;
    };
    let _ = nix::unistd::setsid();
    let fd = file.as_raw_fd();
    // SAFETY: plain ioctl/dup2 on descriptors we own.
    unsafe {
        libc::ioctl(fd, libc::TIOCSCTTY, 1);
        for target in 0..3 {
            libc::dup2(fd, target);
        }
    }
}

/// The virtio console a harness names with `console=hvc0`.
const HVC0: &str = "/dev/hvc0";

/// Whether the kernel command line asks for hvc0 (the nat46 harness's
/// `console=hvc0 console=ttyS0`: qemu gives the keyboard to its
/// virtconsole, so the shell must read hvc0, whatever /dev/console is).
fn wants_hvc0() -> bool {
    std::fs::read_to_string("/proc/cmdline")
        .unwrap_or_default()
        .split_whitespace()
        .any(|w| w == "console=hvc0")
}

/// After stage 1 loaded `virtio_console`: moves the console (fds 0-2 and
/// the controlling terminal) to hvc0 when the command line asks for it.
fn move_console_to_hvc0() {
    use std::os::fd::AsRawFd;
    if !wants_hvc0() {
        return;
    }
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(HVC0)
    else {
        eprintln!("myinit: console=hvc0 but {HVC0} is not there (virtio_console?); staying on the serial console");
        return;
    };
    let fd = file.as_raw_fd();
    // SAFETY: signal disposition, ioctls and dup2 on descriptors we own.
    // Giving up the old terminal sends SIGHUP to us, its session leader.
    unsafe {
        let old = libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::ioctl(0, libc::TIOCNOTTY);
        libc::ioctl(fd, libc::TIOCSCTTY, 1);
        for target in 0..3 {
            libc::dup2(fd, target);
        }
        libc::signal(libc::SIGHUP, old);
    }
    println!("myinit: console on hvc0 (console=hvc0)");
}

/// Runs one script file as a boot stage, reporting how long it took.
fn run_stage_file(shell: &mut Shell, out: &mut Output, label: &str, path: &Path) {
    let started = Instant::now();
    println!("myinit: {label}: running {}", path.display());
    match shell.run_file(path, out) {
        Ok(Flow::Exit(status)) => {
            let passed = shell.finish_tests(out);
            crate::power::off(if passed == Some(false) && status == 0 {
                1
            } else {
                status
            })
        }
        Ok(_) => {}
        Err(e) => eprintln!("myinit: {label}: {e:#}"),
    }
    // The named tests of a stage end with it.
    shell.finish_tests(out);
    println!(
        "myinit: {label}: done in {} ms (status {})",
        started.elapsed().as_millis(),
        shell.last_status
    );
}

/// A new engine after a crash: no boot stages, straight to the shell.
pub fn shell_again(shell: &mut Shell) -> ! {
    crate::power::set_phase(crate::power::Phase::Shell);
    println!("myinit: shell ready again");
    loop {
        crate::shell::editor::interactive(shell);
    }
}

/// The whole flow of the VM's init. Never returns.
pub fn run(shell: &mut Shell, boot_started: Instant) -> ! {
    crate::power::set_phase(crate::power::Phase::Unattended);
    let mut out = Output::stdout();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let (opts, warnings) = BootOptions::parse(&cmdline);
    for w in warnings {
        eprintln!("myinit: {w}");
    }

    let stage1 = Instant::now();
    shell.run_source(STAGE1.as_bytes(), "stage1", &mut out);
    println!(
        "myinit: stage 1 done in {} ms",
        stage1.elapsed().as_millis()
    );
    move_console_to_hvc0();

    match first_existing(&opts.startup_candidates(), Path::exists) {
        Some(path) => run_stage_file(shell, &mut out, "stage 2", &path),
        None => println!("myinit: stage 2: no startup.run found"),
    }

    let mut keys = ConsoleKeys;
    let mut stdout = std::io::stdout();
    let go_to_shell = opts.shell
        || countdown(opts.countdown, "autoexec", &mut keys, &mut stdout) == Countdown::KeyPressed;
    if !go_to_shell {
        match first_existing(&opts.autoexec_candidates(), Path::exists) {
            Some(path) => run_stage_file(shell, &mut out, "stage 3", &path),
            None => println!("myinit: stage 3: no autoexec.run found"),
        }
        if countdown(opts.poweroff_countdown, "power off", &mut keys, &mut stdout)
            == Countdown::TimedOut
        {
            let status = shell.last_status;
            crate::power::request(Some(status));
            shell.state.jobs.stop_all_reporting(&mut std::io::stdout());
            crate::power::off(status);
        }
    }
    crate::power::set_phase(crate::power::Phase::Shell);
    println!(
        "myinit: shell ready {} ms after /init started",
        boot_started.elapsed().as_millis()
    );
    loop {
        crate::shell::editor::interactive(shell);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct ScriptedKeys {
        /// The second (1-based) at which a key arrives, if any.
        key_at: Option<u64>,
        waited: u64,
    }

    impl KeySource for ScriptedKeys {
        fn wait_key(&mut self, _timeout: Duration) -> bool {
            self.waited += 1;
            self.key_at == Some(self.waited)
        }
    }

    #[test]
    fn cmdline_options_override_defaults() {
        let (opts, warnings) = BootOptions::parse(
            "console=ttyS0 myinit.autoexec=/mnt/host/t.run myinit.countdown=2 myinit.shell quiet",
        );
        assert!(warnings.is_empty());
        assert_eq!(opts.autoexec, Some(PathBuf::from("/mnt/host/t.run")));
        assert_eq!(opts.countdown, 2);
        assert!(opts.shell);
        assert_eq!(
            opts.autoexec_candidates()[0],
            PathBuf::from("/mnt/host/t.run")
        );
        assert_eq!(
            opts.autoexec_candidates()[1],
            PathBuf::from(AUTOEXEC_CANDIDATES[0])
        );
    }

    #[test]
    fn bad_cmdline_options_are_reported_and_ignored() {
        let (opts, warnings) = BootOptions::parse("myinit.countdown=soon myinit.bogus");
        assert_eq!(opts, BootOptions::default());
        assert_eq!(warnings.len(), 2);
    }

    #[test]
    fn stage_scripts_first_existing_wins_in_order() {
        let opts = BootOptions::default();
        let present = ["/mnt/host/startup.run", "/startup.run"];
        let chosen = first_existing(&opts.startup_candidates(), |p| {
            present.iter().any(|q| Path::new(q) == p)
        });
        assert_eq!(chosen, Some(PathBuf::from("/mnt/host/startup.run")));
        let harness = first_existing(&opts.startup_candidates(), |_| true);
        assert_eq!(
            harness,
            Some(PathBuf::from("/mnt/host/test-harness/startup.run"))
        );
        assert_eq!(first_existing(&opts.autoexec_candidates(), |_| false), None);
    }

    #[test]
    fn countdown_stops_at_a_key() {
        let mut keys = ScriptedKeys {
            key_at: Some(2),
            waited: 0,
        };
        let mut screen = Vec::new();
        assert_eq!(
            countdown(5, "autoexec", &mut keys, &mut screen),
            Countdown::KeyPressed
        );
        assert_eq!(keys.waited, 2);
        let text = String::from_utf8(screen).unwrap();
        assert!(text.contains("\rautoexec in 5 s"));
        assert!(text.contains("\rautoexec in 4 s"));
        assert!(!text.contains("in 3 s"));
    }

    #[test]
    fn countdown_times_out_without_a_key() {
        let mut keys = ScriptedKeys {
            key_at: None,
            waited: 0,
        };
        let mut screen = Vec::new();
        assert_eq!(
            countdown(3, "power off", &mut keys, &mut screen),
            Countdown::TimedOut
        );
        assert_eq!(keys.waited, 3);
        // One updating line: no newline until the end.
        let text = String::from_utf8(screen).unwrap();
        assert_eq!(text.matches('\n').count(), 1);
    }
}
