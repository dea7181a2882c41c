//! The file and system commands, run for real as root: files in temporary
//! directories, FIFOs, device nodes, tmpfs mounts in a private mount
//! namespace, the kernel log, /proc and the kernel configuration.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{myinit, myinit_bin, unique, MyinitIn, MyinitRun, Netns, TempDir};

/// Runs `myinit -c` in a mount namespace of its own, so whatever it mounts
/// disappears with it, even when the test fails.
fn myinit_private_mounts(commands: &str) -> MyinitRun {
    MyinitRun::from(
        Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                myinit_bin(),
                "-c",
                commands,
            ])
            .output()
            .expect("run unshare"),
    )
}

/// The error lines, without the `-c:LINE: ` origin prefix the shell adds.
fn stderr_lines(run: &MyinitRun) -> Vec<&str> {
    run.stderr
        .lines()
        .map(|l| match l.strip_prefix("-c:") {
            Some(rest) => rest.split_once(": ").map_or(l, |(_, msg)| msg),
            None => l,
        })
        .collect()
}

#[test]
fn cat_prints_files_in_order_and_redirected_stdin() {
    let dir = TempDir::new("fsys");
    let (a, b) = (dir.file("a"), dir.file("b"));
    fs::write(&a, "first\n").unwrap();
    fs::write(&b, "second\nno newline").unwrap();
    let run = myinit(&format!("cat {a} {b}; echo; cat < {a}"));
    run.assert_ok();
    assert_eq!(run.stdout, "first\nsecond\nno newline\nfirst\n");
}

#[test]
fn cat_streams_a_large_binary_file_unchanged() {
    let dir = TempDir::new("fsys");
    let (big, copy) = (dir.file("big"), dir.file("copy"));
    // 5 MiB with every byte value, newlines included at odd places.
    let data: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(&big, &data).unwrap();
    myinit(&format!("cat {big} > {copy}")).assert_ok();
    assert!(fs::read(&copy).unwrap() == data, "cat changed the bytes");
}

