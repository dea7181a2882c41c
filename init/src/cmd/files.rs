//! File commands: cat, cp, ls, mkdir, mknod. Small on purpose: the VM's
//! initrd has no coreutils, so these cover what scripts need.

use clap::{CommandFactory, Parser};
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::{makedev, mknod as mknod_at, Mode, SFlag};

use super::{usage, CommandSpec, Interrupted};
use crate::shell::Ctx;
use crate::util::io_error;

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "cat",
        usage: "cat [FILE...]",
        summary: "print files, or standard input (cat < FILE)",
        help: "Files are streamed, so large files and FIFOs work. Without FILE (or\nwith -) standard input is read until its end; Ctrl-C stops it.",
        run: cat,
        cli: None,
    },
    CommandSpec {
        name: "cp",
        usage: "",
        summary: "copy a file (DST may be a directory)",
        help: "The copy keeps the permission bits of SRC.",
        run: cp,
        cli: Some(CpArgs::command),
    },
    CommandSpec {
        name: "ls",
        usage: "",
        summary: "list directories and files, sorted by name",
        help: "",
        run: ls,
        cli: Some(LsArgs::command),
    },
    CommandSpec {
        name: "mkdir",
        usage: "",
        summary: "create directories",
        help: "",
        run: mkdir,
        cli: Some(MkdirArgs::command),
    },
    CommandSpec {
        name: "mknod",
        usage: "",
        summary: "create a device node (c, b) or a FIFO (p)",
        help: "Example: mknod /dev/null c 1 3",
        run: mknod,
        cli: Some(MknodArgs::command),
    },
];

#[derive(Parser, Debug)]
#[command(name = "cp", disable_help_flag = true, override_usage = "cp SRC DST")]
struct CpArgs {
    /// the file to copy, and where to (a file or a directory)
    #[arg(value_name = "SRC DST")]
    paths: Vec<String>,
}

#[derive(Parser, Debug)]
#[command(
    name = "ls",
    disable_help_flag = true,
    override_usage = "ls [-l] [-a] [PATH...]"
)]
struct LsArgs {
    /// long format: mode, links, size (or MAJ, MIN for devices),
    /// modification time (UTC), name, and -> target for symlinks
    #[arg(short = 'l')]
    long: bool,
    /// also show names starting with a dot
    #[arg(short = 'a')]
    all: bool,
    /// what to list (default: the working directory)
    #[arg(value_name = "PATH")]
    paths: Vec<String>,
}

#[derive(Parser, Debug)]
#[command(
    name = "mkdir",
    disable_help_flag = true,
    override_usage = "mkdir [-p] DIR..."
)]
struct MkdirArgs {
    /// create missing parents too; an existing directory is no error
    #[arg(short = 'p')]
    parents: bool,
    /// the directories to create
    #[arg(value_name = "DIR")]
    dirs: Vec<String>,
}

#[derive(Parser, Debug)]
#[command(
    name = "mknod",
    disable_help_flag = true,
    override_usage = "mknod PATH c|char|b|block MAJ MIN\nmknod PATH p"
)]
struct MknodArgs {
    /// the node to create, its type, and for devices the major and minor numbers
    #[arg(value_name = "PATH TYPE [MAJ MIN]")]
    args: Vec<String>,
}

/// Copies `reader` to the command's output in chunks. Waits for input with
/// poll so Ctrl-C can stop a read from the console or a FIFO.
fn stream(ctx: &mut Ctx<'_>, reader: &mut File) -> anyhow::Result<()> {
    let interrupts = ctx.interrupts();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        loop {
            if interrupts.has_changed().unwrap_or(false) {
                return Err(Interrupted.into());
            }
            let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(200u16)) {
                Ok(0) => continue,
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(anyhow!("poll: {}", e.desc())),
            }
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(anyhow!("{}", io_error(&e))),
        };
        ctx.out.write_all(&buf[..n])?;
    }
}

fn cat(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    if args.is_empty() {
        let mut input = ctx.input.open()?;
        stream(ctx, &mut input).map_err(|e| with_context("stdin", e))?;
        return Ok(0);
    }
    let mut failures = Vec::new();
    for name in args {
        let result = if name == "-" {
            ctx.input.open().map_err(anyhow::Error::from)
        } else {
            crate::util::open_interruptible(
                Path::new(name),
                fs::OpenOptions::new().read(true),
                ctx.interrupts(),
            )
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::Interrupted => Interrupted.into(),
                _ => anyhow!("{}", io_error(&e)),
            })
        }
        .and_then(|mut file| {
            if file.metadata().is_ok_and(|m| m.is_dir()) {
                return Err(anyhow!("is a directory"));
            }
            stream(ctx, &mut file)
        });
        match result {
            Ok(()) => {}
            Err(e) if e.is::<Interrupted>() => return Err(e),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    finish(failures)
}

