//! Facts read from the running kernel, shared by every capability: its BTF
//! (types, enums, struct members, tracepoint prototypes — read once and
//! handed to aya too), tracefs (mounting, event format files) and kallsyms
//! (address → `function+off/size`). Nothing here knows any one capability.

pub mod btf;
pub mod kallsyms;
pub mod tracefs;
