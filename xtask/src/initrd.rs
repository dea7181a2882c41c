//! `cargo xtask initrd`: a gzip'd cpio (`newc`) holding the static myinit as
//! `/init`, the kernel modules stage 1 names (`initrd/stage1.run`) with
//! everything they depend on (and a `modules.dep` for `modprobe`), the files
//! under `initrd/` and the
//! user's `--add SRC:DEST` files. Written here in Rust, no external cpio.
//! Entries are sorted and every timestamp, owner and inode number is fixed,
//! so the same inputs give the same bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context as _};
use myinit_common::modules::{module_name, normalize, parse_builtin, ModulesDep};

use crate::kernel::{Kernel, KernelArgs};
use crate::{target_dir, workspace_root};

/// Stage 1's script (compiled into /init): the modules it loads are the
/// ones the initrd carries, see `Stage1Modules`.
const STAGE1_SCRIPT: &str = "stage1.run";

pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

#[derive(clap::Args, Debug, Clone, Default)]
pub struct InitrdArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Also put SRC (a file or a directory) at DEST in the initrd; repeatable.
    #[arg(long = "add", value_name = "SRC:DEST")]
    pub add: Vec<String>,
    /// Where to write it (default: target/vm/initrd.img).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Use this static binary as /init instead of building myinit.
    #[arg(long, value_name = "FILE")]
    pub init: Option<PathBuf>,
}

pub fn default_output() -> PathBuf {
    target_dir().join("vm").join("initrd.img")
}

/// `cargo xtask initrd`.
pub fn run(args: &InitrdArgs) -> anyhow::Result<()> {
    let kernel = args.kernel.resolve()?;
    let output = args.output.clone().unwrap_or_else(default_output);
    build(&kernel, &args.add, args.init.as_deref(), &output)?;
    Ok(())
}

/// Builds the musl myinit (unless `init` names a binary) and writes the
/// initrd to `output`; returns its size.
pub fn build(
    kernel: &Kernel,
    add: &[String],
    init: Option<&Path>,
    output: &Path,
) -> anyhow::Result<u64> {
    let init = match init {
        Some(path) => {
            let data = std::fs::read(path).with_context(|| format!("--init {}", path.display()))?;
            ensure!(
                !elf_has_interpreter(&data)?,
                "--init {}: dynamically linked; /init must be static",
                path.display()
            );
            path.to_path_buf()
        }
        None => build_myinit()?,
    };
    let mut archive = Archive::default();
    for dir in ["dev", "proc", "sys", "tmp", "run", "mnt/host", "root"] {
        archive.dir(dir);
    }
    // The kernel opens /dev/console for /init's fds 0-2 before devtmpfs exists.
    archive.insert("dev/console", Node::CharDev { major: 5, minor: 1 });
    archive.file("init", std::fs::read(&init)?, true);

    let own = workspace_root().join("initrd");
    let stage1 = Stage1Modules::read(&own.join(STAGE1_SCRIPT))?;
    let modules = match &kernel.modules {
        Some(dir) => Some(ModuleSet::resolve(dir, &stage1.wanted)?),
        None => None,
    };
    if let Some(set) = &modules {
        let base = format!("lib/modules/{}", kernel.version);
        for path in &set.files {
            let data = std::fs::read(set.root.join(path))
                .with_context(|| format!("reading {}", set.root.join(path).display()))?;
            archive.file(&format!("{base}/{path}"), data, false);
        }
        archive.file(
            &format!("{base}/modules.dep"),
            set.modules_dep().into_bytes(),
            false,
        );
        for name in &stage1.at_root {
            if let Some(path) = set.deps.path(name) {
                archive.insert(
                    &format!("{name}.ko"),
                    Node::Symlink(format!("{base}/{path}")),
                );
            }
        }
        if let Some(builtin) = &set.builtin_file {
            archive.file(&format!("{base}/modules.builtin"), builtin.clone(), false);
        }
    }

    // For `kconfig` (Debian's kernel has no /proc/config.gz).
    let config = kernel
        .image
        .with_file_name(format!("config-{}", kernel.version));
    if let Ok(data) = std::fs::read(&config) {
        archive.file(&format!("boot/config-{}", kernel.version), data, false);
        archive.insert(
            "boot/config",
            Node::Symlink(format!("config-{}", kernel.version)),
        );
    }

    if own.is_dir() {
        archive.tree(&own, "")?;
        // /init has it compiled in; a copy here would only invite editing
        // a file that nothing reads.
        archive.remove(STAGE1_SCRIPT);
    }
    for spec in add {
        let (src, dest) = spec
            .split_once(':')
            .with_context(|| format!("--add {spec}: expected SRC:DEST"))?;
        let src = Path::new(src);
        let dest = dest.trim_start_matches('/');
        ensure!(
            !dest.is_empty(),
            "--add {spec}: DEST must name a path in the initrd"
        );
        if src.is_dir() {
            archive.tree(src, dest)?;
        } else {
            let data = std::fs::read(src).with_context(|| format!("--add {}", src.display()))?;
            archive.file(dest, data, is_executable(src));
        }
    }

    let bytes = gzip(&archive.to_cpio())?;
    if let Some(parent) = output.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Write then rename: a VM booting from the previous file never sees half of it.
    let scratch = output.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&scratch, &bytes).with_context(|| format!("writing {}", scratch.display()))?;
    std::fs::rename(&scratch, output).with_context(|| format!("writing {}", output.display()))?;
    let size = bytes.len() as u64;
    eprintln!(
        "xtask: initrd {} ({} KiB, kernel {}{})",
        output.display(),
        size / 1024,
        kernel.version,
        modules
            .as_ref()
            .map(|m| format!(", {} modules", m.files.len()))
            .unwrap_or_default()
    );
    Ok(size)
}