/// Interruption stays `Interrupted` (status 130); other errors get the name.
fn with_context(name: &str, e: anyhow::Error) -> anyhow::Error {
    if e.is::<Interrupted>() {
        e
    } else {
        anyhow!("{name}: {e}")
    }
}

/// Commands that go on past a bad argument report all failures on one line.
fn finish(failures: Vec<String>) -> anyhow::Result<i32> {
    if failures.is_empty() {
        Ok(0)
    } else {
        Err(anyhow!("{}", failures.join("; ")))
    }
}

fn cp(_ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let args: CpArgs = super::parse_args("cp", args)?;
    let [src, dst] = args.paths.as_slice() else {
        return Err(usage("expected SRC and DST"));
    };
    let src_path = Path::new(src);
    let meta = fs::metadata(src_path).map_err(|e| anyhow!("{src}: {}", io_error(&e)))?;
    if meta.is_dir() {
        anyhow::bail!("{src}: is a directory (cp copies files only)");
    }
    // A FIFO or device would block or never end: cp copies regular files.
    if !meta.is_file() {
        anyhow::bail!("{src}: not a regular file (cp copies regular files only)");
    }
    let mut target = PathBuf::from(dst);
    if target.is_dir() {
        let Some(base) = src_path.file_name() else {
            anyhow::bail!("{src}: has no file name");
        };
        target.push(base);
    }
    // Copying a file onto itself would truncate it first: refuse.
    if let Ok(existing) = fs::metadata(&target) {
        if existing.dev() == meta.dev() && existing.ino() == meta.ino() {
            anyhow::bail!("{src} and {} are the same file", target.display());
        }
    }
    fs::copy(src_path, &target)
        .map_err(|e| anyhow!("{src} -> {}: {}", target.display(), io_error(&e)))?;
    Ok(0)
}

fn ls(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let LsArgs {
        long,
        all,
        mut paths,
    } = super::parse_args("ls", args)?;
    if paths.is_empty() {
        paths.push(".".into());
    }
    paths.sort();
    let mut failures = Vec::new();
    // As ls does: files given by name first, then each directory's listing.
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for path in &paths {
        // -l shows a symlink itself; a plain listing follows it.
        let meta = if long {
            fs::symlink_metadata(path)
        } else {
            fs::metadata(path)
        };
        match meta {
            Ok(m) if m.is_dir() => dirs.push(path.clone()),
            Ok(m) => files.push((path.clone(), m)),
            Err(e) => failures.push(format!("{path}: {}", io_error(&e))),
        }
    }
    let mut text = String::new();
    for (name, meta) in &files {
        text.push_str(&entry_line(Path::new(name), name, meta, long));
    }
    let headers = files.len() + dirs.len() > 1 || !failures.is_empty();
    for (i, dir) in dirs.iter().enumerate() {
        if headers {
            if i > 0 || !files.is_empty() {
                text.push('\n');
            }
            text.push_str(&format!("{dir}:\n"));
        }
        match list_dir(Path::new(dir), long, all) {
            Ok(lines) => text.push_str(&lines),
            Err(e) => failures.push(format!("{dir}: {}", io_error(&e))),
        }
        // Long listings can be big: hand over what we have.
        ctx.out.write_all(text.as_bytes())?;
        text.clear();
    }
    ctx.out.write_all(text.as_bytes())?;
    finish(failures)
}

fn list_dir(dir: &Path, long: bool, all: bool) -> io::Result<String> {
    let mut entries: Vec<(String, PathBuf)> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| all || !name.starts_with('.'))
        .collect();
    entries.sort();
    let mut text = String::new();
    for (name, path) in entries {
        // An entry may vanish while we list; skip it.
        if let Ok(meta) = fs::symlink_metadata(&path) {
            text.push_str(&entry_line(&path, &name, &meta, long));
        }
    }
    Ok(text)
}

