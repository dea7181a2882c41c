//! One language for scripts, the interactive shell and `run`: a line is
//! parsed (parse.rs), each command's words are expanded, its redirections
//! opened, and the command is looked up in the one list (cmd/mod.rs) or run
//! as an executable file.

pub mod editor;
pub mod io;
pub mod parse;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use crate::cmd::{self, Interrupted, UsageError};
use crate::proc;
use crate::state::State;
pub use io::{Input, Output};
use parse::{RedirectKind, SimpleCommand};

/// Where a line comes from, for error messages ("startup.run:12: …").
#[derive(Clone, Debug)]
pub enum Origin {
    Interactive,
    Script { name: String, line: usize },
}

impl Origin {
    fn prefix(&self) -> String {
        match self {
            Origin::Interactive => String::new(),
            Origin::Script { name, line } => format!("{name}:{line}: "),
        }
    }
}

/// What ended a line early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// `set -e` and a command failed: the script stops.
    Stop,
    /// `exit` (or `poweroff` outside PID 1): the program ends with this status.
    Exit(i32),
}

/// The interpreter: variables, last status and options.
pub struct Shell {
    pub state: Arc<State>,
    vars: BTreeMap<String, String>,
    pub last_status: i32,
    /// `set -e`: stop a script at its first failing command.
    pub errexit: bool,
    /// Set by `exit`/`poweroff` to end the program.
    pub exit_request: Option<i32>,
}

/// What a command gets: its output, its input and the shell.
pub struct Ctx<'a> {
    pub out: &'a mut Output,
    pub input: &'a mut Input,
    pub shell: &'a mut Shell,
}

impl Ctx<'_> {
    pub fn state(&self) -> Arc<State> {
        self.shell.state.clone()
    }

    /// A receiver that changes at the next Ctrl-C (not at earlier ones).
    pub fn interrupts(&self) -> tokio::sync::watch::Receiver<u64> {
        let mut rx = self.shell.state.interrupts.clone();
        rx.mark_unchanged();
        rx
    }

    /// Runs a future on the runtime; Ctrl-C drops it and gives `Interrupted`.
    pub fn block_on<F: Future>(&self, fut: F) -> anyhow::Result<F::Output> {
        let mut interrupts = self.interrupts();
        self.shell.state.rt.block_on(async move {
            tokio::select! {
                r = fut => Ok(r),
                _ = interrupts.changed() => Err(Interrupted.into()),
            }
        })
    }

    /// Runs a future that handles Ctrl-C itself (through `interrupts()`).
    pub fn block_on_uninterrupted<F: Future>(&self, fut: F) -> F::Output {
        self.shell.state.rt.block_on(fut)
    }
}

impl Shell {
    pub fn new(state: Arc<State>) -> Self {
        Shell {
            state,
            vars: BTreeMap::new(),
            last_status: 0,
            errexit: false,
            exit_request: None,
        }
    }

    pub fn var(&self, name: &str) -> Option<String> {
        if name == "?" {
            return Some(self.last_status.to_string());
        }
        self.vars
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    }

    pub fn set_var(&mut self, name: &str, value: &str) {
        self.vars.insert(name.to_string(), value.to_string());
    }

    /// The shell's own variables, sorted by name.
    pub fn vars(&self) -> impl Iterator<Item = (&String, &String)> {
        self.vars.iter()
    }