/// `cargo build --release` for musl; returns the static binary.
pub fn build_myinit() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: building myinit for {MUSL_TARGET} (release)");
    crate::run(
        &cargo,
        &[
            "build",
            "--quiet",
            "--release",
            "--target",
            MUSL_TARGET,
            "-p",
            "myinit",
        ],
    )
    .context("building the static myinit (is the target installed? `cargo xtask setup`)")?;
    let bin = target_dir()
        .join(MUSL_TARGET)
        .join("release")
        .join("myinit");
    let data = std::fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    ensure!(
        !elf_has_interpreter(&data)?,
        "{} is dynamically linked; /init must be static",
        bin.display()
    );
    Ok(bin)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

fn gzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    // No file name and mtime 0 in the gzip header: the bytes depend on the data only.
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    encoder.write_all(data)?;
    Ok(encoder.finish()?)
}

/// One file-system object in the archive.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Dir,
    File { data: Vec<u8>, executable: bool },
    Symlink(String),
    CharDev { major: u32, minor: u32 },
}

/// The archive's tree: paths without a leading `/`, sorted (a parent sorts
/// before its children because it is their prefix).
#[derive(Debug, Default)]
pub struct Archive {
    entries: BTreeMap<String, Node>,
}

impl Archive {
    pub fn insert(&mut self, path: &str, node: Node) {
        let path = path.trim_matches('/');
        let mut parent = Path::new(path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            self.entries
                .entry(p.to_string_lossy().into_owned())
                .or_insert(Node::Dir);
            parent = p.parent();
        }
        self.entries.insert(path.to_string(), node);
    }

    pub fn remove(&mut self, path: &str) {
        self.entries.remove(path.trim_matches('/'));
    }

    pub fn dir(&mut self, path: &str) {
        self.insert(path, Node::Dir);
    }

    pub fn file(&mut self, path: &str, data: Vec<u8>, executable: bool) {
        self.insert(path, Node::File { data, executable });
    }

