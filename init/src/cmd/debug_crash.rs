//! `debug-crash`: the hidden command the supervisor's VM tests use.

use std::io::Write;

use super::{usage, CommandSpec};
use crate::shell::Ctx;

/// `debug-crash segv|abort`: kills the engine on purpose, for the VM tests
/// of the supervisor. A hidden command (in no list, so `help`, completion
/// and the tests that walk `help` never run it) rather than a `kill`
/// builtin: it needs no pid, and it is exactly the two ways a Rust process
/// dies that `catch_unwind` cannot stop.
pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "debug-crash",
    usage: "debug-crash segv|abort",
    summary: "test only: kill the engine by SIGSEGV or abort()",
    help: "",
    run: debug_crash,
    cli: None,
}];

fn debug_crash(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let _ = ctx.out.flush();
    match args {
        [how] if how == "segv" => {
            // SAFETY: deliberately ends the process. std's own SIGSEGV
            // handler (stack overflow reports) is replaced by the default
            // action first, so raise() kills as a real segfault does.
            unsafe {
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                libc::raise(libc::SIGSEGV);
            }
            Ok(128 + libc::SIGSEGV)
        }
        [how] if how == "abort" => std::process::abort(),
        _ => Err(usage("expected segv or abort")),
    }
}
