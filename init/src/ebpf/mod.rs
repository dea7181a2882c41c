//! aya mechanics every eBPF capability shares, knowing none of them: load
//! an embedded object with the kernel's BTF and the globals its programs
//! read, forward its aya-log lines (only after `log on`), and read its ring
//! buffers (ring.rs). Each capability embeds its own object
//! (`ebpf-programs/src/bin/<capability>.rs`), so a job creates only its own
//! maps.

pub mod raw;
pub mod ring;
pub mod tc;

use std::sync::atomic::{AtomicBool, Ordering};

use aya::programs::Program;
use aya::{Ebpf, EbpfLoader};

/// Why an object, or one of its programs or maps, could not be had. The
/// wrapped aya error stays the source, so the chain keeps its causes (an
/// errno, the verifier's log).
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("loading the eBPF object")]
    Load(#[source] aya::EbpfError),
    #[error("program {0} missing from the eBPF object")]
    NoProgram(String),
    #[error(transparent)]
    Program(#[from] aya::programs::ProgramError),
    #[error("map {0} missing from the eBPF object")]
    NoMap(String),
}

/// Whether eBPF log lines are printed (`log on|off`). Off by default.
pub static EBPF_LOG: AtomicBool = AtomicBool::new(false);

/// Prints aya-log records from the programs while `EBPF_LOG` is on.
struct ConsoleLog;

impl log::Log for ConsoleLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        EBPF_LOG.load(Ordering::Relaxed)
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("ebpf: {}: {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

/// A loaded eBPF object: its programs and the maps not taken yet, and the
/// task forwarding its log lines, which ends with it.
pub struct Object {
    pub ebpf: Ebpf,
    logger: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Object {
    fn drop(&mut self) {
        if let Some(logger) = self.logger.take() {
            logger.abort();
        }
    }
}

impl Object {
    /// Loads `object` (embedded with `aya::include_bytes_aligned!`). `btf`
    /// is the running kernel's, for relocations; `configure` sets the
    /// globals the programs read (kernel facts looked up by the caller).
    pub fn load<'a>(
        object: &[u8],
        btf: Option<&'a aya::Btf>,
        configure: impl FnOnce(&mut EbpfLoader<'a>),
    ) -> Result<Self, ObjectError> {
        let mut loader = EbpfLoader::new();
        // Statics: the loader borrows what it is given for its lifetime.
        static ALL_LEVELS: u8 = 0xff;
        static NO_LEVELS: u8 = 0;
        let log_level = if EBPF_LOG.load(Ordering::Relaxed) {
            &ALL_LEVELS
        } else {
            &NO_LEVELS
        };
        loader
            .btf(btf)
            .override_global("AYA_LOG_LEVEL", log_level, false);
        configure(&mut loader);
        let ebpf = loader.load(object).map_err(ObjectError::Load)?;
        Ok(Object { ebpf, logger: None })
    }

    /// One of the object's programs as its type (`&mut TracePoint`, …).
    pub fn program_mut<'a, T>(&'a mut self, name: &str) -> Result<&'a mut T, ObjectError>
    where
        &'a mut T: TryFrom<&'a mut Program, Error = aya::programs::ProgramError>,
    {
        let program = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| ObjectError::NoProgram(name.to_string()))?;
        Ok(program.try_into()?)
    }

    /// The fd of one of the object's maps (a program array or per-CPU
    /// array), for a program made at run time that refers to it.
    pub fn map_fd(&self, name: &str) -> Result<std::os::fd::RawFd, ObjectError> {
        use aya::maps::Map;
        use std::os::fd::{AsFd as _, AsRawFd as _};
        match self.ebpf.map(name) {
            Some(Map::ProgramArray(m) | Map::PerCpuArray(m) | Map::Array(m)) => {
                Ok(m.fd().as_fd().as_raw_fd())
            }
            _ => Err(ObjectError::NoMap(name.to_string())),
        }
    }

    /// Takes a map out of the object (to read it while the object lives).
    pub fn take_map(&mut self, name: &str) -> Result<aya::maps::Map, ObjectError> {
        self.ebpf
            .take_map(name)
            .ok_or_else(|| ObjectError::NoMap(name.to_string()))
    }

    /// Starts forwarding the programs' log lines. Call it after loading the
    /// programs: it takes the log map out of the object, and without a
    /// runtime the map would be closed at once.
    pub fn forward_log(&mut self) {
        static LOGGER: ConsoleLog = ConsoleLog;
        let Ok(logger) =
            aya_log::EbpfLogger::init_with_logger(&mut self.ebpf, &LOGGER as &dyn log::Log)
        else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.logger = Some(handle.spawn(async move {
            // SAFETY: the logger owns the ring buffer's fd and moves into the
            // AsyncFd, so the fd stays open for as long as it is registered.
            let registered = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(
                    logger,
                    tokio::io::Interest::READABLE,
                )
            };
            let Ok(mut fd) = registered else {
                return;
            };
            loop {
                let Ok(mut guard) = fd.readable_mut().await else {
                    return;
                };
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
        }));
    }
}