    /// Adds every file under `src` at `dest` (sorted walk).
    pub fn tree(&mut self, src: &Path, dest: &str) -> anyhow::Result<()> {
        let mut names: Vec<_> = std::fs::read_dir(src)
            .with_context(|| format!("reading {}", src.display()))?
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for name in names {
            let path = src.join(&name);
            let name = name.to_string_lossy();
            let target = if dest.is_empty() {
                name.into_owned()
            } else {
                format!("{}/{name}", dest.trim_end_matches('/'))
            };
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                self.dir(&target);
                self.tree(&path, &target)?;
            } else if meta.file_type().is_symlink() {
                let link = std::fs::read_link(&path)?;
                self.insert(&target, Node::Symlink(link.to_string_lossy().into_owned()));
            } else {
                let data =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                self.file(&target, data, is_executable(&path));
            }
        }
        Ok(())
    }

    /// The `newc` cpio stream: owner root, mtime 0, inodes numbered in order.
    pub fn to_cpio(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (ino, (path, node)) in self.entries.iter().enumerate() {
            let (mode, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match node {
                Node::Dir => (0o040755, 2, &[], (0, 0)),
                Node::File { data, executable } => (
                    if *executable { 0o100755 } else { 0o100644 },
                    1,
                    data,
                    (0, 0),
                ),
                Node::Symlink(target) => (0o120777, 1, target.as_bytes(), (0, 0)),
                Node::CharDev { major, minor } => (0o020600, 1, &[], (*major, *minor)),
            };
            cpio_entry(&mut out, ino as u32 + 1, mode, nlink, rdev, path, data);
        }
        cpio_entry(&mut out, 0, 0, 1, (0, 0), "TRAILER!!!", &[]);
        out
    }
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn cpio_entry(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    rdev: (u32, u32),
    name: &str,
    data: &[u8],
) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime
        data.len() as u32,
        0, // devmajor
        0, // devminor
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0, // check (unused by newc)
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

/// The modules named by stage 1's `insmod /NAME.ko` and `modprobe` lines.
///
/// Read from the script itself so that the list stage 1 loads and the list
/// the initrd ships cannot drift apart. Module lines are held to plain
/// words so that this reading and myinit's shell always agree.
#[derive(Debug, Default, PartialEq)]
pub struct Stage1Modules {
    /// Every module named, in script order, each once.
    pub wanted: Vec<String>,
    /// The `insmod /NAME.ko` ones: the initrd links these at its root.
    pub at_root: Vec<String>,
}

impl Stage1Modules {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| path.display().to_string())
    }

    pub fn parse(script: &str) -> anyhow::Result<Self> {
        let mut found = Stage1Modules::default();
        for (n, line) in script.lines().enumerate() {
            let n = n + 1;
            let words: Vec<&str> = line
                .split_whitespace()
                .take_while(|w| !w.starts_with('#'))
                .collect();
            let Some((&command, args)) = words.split_first() else {
                continue;
            };
            if command != "insmod" && command != "modprobe" {
                continue;
            }
            if let Some(bad) = words
                .iter()
                .find(|w| w.contains(['\'', '"', '$', ';', '\\', '<', '>']))
            {
                bail!("line {n}: `{bad}`: module lines take plain words only");
            }
            let mut add = |name: String, at_root: bool| {
                if at_root && !found.at_root.contains(&name) {
                    found.at_root.push(name.clone());
                }
                if !found.wanted.contains(&name) {
                    found.wanted.push(name);
                }
            };
            if command == "insmod" {
                let file = args.first().copied().unwrap_or_default();
                match module_name(file) {
                    Some(name) if file.rfind('/') == Some(0) => add(name, true),
                    _ => bail!("line {n}: insmod takes /NAME.ko (a module at the initrd's root)"),
                }
                continue;
            }
            for arg in args {
                if let Some(flags) = arg.strip_prefix('-') {
                    ensure!(
                        flags.chars().all(|c| "aqv".contains(c)),
                        "line {n}: modprobe {arg}: only -a, -q and -v fit a module line"
                    );
                } else if !arg.contains('=') {
                    add(normalize(arg), false);
                }
            }
        }
        ensure!(!found.wanted.is_empty(), "names no kernel module");
        Ok(found)
    }
}

