//! Kernel module commands (modprobe).

use super::CommandSpec;

pub const COMMANDS: &[CommandSpec] = &[];
