//! `bench boot`: Debian's kernel under TCG with myinit's initrd, from qemu's
//! start to the shell prompt and from `poweroff` to qemu's exit, against the
//! same kernel with a 3-line busybox `/init` (the floor: what the kernel
//! and qemu cost by themselves). Boots through `cargo xtask vm`, so the
//! machine, console and kernel line are the ones every VM test uses.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};

use super::{median, need, Bench, Cell, Scratch, Table, Watched};
use crate::initrd::{self, Archive, Node};
use crate::kernel::KernelArgs;

/// The floor's `/init`: a prompt, a line read from the console, power off.
const BUSYBOX_INIT: &str = "#!/bin/busybox sh\n\
/bin/busybox echo 'busybox-init: ready'\n\
read line; /bin/busybox poweroff -f\n";

/// Debian's busybox-static puts its static binary here.
const BUSYBOX: &str = "/bin/busybox";

const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

#[derive(Clone, Copy, PartialEq)]
enum Init {
    Myinit,
    Busybox,
}

impl Init {
    fn label(self) -> &'static str {
        match self {
            Init::Myinit => "myinit (static musl initrd, myinit.shell)",
            Init::Busybox => "busybox sh /init (the floor)",
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Sample {
    prompt_s: f64,
    poweroff_s: f64,
    rss_kib: Option<u64>,
}

pub fn run(bench: &Bench) -> anyhow::Result<Vec<Table>> {
    need("qemu-system-x86_64", "qemu-system-x86")?;
    need("busybox", "busybox-static")?;
    let kernel = KernelArgs::default().resolve()?;
    let scratch = Scratch::try_new("bench")?;
    let myinit_initrd = scratch.path("myinit.img");
    let myinit_size = initrd::build(&kernel, &[], Some(&bench.myinit), &myinit_initrd)?;
    let busybox_initrd = scratch.path("busybox.img");
    let busybox_size = busybox_initrd_file(&busybox_initrd)?;

    let inits = [Init::Myinit, Init::Busybox];
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); inits.len()];
    for round in 0..bench.rounds as usize {
        for k in 0..inits.len() {
            let i = (k + round) % inits.len();
            let initrd = match inits[i] {
                Init::Myinit => &myinit_initrd,
                Init::Busybox => &busybox_initrd,
            };
            let s = boot(inits[i], initrd, MACHINES[0])
                .with_context(|| format!("round {}: {}", round + 1, inits[i].label()))?;
            eprintln!(
                "bench boot: round {} {}: prompt {:.2} s, poweroff {:.2} s, PID 1 RSS {:?} KiB",
                round + 1,
                inits[i].label(),
                s.prompt_s,
                s.poweroff_s,
                s.rss_kib
            );
            samples[i].push(s);
        }
    }
    let mut table = Table::new(
        format!(
            "TCG boot of Debian's kernel {}, median of {} round(s)",
            kernel.version, bench.rounds
        ),
        &[
            "init",
            "to the prompt s",
            "poweroff s",
            "total s",
            "PID 1 RSS at the prompt KiB",
            "initrd KiB",
        ],
    );
    let mut totals = Vec::new();
    let mut prompts = Vec::new();
    for ((init, v), size) in inits.iter().zip(&samples).zip([myinit_size, busybox_size]) {
        let prompt = median(&v.iter().map(|s| s.prompt_s).collect::<Vec<_>>());
        let off = median(&v.iter().map(|s| s.poweroff_s).collect::<Vec<_>>());
        let rss = median(
            &v.iter()
                .filter_map(|s| s.rss_kib.map(|r| r as f64))
                .collect::<Vec<_>>(),
        );
        prompts.push(prompt);
        totals.push(prompt + off);
        table.row(vec![
            Cell::text(init.label()),
            Cell::num(prompt, 2),
            Cell::num(off, 2),
            Cell::num(prompt + off, 2),
            Cell::num(rss, 0),
            Cell::Int(size / 1024),
        ]);
    }
    table.ratios.push((
        "time to the prompt, myinit vs the busybox floor".into(),
        prompts[0] / prompts[1],
        None,
    ));
    table.ratios.push((
        "prompt + poweroff, myinit vs the busybox floor".into(),
        totals[0] / totals[1],
        None,
    ));
    table.notes.push(format!(
        "times from qemu's start (`xtask vm: append:`) to the prompt line, and from typing `poweroff` to qemu's exit; myinit above the floor: {:+.2} s to the prompt",
        prompts[0] - prompts[1]
    ));
    let mut tables = vec![table];
    // The machine and CPU models: a full run only (four more boots a round).
    if !bench.quick {
        tables.push(machines(bench, &kernel.version, &myinit_initrd)?);
    }
    Ok(tables)
}