/// A module file's ELF: Debian's 6.12 ships them xz-compressed (the
/// kernel decompresses them itself at load), some kernels gzip them.
fn module_elf(path: &Path) -> anyhow::Result<Vec<u8>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path.to_string_lossy();
    let mut elf = Vec::new();
    if name.ends_with(".xz") {
        lzma_rs::xz_decompress(&mut &data[..], &mut elf)
            .map_err(|e| anyhow::anyhow!("{}: xz: {e}", path.display()))?;
    } else if name.ends_with(".gz") {
        use std::io::Read as _;
        flate2::read::GzDecoder::new(&data[..])
            .read_to_end(&mut elf)
            .with_context(|| format!("{}: gzip", path.display()))?;
    } else if name.ends_with(".zst") {
        bail!(
            "{}: zstd-compressed modules need the kernel's modules.dep (run depmod on that tree)",
            path.display()
        );
    } else {
        elf = data;
    }
    Ok(elf)
}

/// The modules to ship: the wanted ones and their dependencies.
#[derive(Debug)]
pub struct ModuleSet {
    root: PathBuf,
    /// Paths relative to `root`, sorted.
    files: Vec<String>,
    /// Each shipped module with its direct dependencies.
    deps: ModulesDep,
    builtin_file: Option<Vec<u8>>,
}

impl ModuleSet {
    pub fn resolve(root: &Path, wanted: &[String]) -> anyhow::Result<Self> {
        let mut index: HashMap<String, String> = HashMap::new();
        walk_modules(root, root, &mut index)?;
        let builtin_file = std::fs::read(root.join("modules.builtin")).ok();
        let builtin = parse_builtin(&String::from_utf8_lossy(
            builtin_file.as_deref().unwrap_or_default(),
        ));
        // depmod's file if there is one (e.g. compressed modules); else .modinfo.
        let depmod = std::fs::read_to_string(root.join("modules.dep"))
            .ok()
            .map(|text| ModulesDep::parse(&text));

        let mut deps = ModulesDep::default();
        let mut files = BTreeSet::new();
        let mut todo: Vec<String> = Vec::new();
        for name in wanted {
            let name = normalize(name);
            match index.get(&name) {
                Some(path) => todo.push(path.clone()),
                None if builtin.contains(&name) => {}
                None => eprintln!(
                    "xtask: warning: module {name} is neither in {} nor built in",
                    root.display()
                ),
            }
        }
        while let Some(path) = todo.pop() {
            if !files.insert(path.clone()) {
                continue;
            }
            let direct: Vec<String> = match &depmod {
                Some(map) => map.deps_of(&path).to_vec(),
                None => {
                    let data = module_elf(&root.join(&path))?;
                    let names = modinfo_depends(&data).with_context(|| {
                        format!("{}: cannot read .modinfo", root.join(&path).display())
                    })?;
                    let mut paths = Vec::new();
                    for n in names {
                        match index.get(&n) {
                            Some(p) => paths.push(p.clone()),
                            None => {
                                bail!("{path} depends on {n}, which is not in {}", root.display())
                            }
                        }
                    }
                    paths
                }
            };
            todo.extend(direct.iter().cloned());
            deps.insert(&path, direct);
        }
        Ok(ModuleSet {
            root: root.to_path_buf(),
            files: files.into_iter().collect(),
            deps,
            builtin_file,
        })
    }

    /// `modules.dep` in depmod's format: each module's dependencies, all of
    /// them, listed so that loading from the last to the first works.
    pub fn modules_dep(&self) -> String {
        self.deps.to_text()
    }
}

fn walk_modules(
    root: &Path,
    dir: &Path,
    index: &mut HashMap<String, String>,
) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk_modules(root, &path, index)?;
        } else if let Some(name) = module_name(&entry.file_name().to_string_lossy()) {
            let rel = path.strip_prefix(root)?.to_string_lossy().into_owned();
            index.entry(name).or_insert(rel);
        }
    }
    Ok(())
}