#[test]
fn cat_of_a_pipe_that_stays_open_stops_on_sigint() {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(myinit_bin())
        .args(["-c", "cat; echo after=$?"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The writer stays open: only Ctrl-C (SIGINT) can end this cat.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"streamed\n").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cat did not stop on SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let run = MyinitRun::from(child.wait_with_output().unwrap());
    drop(stdin);
    // Ctrl-C ends the whole line, as in sh: `echo after` does not run.
    assert_eq!(run.stdout, "streamed\n", "{run:?}");
    assert_eq!(run.status, 130, "{run:?}");
    assert_eq!(stderr_lines(&run), ["cat: interrupted"]);
}

#[test]
fn cat_of_a_missing_file_is_one_line_and_status_1() {
    let dir = TempDir::new("fsys");
    let missing = dir.file("missing");
    let run = myinit(&format!("cat {missing}; echo status=$?"));
    assert_eq!(run.stdout, "status=1\n");
    assert_eq!(
        stderr_lines(&run),
        [format!("cat: {missing}: No such file or directory")]
    );
}

#[test]
fn echo_into_a_fifo_arrives_as_one_read() {
    let dir = TempDir::new("fsys");
    let fifo = dir.file("control");
    nix::unistd::mkfifo(
        fifo.as_str(),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let (tx, rx) = mpsc::channel();
    let reader_path = fifo.clone();
    std::thread::spawn(move || {
        let mut f = fs::File::open(&reader_path).unwrap();
        let mut buf = [0u8; 4096];
        // One read only: a writer that split the line would show here.
        let n = f.read(&mut buf).unwrap();
        tx.send(buf[..n].to_vec()).unwrap();
    });
    let run = myinit(&format!("echo add nat46dev > {fifo}"));
    let got = rx.recv_timeout(Duration::from_secs(10));
    if got.is_err() {
        // Unblock the reader thread so the process can end.
        let _ = fs::OpenOptions::new().write(true).open(&fifo);
    }
    run.assert_ok();
    assert_eq!(
        String::from_utf8_lossy(&got.expect("the reader got nothing")),
        "add nat46dev\n"
    );
}

#[test]
fn append_redirect_adds_to_the_end() {
    let dir = TempDir::new("fsys");
    let f = dir.file("log");
    myinit(&format!(
        "echo one > {f}; echo two >> {f}; echo three >> {f}"
    ))
    .assert_ok();
    assert_eq!(fs::read_to_string(&f).unwrap(), "one\ntwo\nthree\n");
}

#[test]
fn cp_copies_to_a_file_and_into_a_directory() {
    let dir = TempDir::new("fsys");
    let (src, dst, sub) = (dir.file("src.sh"), dir.file("dst"), dir.file("sub"));
    fs::write(&src, "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o750)).unwrap();
    fs::create_dir(&sub).unwrap();
    myinit(&format!("cp {src} {dst}; cp {src} {sub}")).assert_ok();
    for copy in [dst, format!("{sub}/src.sh")] {
        assert_eq!(fs::read_to_string(&copy).unwrap(), "#!/bin/sh\necho hi\n");
        assert_eq!(fs::metadata(&copy).unwrap().mode() & 0o777, 0o750, "{copy}");
    }
    let run = myinit(&format!(
        "cp {sub} {dir}/x; echo status=$?",
        dir = dir.dir().display()
    ));
    assert_eq!(run.stdout, "status=1\n");
    assert_eq!(stderr_lines(&run).len(), 1, "{run:?}");
}

#[test]
fn cp_onto_itself_or_from_a_fifo_is_refused_and_changes_nothing() {
    let dir = TempDir::new("fsys");
    let file = dir.file("same.txt");
    fs::write(&file, "keep me\n").unwrap();
    for line in [
        format!("cp {file} {file}"),
        format!("cp {file} {}", dir.dir().display()),
    ] {
        let run = myinit(&line);
        assert_eq!(run.status, 1, "{line}: {run:?}");
        assert!(run.stderr.contains("are the same file"), "{run:?}");
        assert_eq!(fs::read_to_string(&file).unwrap(), "keep me\n");
    }
    let fifo = dir.file("fifo");
    nix::unistd::mkfifo(
        fifo.as_str(),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let run = myinit(&format!("cp {fifo} {}", dir.file("out")));
    assert_eq!(run.status, 1, "{run:?}");
    assert!(run.stderr.contains("not a regular file"), "{run:?}");
    assert!(!Path::new(&dir.file("out")).exists());
}

#[test]
fn ls_l_lists_several_paths_sorted_with_mode_size_and_link_target() {
    let dir = TempDir::new("fsys");
    let d = dir.file("d");
    fs::create_dir(&d).unwrap();
    fs::write(format!("{d}/zeta"), "12345").unwrap();
    fs::write(format!("{d}/alpha"), "").unwrap();
    fs::write(format!("{d}/.hidden"), "").unwrap();
    fs::set_permissions(format!("{d}/zeta"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("zeta", format!("{d}/link")).unwrap();
    fs::create_dir(format!("{d}/sub")).unwrap();
    let file = dir.file("file");
    fs::write(&file, vec![b'x'; 1000]).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o604)).unwrap();

    let run = myinit(&format!("ls -l {d} {file}"));
    run.assert_ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    // The file given by name first, then the directory's listing.
    assert!(lines[0].starts_with("-rw----r-- "), "{lines:?}");
    assert_eq!(
        lines[0].split_whitespace().nth(2),
        Some("1000"),
        "{lines:?}"
    );
    assert!(lines[0].ends_with(&file), "{lines:?}");
    assert_eq!(lines[1], "");
    assert_eq!(lines[2], format!("{d}:"));
    let names: Vec<&str> = lines[3..]
        .iter()
        .map(|l| l.split_whitespace().nth(5).unwrap_or(""))
        .collect();
    assert_eq!(names, ["alpha", "link", "sub", "zeta"], "{lines:?}");
    let entry = |name: &str| {
        *lines
            .iter()
            .find(|l| l.split_whitespace().nth(5) == Some(name))
            .unwrap_or_else(|| panic!("{name} not in {lines:?}"))
    };
    let zeta = entry("zeta");
    assert!(zeta.starts_with("-rw-r----- "), "{zeta}");
    assert_eq!(zeta.split_whitespace().nth(2), Some("5"));
    let link = entry("link");
    assert!(
        link.starts_with('l') && link.ends_with(" link -> zeta"),
        "{link}"
    );
    let sub = entry("sub");
    assert!(sub.starts_with('d'), "{sub}");
    // mtime as YYYY-MM-DD HH:MM (UTC), cross-checked with date(1).
    let mtime = fs::metadata(format!("{d}/zeta")).unwrap().mtime();
    let expected = common::run_ok("date", &["-u", "-d", &format!("@{mtime}"), "+%F %H:%M"]);
    assert!(zeta.contains(expected.trim()), "{zeta} vs {expected}");

    // Plain ls: names only, dot files only with -a.
    let run = myinit(&format!("ls {d}; ls -a {d}"));
    run.assert_ok();
    assert_eq!(
        run.stdout,
        "alpha\nlink\nsub\nzeta\n.hidden\nalpha\nlink\nsub\nzeta\n"
    );
}

#[test]
fn ls_of_a_missing_path_still_lists_the_others_and_fails() {
    let dir = TempDir::new("fsys");
    let file = dir.file("here");
    fs::write(&file, "").unwrap();
    let missing = dir.file("gone");
    let run = myinit(&format!("ls {missing} {file}; echo status=$?"));
    assert_eq!(run.stdout, format!("{file}\nstatus=1\n"));
    assert_eq!(
        stderr_lines(&run),
        [format!("ls: {missing}: No such file or directory")]
    );
}

#[test]
fn mkdir_p_creates_parents_and_plain_mkdir_refuses_an_existing_dir() {
    let dir = TempDir::new("fsys");
    let deep = dir.file("a/b/c");
    let other = dir.file("other");
    myinit(&format!("mkdir -p {deep} {other}; mkdir -p {deep}")).assert_ok();
    assert!(Path::new(&deep).is_dir());
    assert!(Path::new(&other).is_dir());
    let run = myinit(&format!("mkdir {deep}; echo status=$?"));
    assert_eq!(run.stdout, "status=1\n");
    assert_eq!(stderr_lines(&run), [format!("mkdir: {deep}: File exists")]);
}

#[test]
fn mknod_makes_a_fifo_and_a_working_null_device() {
    let dir = TempDir::new("fsys");
    let (fifo, null, fifo2) = (dir.file("fifo"), dir.file("null"), dir.file("fifo2"));
    let run = myinit(&format!(
        "mknod {fifo} p; mknod {null} c 1 3; mknod {fifo2} fifo; echo discarded > {null}; cat {null}"
    ));
    run.assert_ok();
    assert_eq!(run.stdout, "", "{run:?}");
    assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(fs::metadata(&fifo2).unwrap().file_type().is_fifo());
    let meta = fs::metadata(&null).unwrap();
    assert!(meta.file_type().is_char_device());
    assert_eq!(
        (
            nix::sys::stat::major(meta.rdev()),
            nix::sys::stat::minor(meta.rdev())
        ),
        (1, 3)
    );
    // Writes vanish, as into /dev/null.
    fs::write(&null, b"gone").unwrap();
    assert_eq!(fs::read(&null).unwrap(), b"");

    let run = myinit(&format!("mknod {} x 1 2; echo status=$?", dir.file("bad")));
    assert_eq!(run.stdout, "status=2\n");
    assert!(
        stderr_lines(&run)[0].starts_with("mknod: unknown type x"),
        "{run:?}"
    );
}

#[test]
fn mount_tmpfs_shows_in_the_table_and_umount_removes_it() {
    let dir = TempDir::new("fsys");
    let target = dir.file("mnt");
    fs::create_dir(&target).unwrap();
    let run = myinit_private_mounts(&format!(
        "mount -t tmpfs myinit-test {target} -o size=1m,noexec,nosuid; \
         mount; echo ---; /bin/cat /proc/self/mounts; echo ---; \
         umount {target}; mount"
    ));
    run.assert_ok();
    let parts: Vec<&str> = run.stdout.split("---\n").collect();
    assert_eq!(parts.len(), 3, "{run:?}");
    let listed = parts[0]
        .lines()
        .find(|l| l.starts_with(&format!("myinit-test on {target} type tmpfs (")))
        .unwrap_or_else(|| panic!("not listed: {}", parts[0]));
    for opt in ["noexec", "nosuid", "size=1024k"] {
        assert!(listed.contains(opt), "{opt} missing in {listed}");
    }
    // The kernel's own table agrees.
    let kernel = parts[1]
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(target.as_str()))
        .expect("in /proc/self/mounts");
    assert!(kernel.starts_with("myinit-test "), "{kernel}");
    assert!(
        !parts[2].contains(&target),
        "still mounted after umount: {}",
        parts[2]
    );
}

#[test]
fn mount_and_umount_errors_are_one_line() {
    let dir = TempDir::new("fsys");
    let run = myinit_private_mounts(&format!(
        "mount -t nosuchfs none {d}; echo s1=$?; umount {d}; echo s2=$?; mount -t; echo s3=$?",
        d = dir.dir().display()
    ));
    assert_eq!(run.stdout, "s1=1\ns2=1\ns3=2\n", "{run:?}");
    let lines = stderr_lines(&run);
    assert!(
        lines[0].starts_with("mount: none on ") && lines[0].contains("No such device"),
        "{lines:?}"
    );
    assert_eq!(
        lines[1],
        format!("umount: {}: not mounted", dir.dir().display())
    );
    assert!(lines[2].starts_with("mount: -t needs a TYPE"), "{lines:?}");
}

#[test]
fn insmod_of_a_missing_file_is_one_line_and_the_line_goes_on() {
    let dir = TempDir::new("fsys");
    let module = dir.file("9p.ko");
    let run = myinit(&format!("insmod {module}; echo status=$?; echo next"));
    assert_eq!(run.status, 0);
    assert_eq!(run.stdout, "status=1\nnext\n");
    assert_eq!(
        stderr_lines(&run),
        [format!("insmod: {module}: no such file")]
    );
    // Without the suffix, PATH.ko is tried as well.
    fs::write(&module, b"not an ELF module").unwrap();
    let run = myinit(&format!("insmod {}; echo status=$?", dir.file("9p")));
    assert_eq!(run.stdout, "status=1\n");
    let lines = stderr_lines(&run);
    assert_eq!(lines.len(), 1, "{run:?}");
    assert!(
        lines[0].starts_with(&format!("insmod: {module}: ")),
        "{lines:?}"
    );
}

#[test]
fn insmod_or_modprobe_of_a_fifo_fails_at_once() {
    // Found by the fuzz test: opening a FIFO nobody writes blocked for good.
    let dir = TempDir::new("fsys");
    let fifo = dir.file("mod.ko");
    nix::unistd::mkfifo(
        fifo.as_str(),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let started = Instant::now();
    let run = myinit(&format!("insmod {fifo}; echo status=$?"));
    assert!(started.elapsed() < Duration::from_secs(5), "insmod blocked");
    assert_eq!(run.stdout, "status=1\n");
    assert_eq!(
        stderr_lines(&run),
        [format!("insmod: {fifo}: not a regular file")]
    );
}

#[test]
fn dmesg_prints_the_newest_lines_without_blocking() {
    let marker = format!("myinit-dmesg-test-{}", unique("m"));
    fs::write("/dev/kmsg", format!("{marker}\n")).expect("write /dev/kmsg");
    let started = Instant::now();
    let run = myinit("dmesg 5; echo ---; dmesg 100; echo ---; dmesg");
    assert!(started.elapsed() < Duration::from_secs(5), "dmesg blocked");
    run.assert_ok();
    let parts: Vec<&str> = run.stdout.split("---\n").collect();
    let five: Vec<&str> = parts[0].lines().collect();
    assert!(!five.is_empty() && five.len() <= 5, "{five:?}");
    let well_formed = |l: &&str| {
        let Some(rest) = l.strip_prefix('[') else {
            return false;
        };
        let Some((ts, _)) = rest.split_once("] ") else {
            return false;
        };
        let Some((secs, usecs)) = ts.trim_start().split_once('.') else {
            return false;
        };
        secs.parse::<u64>().is_ok() && usecs.len() == 6 && usecs.parse::<u32>().is_ok()
    };
    assert!(five.iter().all(well_formed), "{five:?}");
    let all: Vec<&str> = parts[2].lines().collect();
    assert!(
        all.iter().any(|l| l.ends_with(&marker)),
        "marker not in dmesg"
    );
    // The newest lines, not the oldest: the marker was just written.
    let hundred: Vec<&str> = parts[1].lines().collect();
    assert!(hundred.len() <= 100);
    assert!(
        hundred.iter().any(|l| l.ends_with(&marker)),
        "marker not among the newest 100"
    );
    if all.len() > 100 {
        assert_ne!(hundred[0], all[0], "dmesg N shows the oldest lines");
    }
}

#[test]
fn ps_lists_pid_1_and_myinit_itself() {
    let child = Command::new(myinit_bin())
        .args(["-c", "ps"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows = parse_ps(&stdout);
    let init = rows.get(&1).expect("PID 1 listed");
    assert_eq!(init.ppid, 0);
    let me = rows
        .get(&pid)
        .unwrap_or_else(|| panic!("myinit ({pid}) not in {stdout}"));
    assert_eq!(me.ppid, std::process::id() as i32);
    assert_eq!(me.state, "R", "ps runs while it reads its own state");
    assert!(me.command.contains("myinit -c ps"), "{}", me.command);
    assert!(me.rss_kib > 0 && me.vsz_kib >= me.rss_kib, "{stdout}");
    // Kernel threads show as [name].
    assert!(
        rows.values().any(|r| r.command.starts_with("[kthreadd")),
        "{stdout}"
    );
}

struct PsRow {
    ppid: i32,
    state: String,
    rss_kib: u64,
    vsz_kib: u64,
    command: String,
}

fn parse_ps(stdout: &str) -> HashMap<i32, PsRow> {
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["PID", "PPID", "STATE", "RSS", "VSZ", "COMMAND"]);
    lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let pid = f.first()?.parse().ok()?;
            Some((
                pid,
                PsRow {
                    ppid: f[1].parse().unwrap(),
                    state: f[2].to_string(),
                    rss_kib: f[3].parse().unwrap(),
                    vsz_kib: f[4].parse().unwrap(),
                    command: f[5..].join(" "),
                },
            ))
        })
        .collect()
}

#[test]
fn orphans_are_reaped_and_leave_no_zombie() {
    // Outside PID 1 myinit makes itself a child subreaper, so orphans of
    // its children come to it as they would to PID 1.
    let mut command = Command::new(myinit_bin());
    command.args([
        "-c",
        "/bin/sh -c \"sleep 0.2 & exit 0\"; /bin/sleep 1.5; ps",
    ]);
    let child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows = parse_ps(&stdout);
    let zombies: Vec<_> = rows
        .iter()
        .filter(|(_, r)| r.ppid == pid && r.state == "Z")
        .map(|(p, r)| format!("{p} {}", r.command))
        .collect();
    assert!(zombies.is_empty(), "zombie children of myinit: {zombies:?}");
    let reaped: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("orphans reaped by myinit: "))
        .expect("orphan count line")
        .parse()
        .unwrap();
    assert!(
        reaped >= 1,
        "the orphaned sleep was not reaped by myinit: {stdout}"
    );
}

/// The kernel's own configuration, as the test reads it.
fn kernel_config() -> HashMap<String, String> {
    let raw = fs::read("/proc/config.gz").expect("/proc/config.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(raw.as_slice())
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("CONFIG_"))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Checks every CONFIG_ line against the real configuration; returns how
/// many lines there were and whether a needed option was reported missing.
fn check_kconfig_lines(stdout: &str, config: &HashMap<String, String>) -> (usize, bool) {
    let mut count = 0;
    let mut missing = false;
    for line in stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("CONFIG_"))
    {
        count += 1;
        let mut f = line.split_whitespace();
        let name = f.next().unwrap();
        let state = f.next().unwrap();
        match config.get(name).map(String::as_str) {
            Some("y") => assert_eq!(state, "y", "{line}"),
            Some("m") => assert_eq!(state, "m", "{line}"),
            _ => {
                assert!(state.starts_with("missing"), "{line}");
                missing |= line.contains("needed by");
            }
        }
    }
    (count, missing)
}

#[test]
fn kconfig_groups_report_what_the_kernel_has() {
    let config = kernel_config();
    for (group, expect) in [
        (
            "tracing",
            &[
                "CONFIG_FTRACE",
                "CONFIG_EVENT_TRACING",
                "CONFIG_DEBUG_INFO_BTF",
            ][..],
        ),
        (
            "net",
            &[
                "CONFIG_TUN",
                "CONFIG_VETH",
                "CONFIG_PACKET",
                "CONFIG_9P_FS",
                "CONFIG_IPV6",
            ][..],
        ),
        (
            "all",
            &[
                "CONFIG_FTRACE",
                "CONFIG_BPF_SYSCALL",
                "CONFIG_NET_SCH_INGRESS",
                "CONFIG_TUN",
            ][..],
        ),
    ] {
        let run = myinit(&format!("kconfig {group}"));
        for name in expect {
            assert!(
                run.stdout.contains(name),
                "{group}: {name} not shown: {run:?}"
            );
        }
        let (count, missing) = check_kconfig_lines(&run.stdout, &config);
        assert!(count >= expect.len(), "{run:?}");
        assert_eq!(run.status, i32::from(missing), "{group}: {run:?}");
        assert!(run.stderr.is_empty(), "{run:?}");
    }
}

#[test]
fn kconfig_names_the_command_that_needs_a_missing_option() {
    let dir = TempDir::new("fsys");
    let file = dir.file("config");
    fs::write(
        &file,
        "CONFIG_TUN=m\n# CONFIG_VETH is not set\nCONFIG_PACKET=y\nCONFIG_IPV6=y\n",
    )
    .unwrap();
    let run = myinit(&format!("kconfig net {file}"));
    assert_eq!(run.status, 1, "{run:?}");
    let line = |name: &str| {
        run.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not in {}", run.stdout))
            .to_string()
    };
    assert!(line("CONFIG_TUN").contains(" m "), "{}", line("CONFIG_TUN"));
    assert!(line("CONFIG_VETH").contains("missing"));
    assert!(line("CONFIG_9P_FS").contains("missing: needed by mount 9p"));
    assert!(line("CONFIG_PACKET").ends_with(" y"));

    let run = myinit(&format!("kconfig net {}; echo status=$?", dir.file("none")));
    assert_eq!(run.stdout, "status=1\n");
    assert_eq!(
        stderr_lines(&run),
        [format!(
            "kconfig: {}: No such file or directory",
            dir.file("none")
        )]
    );
    let run = myinit("kconfig nosuch; echo status=$?");
    assert_eq!(run.stdout, "status=2\n");
}

#[test]
fn kconfig_bpf_lists_its_options() {
    // The self-test line it also prints is checked in tests/ebpf.rs.
    let ns = Netns::new("kcb");
    let run = ns.myinit("kconfig bpf");
    let config = kernel_config();
    let (count, _) = check_kconfig_lines(&run.stdout, &config);
    assert_eq!(count, 7, "{run:?}");
    assert_eq!(run.status, 0, "{run:?}");
}

#[test]
fn kconfig_of_an_endless_or_huge_file_fails_fast_in_bounded_memory() {
    let dir = TempDir::new("fsys");
    // 64 GiB of zeros that take no disk: a config read whole would not fit.
    let sparse = dir.file("sparse");
    fs::File::create(&sparse)
        .unwrap()
        .set_len(64 << 30)
        .unwrap();
    for file in ["/dev/zero", sparse.as_str()] {
        let started = Instant::now();
        // 400 MB of address space: reading the file into memory fails.
        let out = Command::new("bash")
            .args([
                "-c",
                "ulimit -v 400000; exec \"$0\" -c \"kconfig net $1; echo status=\\$?\"",
                myinit_bin(),
                file,
            ])
            .output()
            .unwrap();
        let run = MyinitRun::from(out);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{file}: {run:?}"
        );
        assert_eq!(run.stdout, "status=1\n", "{file}: {run:?}");
        assert_eq!(
            stderr_lines(&run),
            [format!(
                "kconfig: {file}: line 1 is longer than 4096 bytes: not a kernel config"
            )]
        );
    }
}

/// As the original: `mount -t` makes a missing mount point (one level),
/// `mknod` its missing parent, and `mknod` of a node that exists says so
/// and is no error (the harness's startup.run makes /dev/net/tun again).
#[test]
fn mount_and_mknod_make_what_is_missing_as_the_original() {
    let dir = TempDir::new("fsys");
    let target = dir.file("made-by-mount");
    let node = dir.file("made-by-mknod/null");
    let run = myinit_private_mounts(&format!(
        "mount -t tmpfs none {target} -o size=1m; /bin/cat /proc/self/mounts; umount {target}; \
         mknod {node} c 1 3; mknod {node} c 1 3; echo status=$?"
    ));
    run.assert_ok();
    assert!(
        run.stdout
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(target.as_str())),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains(&format!("Device node {node} already exists\nstatus=0\n")),
        "{run:?}"
    );
    assert!(fs::metadata(&node).unwrap().file_type().is_char_device());
}