    /// Runs one line. Errors are printed (one line each) to stderr.
    pub fn run_line(&mut self, line: &str, out: &mut Output, origin: &Origin) -> Flow {
        let commands = match parse::parse_line(line) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{}syntax error: {e}", origin.prefix());
                self.last_status = 2;
                return if self.errexit {
                    Flow::Stop
                } else {
                    Flow::Continue
                };
            }
        };
        for command in &commands {
            let interrupts_before = *self.state.interrupts.borrow();
            self.last_status = self.run_command(command, out, origin);
            if let Some(status) = self.exit_request {
                return Flow::Exit(status);
            }
            if self.errexit && self.last_status != 0 {
                return Flow::Stop;
            }
            // Ctrl-C stops the whole line and script, not just one command.
            if *self.state.interrupts.borrow() != interrupts_before {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// Runs a script's text. `set -e` inside it lasts until its end.
    pub fn run_source(&mut self, source: &[u8], name: &str, out: &mut Output) -> Flow {
        let saved_errexit = self.errexit;
        self.errexit = false;
        let mut flow = Flow::Continue;
        let mut pending = String::new();
        let mut start_line = 0;
        for (index, raw) in source.split(|&b| b == b'\n').enumerate() {
            let number = index + 1;
            let origin = Origin::Script {
                name: name.to_string(),
                line: number,
            };
            let text = match parse::decode_line(raw) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{}syntax error: {e}", origin.prefix());
                    self.last_status = 2;
                    if self.errexit {
                        flow = Flow::Stop;
                        break;
                    }
                    continue;
                }
            };
            // A backslash that escapes the end of the line (not one inside
            // quotes, escaped itself, or in a comment) continues the command.
            let candidate = format!("{pending}{text}");
            if parse::parse_line(&candidate) == Err(parse::SyntaxError::TrailingBackslash) {
                if pending.is_empty() {
                    start_line = number;
                }
                pending = candidate[..candidate.len() - 1].to_string();
                continue;
            }
            let (line, origin) = if pending.is_empty() {
                (text.to_string(), origin)
            } else {
                let joined = std::mem::take(&mut pending) + text;
                let origin = Origin::Script {
                    name: name.to_string(),
                    line: start_line,
                };
                (joined, origin)
            };
            flow = self.run_line(&line, out, &origin);
            if flow != Flow::Continue {
                break;
            }
        }
        if flow == Flow::Continue && !pending.is_empty() {
            flow = self.run_line(
                &pending,
                out,
                &Origin::Script {
                    name: name.to_string(),
                    line: start_line,
                },
            );
        }
        self.errexit = saved_errexit;
        flow
    }

    /// Runs a script file (`run FILE`, `myinit FILE`, boot stages).
    pub fn run_file(&mut self, path: &Path, out: &mut Output) -> anyhow::Result<Flow> {
        let source = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), crate::util::io_error(&e)))?;
        let name = path.display().to_string();
        Ok(self.run_source(&source, &name, out))
    }

    fn run_command(&mut self, command: &SimpleCommand, out: &mut Output, origin: &Origin) -> i32 {
        let lookup = |name: &str| self.var(name);
        // Leading NAME=value words set variables.
        let mut words = command.words.as_slice();
        let mut assignments = Vec::new();
        while let Some((first, rest)) = words.split_first() {
            match first.as_assignment() {
                Some((name, value)) => {
                    assignments.push((name, value.expand_joined(&lookup)));
                    words = rest;
                }
                None => break,
            }
        }
        let args: Vec<String> = words.iter().flat_map(|w| w.expand(&lookup)).collect();
        let redirects: Vec<(RedirectKind, String)> = command
            .redirects
            .iter()
            .map(|r| (r.kind, r.target.expand_joined(&lookup)))
            .collect();
        for (name, value) in assignments {
            self.set_var(&name, &value);
        }
        let Some((name, args)) = args.split_first() else {
            if redirects.is_empty() {
                return 0;
            }
            // `> file` alone creates or truncates the file, as in sh.
            return match open_redirects(&redirects, &self.state.interrupts) {
                Ok(_) => 0,
                Err(e) => {
                    eprintln!("{}{e}", origin.prefix());
                    1
                }
            };
        };
        let (mut input, redirect_out) = match open_redirects(&redirects, &self.state.interrupts) {
            Ok(r) => r,
            Err(e) if e.is::<Interrupted>() => {
                eprintln!("{}{name}: interrupted", origin.prefix());
                return 130;
            }
            Err(e) => {
                eprintln!("{}{name}: {e}", origin.prefix());
                return 1;
            }
        };
        let mut file_out;
        let out: &mut Output = match redirect_out {
            Some(file) => {
                file_out = Output::file(file);
                &mut file_out
            }
            None => out,
        };
        let status = self.dispatch(name, args, out, &mut input, origin);
        if let Err(e) = out.flush() {
            eprintln!(
                "{}{name}: write: {}",
                origin.prefix(),
                crate::util::io_error(&e)
            );
            return if status == 0 { 1 } else { status };
        }
        status
    }

    fn dispatch(
        &mut self,
        name: &str,
        args: &[String],
        out: &mut Output,
        input: &mut Input,
        origin: &Origin,
    ) -> i32 {
        crate::supervisor::note_command(name, args);
        if let Some(spec) = cmd::find(name) {
            return self.run_builtin(spec, args, out, input, origin);
        }
        let prefix = origin.prefix();
        let path_var = self
            .var("PATH")
            .unwrap_or_else(|| proc::DEFAULT_PATH.into());
        match proc::find_executable(name, &path_var) {
            Some(path) => match self.run_external(&path, args, out, input) {
                Ok(status) => status,
                Err(e) => {
                    eprintln!("{prefix}{name}: {e:#}");
                    126
                }
            },
            None => {
                eprintln!("{prefix}{name}: command not found (try 'help')");
                127
            }
        }
    }

    /// Runs a built-in command: a panic or an error becomes a status and
    /// one line on stderr, never the end of the shell (PID 1 must live).
    fn run_builtin(
        &mut self,
        spec: &cmd::CommandSpec,
        args: &[String],
        out: &mut Output,
        input: &mut Input,
        origin: &Origin,
    ) -> i32 {
        let prefix = origin.prefix();
        let name = spec.name;
        if args.len() == 1 && (args[0] == "--help" || args[0] == "-h") && name != "echo" {
            let _ = out.write_all(spec.help_text().as_bytes());
            return 0;
        }
        let mut ctx = Ctx {
            out,
            input,
            shell: self,
        };
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| (spec.run)(&mut ctx, args)));
        match result {
            Ok(Ok(status)) => status,
            Ok(Err(e)) if e.is::<UsageError>() => {
                let _ = out.flush();
                eprint!("{prefix}{name}: {e}\n{}", spec.usage_text());
                2
            }
            Ok(Err(e)) if e.is::<Interrupted>() => {
                let _ = out.flush();
                eprintln!("{prefix}{name}: interrupted");
                130
            }
            Ok(Err(e)) => {
                let _ = out.flush();
                eprintln!("{prefix}{name}: {e:#}");
                1
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("unknown panic");
                eprintln!("{prefix}{name}: internal error: {what}");
                70
            }
        }
    }

    fn run_external(
        &mut self,
        path: &Path,
        args: &[String],
        out: &mut Output,
        input: &mut Input,
    ) -> anyhow::Result<i32> {
        let mut command = Command::new(path);
        command
            .args(args)
            .stdin(input.child_stdio()?)
            .stdout(out.child_stdio()?)
            .env_clear()
            .envs(std::env::vars())
            .envs(self.vars.iter());
        let state = self.state.clone();
        let pid = state.reaper.spawn(&mut command)?;
        let mut interrupts = state.interrupts.clone();
        interrupts.mark_unchanged();
        Ok(state
            .rt
            .block_on(state.reaper.wait_interruptible(pid, interrupts)))
    }
}