fn entry_line(path: &Path, name: &str, meta: &Metadata, long: bool) -> String {
    if !long {
        return format!("{name}\n");
    }
    let ft = meta.file_type();
    let size = if ft.is_char_device() || ft.is_block_device() {
        let rdev = meta.rdev();
        format!(
            "{}, {}",
            nix::sys::stat::major(rdev),
            nix::sys::stat::minor(rdev)
        )
    } else {
        meta.len().to_string()
    };
    let mut line = format!(
        "{} {:>3} {:>10} {} {name}",
        mode_string(meta.mode()),
        meta.nlink(),
        size,
        format_utc(meta.mtime()),
    );
    if ft.is_symlink() {
        if let Ok(target) = fs::read_link(path) {
            line.push_str(&format!(" -> {}", target.display()));
        }
    }
    line.push('\n');
    line
}

/// `ls -l`'s mode column: type letter and rwx triplets with s/S/t/T.
pub fn mode_string(mode: u32) -> String {
    let kind = match mode & libc::S_IFMT {
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        libc::S_IFIFO => 'p',
        libc::S_IFSOCK => 's',
        _ => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    let special = [
        (libc::S_ISUID, 's'),
        (libc::S_ISGID, 's'),
        (libc::S_ISVTX, 't'),
    ];
    for (i, (bit, letter)) in special.iter().enumerate() {
        let shift = 6 - 3 * i as u32;
        let rwx = (mode >> shift) & 7;
        s.push(if rwx & 4 != 0 { 'r' } else { '-' });
        s.push(if rwx & 2 != 0 { 'w' } else { '-' });
        let exec = rwx & 1 != 0;
        s.push(match (mode & bit != 0, exec) {
            (true, true) => *letter,
            (true, false) => letter.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// `YYYY-MM-DD HH:MM` in UTC: the VM has no time zone data.
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn mkdir(_ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let MkdirArgs { parents, dirs } = super::parse_args("mkdir", args)?;
    if dirs.is_empty() {
        return Err(usage("expected DIR"));
    }
    let mut failures = Vec::new();
    for dir in &dirs {
        let result = if parents {
            fs::create_dir_all(dir)
        } else {
            fs::create_dir(dir)
        };
        if let Err(e) = result {
            failures.push(format!("{dir}: {}", io_error(&e)));
        }
    }
    finish(failures)
}

fn mknod(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let MknodArgs { args } = super::parse_args("mknod", args)?;
    let (path, kind, numbers) = match args.as_slice() {
        [path, kind, rest @ ..] => (path, kind.as_str(), rest),
        _ => return Err(usage("expected PATH and TYPE")),
    };
    let kind = match kind {
        "c" | "char" | "u" => SFlag::S_IFCHR,
        "b" | "block" => SFlag::S_IFBLK,
        "p" | "fifo" => SFlag::S_IFIFO,
        other => return Err(usage(format!("unknown type {other} (c, b or p)"))),
    };
    let dev = match (kind, numbers) {
        (SFlag::S_IFIFO, []) => 0,
        (SFlag::S_IFIFO, _) => return Err(usage("a FIFO (p) takes no MAJ MIN")),
        (_, [major, minor]) => {
            let number = |s: &String| {
                s.parse::<u64>()
                    .map_err(|_| usage(format!("not a device number: {s}")))
            };
            makedev(number(major)?, number(minor)?)
        }
        _ => return Err(usage("expected MAJ and MIN")),
    };
    // As the original: the parent directory is made if missing (one
    // level), and a node that exists already is said and no error.
    if let Some(parent) = std::path::Path::new(path).parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            let _ = std::fs::create_dir(parent);
        }
    }
    match mknod_at(path.as_str(), kind, Mode::from_bits_truncate(0o666), dev) {
        Ok(()) => Ok(0),
        Err(nix::errno::Errno::EEXIST) => {
            writeln!(ctx.out, "Device node {path} already exists")?;
            Ok(0)
        }
        Err(e) => Err(anyhow!("{path}: {}", e.desc())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_strings_match_ls() {
        assert_eq!(mode_string(libc::S_IFDIR | 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(libc::S_IFREG | 0o644), "-rw-r--r--");
        assert_eq!(mode_string(libc::S_IFDIR | 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(libc::S_IFREG | 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(libc::S_IFREG | 0o2644), "-rw-r-Sr--");
        assert_eq!(mode_string(libc::S_IFCHR | 0o666), "crw-rw-rw-");
        assert_eq!(mode_string(libc::S_IFLNK | 0o777), "lrwxrwxrwx");
        assert_eq!(mode_string(libc::S_IFIFO | 0o600), "prw-------");
    }

    #[test]
    fn utc_dates_are_civil_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00");
        assert_eq!(format_utc(1_761_596_197), "2025-10-27 20:16");
        assert_eq!(format_utc(-60), "1969-12-31 23:59");
    }
}