fn ensure_elf64(data: &[u8]) -> anyhow::Result<()> {
    ensure!(
        data.len() >= 64 && &data[..4] == b"\x7fELF" && data[4] == 2,
        "not a 64-bit ELF file"
    );
    Ok(())
}

/// True if a 64-bit ELF file asks for a dynamic loader (PT_INTERP).
fn elf_has_interpreter(data: &[u8]) -> anyhow::Result<bool> {
    ensure_elf64(data)?;
    let phoff = u64_at(data, 0x20)? as usize;
    let phentsize = u16_at(data, 0x36)? as usize;
    let phnum = u16_at(data, 0x38)? as usize;
    for i in 0..phnum {
        if u32_at(data, phoff + i * phentsize)? == 3 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The `depends=` list of a module's `.modinfo` section.
pub fn modinfo_depends(data: &[u8]) -> anyhow::Result<Vec<String>> {
    ensure_elf64(data)?;
    let shoff = u64_at(data, 0x28)? as usize;
    let shentsize = u16_at(data, 0x3a)? as usize;
    let shnum = u16_at(data, 0x3c)? as usize;
    let shstrndx = u16_at(data, 0x3e)? as usize;
    let section = |i: usize| -> anyhow::Result<(u32, usize, usize)> {
        let h = shoff + i * shentsize;
        Ok((
            u32_at(data, h)?,
            u64_at(data, h + 0x18)? as usize,
            u64_at(data, h + 0x20)? as usize,
        ))
    };
    let (_, stroff, strsize) = section(shstrndx)?;
    let names = data
        .get(stroff..stroff + strsize)
        .context("bad section names")?;
    for i in 0..shnum {
        let (name, off, size) = section(i)?;
        let name = names.get(name as usize..).unwrap_or_default();
        if name.starts_with(b".modinfo\0") {
            let info = data.get(off..off + size).context("bad .modinfo")?;
            for field in info.split(|&b| b == 0) {
                if let Some(list) = field.strip_prefix(b"depends=") {
                    return Ok(String::from_utf8_lossy(list)
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| s.replace('-', "_"))
                        .collect());
                }
            }
            return Ok(Vec::new());
        }
    }
    bail!("no .modinfo section")
}

fn u16_at(d: &[u8], at: usize) -> anyhow::Result<u16> {
    Ok(u16::from_le_bytes(
        d.get(at..at + 2).context("truncated ELF")?.try_into()?,
    ))
}

fn u32_at(d: &[u8], at: usize) -> anyhow::Result<u32> {
    Ok(u32::from_le_bytes(
        d.get(at..at + 4).context("truncated ELF")?.try_into()?,
    ))
}

fn u64_at(d: &[u8], at: usize) -> anyhow::Result<u64> {
    Ok(u64::from_le_bytes(
        d.get(at..at + 8).context("truncated ELF")?.try_into()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(entry: &[u8], i: usize) -> u32 {
        let at = 6 + i * 8;
        u32::from_str_radix(std::str::from_utf8(&entry[at..at + 8]).unwrap(), 16).unwrap()
    }

    #[test]
    fn cpio_newc_entries_are_aligned_sorted_and_end_with_a_trailer() {
        let mut a = Archive::default();
        a.file("b/x", b"hello".to_vec(), true);
        a.file("a", b"1".to_vec(), false);
        a.insert("dev/console", Node::CharDev { major: 5, minor: 1 });
        let out = a.to_cpio();
        assert_eq!(out.len() % 4, 0);
        // Entries in path order; the parent dir "b" was added implicitly.
        let mut names = Vec::new();
        let mut at = 0;
        while at < out.len() {
            let e = &out[at..];
            assert_eq!(&e[..6], b"070701");
            let size = field(e, 6) as usize;
            let namesize = field(e, 11) as usize;
            let name = std::str::from_utf8(&e[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            if name == "b/x" {
                assert_eq!(field(e, 1), 0o100755);
                let data_at = (110 + namesize).div_ceil(4) * 4;
                assert_eq!(&e[data_at..data_at + size], b"hello");
            }
            if name == "dev/console" {
                assert_eq!((field(e, 1), field(e, 9), field(e, 10)), (0o020600, 5, 1));
            }
            assert_eq!(field(e, 5), 0, "mtime");
            names.push(name);
            at += ((110 + namesize).div_ceil(4) * 4 + size).div_ceil(4) * 4;
        }
        assert_eq!(names, ["a", "b", "b/x", "dev", "dev/console", "TRAILER!!!"]);
    }

    #[test]
    fn module_names_normalise_dashes_and_extensions() {
        assert_eq!(
            module_name("kernel/net/9p/9pnet_virtio.ko").as_deref(),
            Some("9pnet_virtio")
        );
        assert_eq!(
            module_name("kernel/x/nf-defrag.ko.zst").as_deref(),
            Some("nf_defrag")
        );
        assert_eq!(module_name("modules.dep"), None);
    }

    #[test]
    fn modules_dep_lists_the_closure_deepest_last() {
        let mut deps = ModulesDep::default();
        deps.insert("9p.ko", vec!["9pnet.ko".into(), "fscache.ko".into()]);
        deps.insert("fscache.ko", vec!["netfs.ko".into()]);
        deps.insert("netfs.ko", vec![]);
        deps.insert("9pnet.ko", vec![]);
        let set = ModuleSet {
            root: PathBuf::new(),
            files: deps.paths().map(str::to_string).collect(),
            deps,
            builtin_file: None,
        };
        let text = set.modules_dep();
        let line = text.lines().find(|l| l.starts_with("9p.ko:")).unwrap();
        let p9: Vec<&str> = line["9p.ko:".len()..].split_whitespace().collect();
        // Loading from the end: netfs before fscache; all of the closure listed.
        let pos = |m: &str| p9.iter().position(|x| *x == m).unwrap();
        assert!(pos("netfs.ko") > pos("fscache.ko"));
        assert_eq!(p9.len(), 3);
    }

    #[test]
    fn stage1_script_is_the_module_list_and_names_the_root_links() {
        let path = workspace_root().join("initrd").join(STAGE1_SCRIPT);
        let found = Stage1Modules::read(&path).unwrap();
        assert_eq!(found.at_root, ["netfs", "9pnet", "9pnet_virtio", "9p"]);
        // Every module stage 1 loads, in its order, each once: the old
        // MODULES table plus fscache, which stage 1 loads by name.
        assert_eq!(
            found.wanted,
            [
                "virtio_pci",
                "netfs",
                "9pnet",
                "9pnet_virtio",
                "fscache",
                "9p",
                "virtio_net",
                "virtio_console",
                "tun",
                "veth",
                "sch_ingress",
                "cls_bpf",
                "nf_defrag_ipv6",
            ]
        );
    }

    #[test]
    fn stage1_module_lines_read_names_options_and_params() {
        let found = Stage1Modules::parse(
            "mount proc # not a module line\n\
             insmod /a-b.ko\n\
             # modprobe -q commented\n\
             modprobe -qv c opt=1 # trailing\n\
             modprobe -q -a d a_b c\n",
        )
        .unwrap();
        assert_eq!(found.wanted, ["a_b", "c", "d"]);
        assert_eq!(found.at_root, ["a_b"]);
    }

    #[test]
    fn stage1_module_lines_that_xtask_would_misread_are_refused() {
        for (script, want) in [
            (
                "modprobe -q $M\n",
                "line 1: `$M`: module lines take plain words only",
            ),
            ("\ninsmod /lib/x.ko\n", "line 2: insmod takes /NAME.ko"),
            ("insmod\n", "line 1: insmod takes /NAME.ko"),
            (
                "modprobe -d /r x\n",
                "line 1: modprobe -d: only -a, -q and -v",
            ),
            ("mount proc\n", "names no kernel module"),
        ] {
            let err = Stage1Modules::parse(script).unwrap_err().to_string();
            assert!(err.starts_with(want), "{script:?}: {err}");
        }
    }
}