/// Opens `<`, `>` and `>>` targets; the last of each kind wins, as in sh.
fn open_redirects(
    redirects: &[(RedirectKind, String)],
    interrupts: &tokio::sync::watch::Receiver<u64>,
) -> anyhow::Result<(Input, Option<File>)> {
    let mut input = Input::Console;
    let mut output = None;
    for (kind, target) in redirects {
        let mut options = OpenOptions::new();
        match kind {
            RedirectKind::Input => options.read(true),
            RedirectKind::Truncate | RedirectKind::Append => options
                .write(true)
                .create(true)
                .truncate(*kind == RedirectKind::Truncate)
                .append(*kind == RedirectKind::Append),
        };
        let mut interrupts = interrupts.clone();
        interrupts.mark_unchanged();
        let file = crate::util::open_interruptible(Path::new(target), &options, interrupts)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::Interrupted => anyhow::Error::from(Interrupted),
                _ => anyhow::anyhow!("{target}: {}", crate::util::io_error(&e)),
            })?;
        match kind {
            RedirectKind::Input => input = Input::File(file),
            _ => output = Some(file),
        }
    }
    Ok((input, output))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panics(_: &mut Ctx<'_>, _: &[String]) -> anyhow::Result<i32> {
        panic!("deliberate test panic")
    }

    fn fails(_: &mut Ctx<'_>, _: &[String]) -> anyhow::Result<i32> {
        Err(cmd::usage("bad word"))
    }

    #[test]
    fn a_panicking_or_failing_command_becomes_a_status_and_the_shell_goes_on() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let state = State::start(&rt, false);
        let mut shell = Shell::new(state);
        let mut out = Output::memory();
        let mut input = Input::Console;
        let spec = |name, run| cmd::CommandSpec {
            name,
            usage: "x",
            summary: "x",
            help: "",
            run,
        };
        let origin = Origin::Interactive;
        let status = shell.run_builtin(&spec("boom", panics), &[], &mut out, &mut input, &origin);
        assert_eq!(status, 70);
        let status = shell.run_builtin(&spec("bad", fails), &[], &mut out, &mut input, &origin);
        assert_eq!(status, 2);
        // The shell still runs lines afterwards.
        assert_eq!(
            shell.run_line("echo alive", &mut out, &origin),
            Flow::Continue
        );
        assert_eq!(shell.last_status, 0);
        assert_eq!(out.contents(), b"alive\n");
    }
}
