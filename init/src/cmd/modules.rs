//! Kernel module commands: `modprobe` loads a module with everything it
//! depends on, in order, from `/lib/modules/$(uname -r)` (the initrd ships
//! the modules, their `modules.dep` and `modules.builtin` there).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use myinit_common::modules::{module_name, normalize, parse_builtin, ModulesDep};

use super::{usage, CommandSpec};
use crate::shell::Ctx;

pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "modprobe",
    usage: "",
    summary: "load a kernel module and the modules it depends on",
    help: "Dependencies come from /lib/modules/$(uname -r)/modules.dep and are\n\
           loaded first, deepest first. A module already loaded or built into the\n\
           kernel (modules.builtin) is skipped quietly. `-` and `_` in names are\n\
           the same. Parameters apply to NAME only.",
    run: modprobe,
    cli: Some(<Args as clap::CommandFactory>::command),
}];

#[derive(clap::Parser, Debug)]
#[command(
    name = "modprobe",
    disable_help_flag = true,
    override_usage = "modprobe [-qv] [-d ROOT] NAME [PARAM=VALUE...]\nmodprobe -a [-qv] [-d ROOT] NAME..."
)]
struct Args {
    /// load every NAME given
    #[arg(short = 'a')]
    all: bool,
    /// skip unknown modules (or a missing modules.dep) silently, status 1
    #[arg(short = 'q')]
    quiet: bool,
    /// print each module file as it is loaded
    #[arg(short = 'v')]
    verbose: bool,
    /// look under ROOT/lib/modules instead of /lib/modules
    #[arg(short = 'd', value_name = "ROOT")]
    root: Option<PathBuf>,
    /// the module, then its PARAM=VALUE parameters (with -a: modules)
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
}

fn modprobe(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let args: Args = super::parse_args("modprobe", args)?;
    let (names, params) = if args.all {
        (args.names.clone(), String::new())
    } else {
        let (name, params) = args
            .names
            .split_first()
            .ok_or_else(|| usage("missing NAME"))?;
        if let Some(bad) = params.iter().find(|p| !p.contains('=')) {
            return Err(usage(format!(
                "{bad}: parameters are PARAM=VALUE (use -a for several modules)"
            )));
        }
        (vec![name.clone()], params.join(" "))
    };
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_err(|e| {
        anyhow!(
            "cannot read the kernel release: {}",
            crate::util::io_error(&e)
        )
    })?;
    let dir = args
        .root
        .unwrap_or_else(|| PathBuf::from("/"))
        .join("lib/modules")
        .join(release.trim());
    let db = match ModuleDb::open(&dir) {
        Ok(db) => db,
        Err(_) if args.quiet => return Ok(1),
        Err(e) => return Err(e),
    };
    let mut status = 0;
    for name in &names {
        let plan = match db.plan(name) {
            Ok(plan) => plan,
            Err(_) if args.quiet => {
                status = 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        for step in plan {
            let Step::Load(path) = step else { continue };
            let module = module_name(&path).unwrap_or_default();
            if is_loaded(&module) {
                continue;
            }
            let file = dir.join(&path);
            if args.verbose {
                writeln!(ctx.out, "insmod {}", file.display())?;
            }
            let module_params = if module == normalize(name) {
                params.as_str()
            } else {
                ""
            };
            load(&file, module_params).map_err(|e| anyhow!("{module}: {e}"))?;
        }
    }
    Ok(status)
}

/// What to do for a module: it is built in, or load these files in order.
#[derive(Debug, PartialEq)]
enum Step {
    BuiltIn(String),
    Load(String),
}

/// modules.dep and modules.builtin of one kernel.
#[derive(Debug, Default)]
struct ModuleDb {
    dir: PathBuf,
    deps: ModulesDep,
    builtin: BTreeSet<String>,
}

impl ModuleDb {
    fn open(dir: &Path) -> anyhow::Result<Self> {
        let dep_file = dir.join("modules.dep");
        let deps = std::fs::read_to_string(&dep_file)
            .map_err(|e| anyhow!("{}: {}", dep_file.display(), crate::util::io_error(&e)))?;
        let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
        Ok(Self::parse(dir, &deps, &builtin))
    }

    fn parse(dir: &Path, deps: &str, builtin: &str) -> Self {
        ModuleDb {
            dir: dir.to_path_buf(),
            deps: ModulesDep::parse(deps),
            builtin: parse_builtin(builtin),
        }
    }

    /// The files to load for `name`, dependencies first.
    fn plan(&self, name: &str) -> anyhow::Result<Vec<Step>> {
        let name = normalize(name);
        let Some(path) = self.deps.path(&name) else {
            if self.builtin.contains(&name) {
                return Ok(vec![Step::BuiltIn(name)]);
            }
            return Err(anyhow!(
                "{name}: no such module in {} (modules.dep)",
                self.dir.display()
            ));
        };
        Ok(self
            .deps
            .load_order(path)
            .into_iter()
            .map(Step::Load)
            .collect())
    }
}

/// Loaded (or loading) modules appear in /sys/module with an initstate.
fn is_loaded(name: &str) -> bool {
    Path::new("/sys/module")
        .join(name)
        .join("initstate")
        .exists()
}

/// Loads one module file; EEXIST (loaded meanwhile) is success.
fn load(file: &Path, params: &str) -> anyhow::Result<()> {
    match crate::kmod::load(file, params) {
        Ok(()) | Err(crate::kmod::LoadError::AlreadyLoaded(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/netfs/netfs.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/9p/9p.ko: kernel/fs/fscache/fscache.ko kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
";

    fn db(deps: &str) -> ModuleDb {
        ModuleDb::parse(
            Path::new("/lib/modules/x"),
            deps,
            "kernel/drivers/net/tun.ko\n",
        )
    }

    fn loads(db: &ModuleDb, name: &str) -> Vec<String> {
        db.plan(name)
            .unwrap()
            .into_iter()
            .map(|s| match s {
                Step::Load(p) => module_name(&p).unwrap(),
                Step::BuiltIn(n) => format!("builtin:{n}"),
            })
            .collect()
    }

    #[test]
    fn dependencies_load_first_deepest_first() {
        let db = db(DEP);
        let order = loads(&db, "9p");
        assert_eq!(order.last().map(String::as_str), Some("9p"));
        let pos = |m: &str| order.iter().position(|x| x == m).unwrap();
        assert!(pos("netfs") < pos("fscache"));
        assert!(pos("9pnet") < pos("9p"));
        assert_eq!(order.len(), 4, "each module once: {order:?}");
        assert_eq!(
            loads(&db, "virtio-net"),
            ["failover", "net_failover", "virtio_net"]
        );
    }

    #[test]
    fn order_holds_when_only_direct_dependencies_are_listed() {
        // fscache's own line brings netfs in, although 9p's line omits it.
        let deps = "kernel/fs/9p/9p.ko: kernel/fs/fscache/fscache.ko\n\
                    kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko\n\
                    kernel/fs/netfs/netfs.ko:\n";
        assert_eq!(loads(&db(deps), "9p"), ["netfs", "fscache", "9p"]);
    }

    #[test]
    fn builtin_and_unknown_modules() {
        let db = db(DEP);
        assert_eq!(loads(&db, "tun"), ["builtin:tun"]);
        let err = db.plan("nosuch").unwrap_err().to_string();
        assert!(
            err.contains("nosuch: no such module in /lib/modules/x"),
            "{err}"
        );
    }
}