/// myinit's boot on each of `MACHINES`, rounds alternating.
fn machines(bench: &Bench, version: &str, initrd: &Path) -> anyhow::Result<Table> {
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); MACHINES.len()];
    for round in 0..bench.rounds as usize {
        for k in 0..MACHINES.len() {
            let i = (k + round) % MACHINES.len();
            let s = boot(Init::Myinit, initrd, MACHINES[i])
                .with_context(|| format!("round {}: {}", round + 1, machine_label(MACHINES[i])))?;
            eprintln!(
                "bench boot: round {} {}: prompt {:.2} s, poweroff {:.2} s",
                round + 1,
                machine_label(MACHINES[i]),
                s.prompt_s,
                s.poweroff_s
            );
            samples[i].push(s);
        }
    }
    let mut table = Table::new(
        format!(
            "myinit under TCG by machine type and CPU model, Debian's kernel {version}, median of {} round(s)",
            bench.rounds
        ),
        &["machine and CPU", "to the prompt s", "poweroff s", "total s"],
    );
    let mut totals = Vec::new();
    for (machine, v) in MACHINES.iter().zip(&samples) {
        let prompt = median(&v.iter().map(|s| s.prompt_s).collect::<Vec<_>>());
        let off = median(&v.iter().map(|s| s.poweroff_s).collect::<Vec<_>>());
        totals.push(prompt + off);
        table.row(vec![
            Cell::text(machine_label(*machine)),
            Cell::num(prompt, 2),
            Cell::num(off, 2),
            Cell::num(prompt + off, 2),
        ]);
    }
    for (machine, total) in MACHINES.iter().zip(&totals).skip(1) {
        table.ratios.push((
            format!(
                "prompt + poweroff, {} vs today's {}",
                machine_label(*machine),
                machine_label(MACHINES[0])
            ),
            total / totals[0],
            None,
        ));
    }
    table.notes.push(
        "the same initrd and kernel line every VM test uses (myinit.shell), only -machine and -cpu change; rounds alternate the order"
            .into(),
    );
    Ok(table)
}

/// The floor's initrd: busybox and the 3-line /init. Returns its size.
fn busybox_initrd_file(path: &Path) -> anyhow::Result<u64> {
    let busybox = std::fs::read(BUSYBOX).with_context(|| format!("reading {BUSYBOX}"))?;
    let mut archive = Archive::default();
    for dir in ["bin", "dev", "proc", "sys"] {
        archive.dir(dir);
    }
    archive.insert("dev/console", Node::CharDev { major: 5, minor: 1 });
    archive.file("bin/busybox", busybox, true);
    archive.file("init", BUSYBOX_INIT.as_bytes().to_vec(), true);
    // gzip'd like myinit's, so both kernels pay for decompression.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&archive.to_cpio())?;
    let bytes = gz.finish()?;
    std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(bytes.len() as u64)
}

/// A machine type and CPU model to boot with (None: qemu's default CPU).
type Machine = (&'static str, Option<&'static str>);

/// What the machine table compares: today's, then the two changes
/// virtme-ng made, alone and together.
const MACHINES: [Machine; 4] = [
    (crate::vm::DEFAULT_MACHINE, None),
    ("q35", None),
    (crate::vm::DEFAULT_MACHINE, Some("max")),
    ("q35", Some("max")),
];

fn machine_label((machine, cpu): Machine) -> String {
    format!(
        "-machine {machine} -cpu {}",
        cpu.unwrap_or("(qemu's default)")
    )
}

fn boot(init: Init, initrd: &Path, machine: Machine) -> anyhow::Result<Sample> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["vm", "--kvm", "off", "--timeout"])
        .arg(BOOT_TIMEOUT.as_secs().to_string())
        .args(["--machine", machine.0])
        .arg("--initrd")
        .arg(initrd);
    if let Some(cpu) = machine.1 {
        cmd.args(["--cpu", cpu]);
    }
    if init == Init::Myinit {
        cmd.args(["--append", "myinit.shell"]);
    }
    let mut vm = Watched::spawn(cmd)?;
    vm.wait_for("xtask vm: append:", Duration::from_secs(120))?;
    let started = Instant::now();
    let ready = match init {
        Init::Myinit => "myinit: shell ready",
        Init::Busybox => "busybox-init: ready",
    };
    vm.wait_for(ready, BOOT_TIMEOUT)?;
    let prompt_s = started.elapsed().as_secs_f64();
    let mut rss_kib = None;
    if init == Init::Myinit {
        // The line editor starts just after the "ready" line.
        std::thread::sleep(Duration::from_millis(500));
        vm.send("cat /proc/1/status\r")?;
        let line = vm.wait_for("VmRSS:", Duration::from_secs(30))?;
        rss_kib = line.split_whitespace().nth(1).and_then(|n| n.parse().ok());
        std::thread::sleep(Duration::from_millis(200));
        vm.send("poweroff\r")?;
    } else {
        vm.send("\r")?;
    }
    let off = Instant::now();
    let mut status = None;
    let deadline = off + Duration::from_secs(60);
    while Instant::now() < deadline {
        status = vm.child.try_wait()?;
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let poweroff_s = off.elapsed().as_secs_f64();
    let status = status.context("the guest did not power off within 60 s")?;
    // myinit reports `poweroff`'s status 0 through the debug-exit device;
    // busybox's power off reports none (xtask vm's 125).
    if init == Init::Myinit {
        ensure!(
            status.success(),
            "xtask vm ended with {status}, not the guest's poweroff 0: {}",
            vm.seen.join(" / ")
        );
    }
    Ok(Sample {
        prompt_s,
        poweroff_s,
        rss_kib,
    })
}
