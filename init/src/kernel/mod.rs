//! Facts read from the running kernel, shared by every capability: its BTF
//! (types, enums, struct members, tracepoint prototypes — read once and
//! handed to aya too), tracefs (mounting, event format files), kallsyms
//! (address → `function+off/size`), the build config, the kernel log, the
//! mount table and /proc's processes, and the type in which each capability
//! declares what it needs from the kernel. Nothing here knows any one
//! capability.

pub mod btf;
pub mod kallsyms;
pub mod kconfig;
pub mod kmsg;
pub mod mounts;
pub mod procfs;
pub mod requirements;
pub mod tracefs;
