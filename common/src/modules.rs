//! Kernel module names, `modules.dep` and `modules.builtin`: the one
//! reading of them, used by `cargo xtask initrd` (which writes the initrd's
//! `modules.dep`) and by myinit's `modprobe` (which follows it).
//!
//! It lives here rather than in either binary because both need the exact
//! same rules (a name that xtask ships must be the name modprobe finds), and
//! this crate is the one both already depend on. It needs `alloc` only, so it
//! sits behind the `modules` feature and the no_std eBPF build never sees it.
//! Hand-written: the formats are a line each, and the crates that read them
//! (kmod bindings) need the C libkmod, which the static initrd does not have.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// File name endings of module files, uncompressed first.
pub const MODULE_EXTENSIONS: &[&str] = &[".ko", ".ko.xz", ".ko.zst", ".ko.gz"];

/// `9pnet-virtio` and `9pnet_virtio` are the same module to the kernel.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a file: `kernel/net/9p/9pnet_virtio.ko[.xz]` →
/// `9pnet_virtio`; `None` if the file is not a module.
pub fn module_name(path: &str) -> Option<String> {
    let base = path.rsplit('/').next()?;
    let stem = MODULE_EXTENSIONS
        .iter()
        .find_map(|ext| base.strip_suffix(ext))
        .filter(|stem| !stem.is_empty())?;
    Some(normalize(stem))
}

/// True for `.ko.xz`, `.ko.zst`, `.ko.gz`: files the kernel must decompress.
pub fn is_compressed(path: &str) -> bool {
    MODULE_EXTENSIONS[1..].iter().any(|ext| path.ends_with(ext))
}

/// The module names a `modules.builtin` lists (one path a line).
pub fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines().filter_map(module_name).collect()
}

/// A `modules.dep`: each module's file and the files it depends on.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ModulesDep {
    /// Module name → (path, dependency paths as listed).
    modules: BTreeMap<String, (String, Vec<String>)>,
}

impl ModulesDep {
    /// Reads depmod's `path: dep dep…` lines; lines that are not about a
    /// module file are skipped.
    pub fn parse(text: &str) -> Self {
        let mut dep = ModulesDep::default();
        for line in text.lines() {
            let Some((path, list)) = line.split_once(':') else {
                continue;
            };
            dep.insert(
                path.trim(),
                list.split_whitespace().map(str::to_string).collect(),
            );
        }
        dep
    }

    /// Adds (or replaces) one module file and its dependency files.
    pub fn insert(&mut self, path: &str, deps: Vec<String>) {
        if let Some(name) = module_name(path) {
            self.modules.insert(name, (path.to_string(), deps));
        }
    }

    /// The file of module `name` (`-` or `_` alike).
    pub fn path(&self, name: &str) -> Option<&str> {
        self.modules.get(&normalize(name)).map(|(p, _)| p.as_str())
    }

    /// The dependency files listed for the module in `path`.
    pub fn deps_of(&self, path: &str) -> &[String] {
        module_name(path)
            .and_then(|n| self.modules.get(&n))
            .map(|(_, deps)| deps.as_slice())
            .unwrap_or_default()
    }

    /// Every module file, sorted by module name.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.modules.values().map(|(p, _)| p.as_str())
    }

    /// The files to load for the module in `path`, dependencies first and
    /// `path` last, each once. Each dependency's own line is followed too,
    /// so the order is right whether a line lists all dependencies (as
    /// depmod does) or only the direct ones.
    pub fn load_order(&self, path: &str) -> Vec<String> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        self.visit(path, &mut seen, &mut order);
        order
    }

    fn visit(&self, path: &str, seen: &mut BTreeSet<String>, order: &mut Vec<String>) {
        if !seen.insert(path.to_string()) {
            return;
        }
        // depmod lists the deepest dependency last: visit from the end.
        for dep in self.deps_of(path).iter().rev() {
            self.visit(dep, seen, order);
        }
        order.push(path.to_string());
    }

    /// The text in depmod's format: each module followed by all of its
    /// dependencies, the deepest last (the reverse of `load_order`).
    pub fn to_text(&self) -> String {
        let mut lines: Vec<(&str, Vec<String>)> = self
            .paths()
            .map(|path| {
                let mut order = self.load_order(path);
                order.pop();
                order.reverse();
                (path, order)
            })
            .collect();
        lines.sort();
        let mut text = String::new();
        for (path, deps) in lines {
            text.push_str(path);
            text.push(':');
            for dep in deps {
                text.push(' ');
                text.push_str(&dep);
            }
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const DEP: &str = "\
kernel/fs/netfs/netfs.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/9p/9p.ko: kernel/fs/fscache/fscache.ko kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet.ko:
kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
";

    fn names(order: &[String]) -> Vec<String> {
        order.iter().filter_map(|p| module_name(p)).collect()
    }

    #[test]
    fn module_names_drop_the_directory_and_extension_and_normalise_dashes() {
        assert_eq!(
            module_name("kernel/net/9p/9pnet_virtio.ko").as_deref(),
            Some("9pnet_virtio")
        );
        assert_eq!(module_name("/9p.ko").as_deref(), Some("9p"));
        assert_eq!(
            module_name("kernel/x/nf-defrag.ko.zst").as_deref(),
            Some("nf_defrag")
        );
        assert_eq!(module_name("modules.dep"), None);
        assert_eq!(module_name("kernel/x/.ko"), None);
        assert!(is_compressed("a/b.ko.xz") && !is_compressed("a/b.ko"));
    }

    #[test]
    fn dependencies_load_first_deepest_first_each_once() {
        let dep = ModulesDep::parse(DEP);
        let order = names(&dep.load_order(dep.path("9p").unwrap()));
        assert_eq!(order, ["netfs", "9pnet", "fscache", "9p"]);
        let virtio = dep.path("virtio-net").unwrap();
        assert_eq!(virtio, "kernel/drivers/net/virtio_net.ko.xz");
        assert_eq!(
            names(&dep.load_order(virtio)),
            ["failover", "net_failover", "virtio_net"]
        );
    }

    #[test]
    fn order_holds_when_only_direct_dependencies_are_listed() {
        // fscache's own line brings netfs in, although 9p's line omits it.
        let dep = ModulesDep::parse(
            "kernel/fs/9p/9p.ko: kernel/fs/fscache/fscache.ko\n\
             kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko\n\
             kernel/fs/netfs/netfs.ko:\n",
        );
        assert_eq!(
            names(&dep.load_order("kernel/fs/9p/9p.ko")),
            ["netfs", "fscache", "9p"]
        );
    }

    #[test]
    fn written_text_lists_the_whole_closure_and_reads_back_the_same() {
        let mut direct = ModulesDep::default();
        direct.insert("9p.ko", vec!["9pnet.ko".into(), "fscache.ko".into()]);
        direct.insert("fscache.ko", vec!["netfs.ko".into()]);
        direct.insert("netfs.ko", vec![]);
        direct.insert("9pnet.ko", vec![]);
        let text = direct.to_text();
        assert_eq!(
            text,
            "9p.ko: 9pnet.ko fscache.ko netfs.ko\n\
             9pnet.ko:\n\
             fscache.ko: netfs.ko\n\
             netfs.ko:\n"
        );
        let full = ModulesDep::parse(&text);
        assert_eq!(full.load_order("9p.ko"), direct.load_order("9p.ko"));
    }

    #[test]
    fn builtin_lists_are_module_names() {
        let builtin =
            parse_builtin("kernel/drivers/net/tun.ko\nkernel/net/sched/sch-ingress.ko\n\n");
        assert_eq!(
            builtin.into_iter().collect::<Vec<_>>(),
            ["sch_ingress", "tun"]
        );
    }
}
