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
use std::io::{BufRead, BufReader, Write};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use crate::cmd::{self, HelpShown, Interrupted, UsageError};
use crate::proc;
use crate::state::State;
pub use io::{Input, Output};
use parse::{Budget, RedirectKind, SimpleCommand};

/// How deep `run` scripts may nest: far more than real scripts need, and
/// far less than it takes to overflow the stack (a script that runs itself).
pub const MAX_RUN_DEPTH: usize = 64;

/// How much of one overlong script line is skipped looking for its end
/// before the script is given up (a file or FIFO without newlines).
const MAX_SKIPPED_LINE_BYTES: usize = 16 << 20;

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
    /// `exit` (or `poweroff` outside PID 1): the program ends with this
    /// status, or only the `run` script when `exit` was inside one.
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
    /// Set by `exit` inside a `run` script: only that script ends.
    pub script_exit: Option<i32>,
    /// The `run` scripts being run, outermost first.
    run_chain: Vec<String>,
    /// Named tests (`test NAME`) and their results.
    pub tests: crate::expect::ktap::TestRun,
    /// The error the last built-in command printed: a failed test's reason.
    pub last_error: Option<String>,
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
            script_exit: None,
            run_chain: Vec::new(),
            tests: Default::default(),
            last_error: None,
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
        // A test that is not selected, or failed under `set -e`: its lines
        // are skipped up to the next `test`.
        if self.tests.skipping() && !commands.first().is_some_and(is_test_command) {
            return Flow::Continue;
        }
        for command in &commands {
            let interrupts_before = *self.state.interrupts.borrow();
            self.last_error = None;
            self.last_status = self.run_command(command, out, origin);
            if let Some(status) = self.exit_request.or(self.script_exit) {
                return Flow::Exit(status);
            }
            if self.last_status != 0 && self.tests.in_test() && !is_test_command(command) {
                // A failing step fails its test, not the script; under
                // `set -e` the rest of the test is skipped.
                let reason = self.last_error.take().unwrap_or_else(|| {
                    format!(
                        "{} exited with status {}",
                        command_name(command),
                        self.last_status
                    )
                });
                self.tests.fail(&reason, self.errexit);
                if self.errexit {
                    return Flow::Continue;
                }
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
        self.run_reader(source, name, out)
    }

    /// Runs a script read line by line, so its size never matters: a line
    /// longer than the limit is refused and skipped (up to a bound), and a
    /// file that is not text stops the script. `set -e` inside it lasts
    /// until its end.
    pub fn run_reader(&mut self, mut reader: impl BufRead, name: &str, out: &mut Output) -> Flow {
        let saved_errexit = self.errexit;
        self.errexit = false;
        let mut flow = Flow::Continue;
        let mut pending = String::new();
        let mut start_line = 0;
        let mut buf = Vec::new();
        let mut number = 0;
        loop {
            number += 1;
            let origin = Origin::Script {
                name: name.to_string(),
                line: number,
            };
            let error = match read_script_line(&mut reader, &mut buf) {
                Ok(ScriptLine::Eof) => break,
                Ok(ScriptLine::Text) => None,
                Ok(ScriptLine::TooLong(len)) => Some(parse::SyntaxError::LineTooLong(len)),
                Ok(ScriptLine::Binary) => {
                    self.last_status = 2;
                    eprintln!(
                        "{}syntax error: NUL byte: not a text script; stopping it",
                        origin.prefix()
                    );
                    flow = Flow::Stop;
                    break;
                }
                Ok(ScriptLine::Endless) => {
                    self.last_status = 2;
                    eprintln!(
                        "{}syntax error: no end of line in the first {} MiB; stopping the script",
                        origin.prefix(),
                        MAX_SKIPPED_LINE_BYTES >> 20
                    );
                    flow = Flow::Stop;
                    break;
                }
                Err(e) => {
                    self.last_status = 1;
                    eprintln!("{}read: {}", origin.prefix(), crate::util::io_error(&e));
                    flow = Flow::Stop;
                    break;
                }
            };
            let decoded = match error {
                Some(e) => Err(e),
                None => parse::decode_line(&buf),
            };
            let text = match decoded {
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
            // The joined text is bounded: past the line limit it no longer
            // parses as a continuation and is refused as too long.
            let candidate = format!("{pending}{text}");
            if parse::parse_line(&candidate) == Err(parse::SyntaxError::TrailingBackslash) {
                if pending.is_empty() {
                    start_line = number;
                }
                pending = candidate[..candidate.len() - 1].to_string();
                continue;
            }
            let origin = if pending.is_empty() {
                origin
            } else {
                pending.clear();
                Origin::Script {
                    name: name.to_string(),
                    line: start_line,
                }
            };
            flow = self.run_line(&candidate, out, &origin);
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
        let error = |e: &std::io::Error| {
            anyhow::anyhow!("{}: {}", path.display(), crate::util::io_error(e))
        };
        // A FIFO nobody writes to would block the open for good: Ctrl-C gets out.
        let mut interrupts = self.state.interrupts.clone();
        interrupts.mark_unchanged();
        let file = crate::util::open_interruptible(path, OpenOptions::new().read(true), interrupts)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::Interrupted => anyhow::Error::from(Interrupted),
                _ => error(&e),
            })?;
        if file.metadata().map_err(|e| error(&e))?.is_dir() {
            return Err(error(&std::io::Error::from(
                std::io::ErrorKind::IsADirectory,
            )));
        }
        let name = path.display().to_string();
        Ok(self.run_reader(BufReader::new(file), &name, out))
    }

    /// `run SCRIPT`: runs it nested in the current script, at most
    /// `MAX_RUN_DEPTH` deep. `exit` inside it ends only it.
    pub fn run_nested(&mut self, script: &str, out: &mut Output) -> anyhow::Result<i32> {
        if self.run_chain.len() >= MAX_RUN_DEPTH {
            anyhow::bail!(
                "{script}: too deeply nested: {} ({MAX_RUN_DEPTH} levels, the most allowed)",
                chain_text(&self.run_chain)
            );
        }
        self.run_chain.push(script.to_string());
        let result = self.run_file(Path::new(script), out);
        self.run_chain.pop();
        let flow = result?;
        if let Some(status) = self.script_exit.take() {
            return Ok(status);
        }
        Ok(match flow {
            Flow::Exit(status) => status,
            Flow::Continue | Flow::Stop => self.last_status,
        })
    }

    /// Ends the named tests, if any ran: their plan and totals. A failed
    /// test makes the last status 1 (when it was 0), so the run's outcome
    /// reaches the host as the exit status. None when no test ran.
    pub fn finish_tests(&mut self, out: &mut Output) -> Option<bool> {
        let passed = match self.tests.finish(out) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("test: write: {}", crate::util::io_error(&e));
                None
            }
        };
        let _ = out.flush();
        if passed == Some(false) && self.last_status == 0 {
            self.last_status = 1;
        }
        passed
    }

    /// Whether a `run` script is running (where `exit` ends only it).
    pub fn in_run_script(&self) -> bool {
        !self.run_chain.is_empty()
    }

    fn run_command(&mut self, command: &SimpleCommand, out: &mut Output, origin: &Origin) -> i32 {
        let lookup = |name: &str| self.var(name);
        let prefix = origin.prefix();
        // Leading NAME=value words set variables.
        let mut words = command.words.as_slice();
        let mut assignments = Vec::new();
        while let Some((first, rest)) = words.split_first() {
            match first.as_assignment() {
                Some((name, value)) => {
                    let mut budget = Budget::new(parse::MAX_VALUE_BYTES);
                    match value.expand_joined(&lookup, &mut budget) {
                        Ok(value) => assignments.push((name, value)),
                        Err(e) => {
                            eprintln!("{prefix}{name}: value too long: {e}");
                            return 1;
                        }
                    }
                    words = rest;
                }
                None => break,
            }
        }
        let mut budget = Budget::new(parse::MAX_COMMAND_BYTES);
        let expanded = (|| {
            let mut args = Vec::new();
            for word in words {
                args.extend(word.expand(&lookup, &mut budget)?);
            }
            let mut redirects = Vec::new();
            for r in &command.redirects {
                redirects.push((r.kind, r.target.expand_joined(&lookup, &mut budget)?));
            }
            Ok::<_, parse::TooLong>((args, redirects))
        })();
        let (args, redirects): (Vec<String>, Vec<(RedirectKind, String)>) = match expanded {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{prefix}command too long: {e}");
                return 1;
            }
        };
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
            Some((file, path)) => {
                file_out = Output::file(file, &path);
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
        crate::power::note_command(name, args);
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
        // A panic inside a nested `run` must not leave its level counted.
        let run_depth = self.run_chain.len();
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
        self.run_chain.truncate(run_depth);
        match result {
            Ok(Ok(status)) => status,
            Ok(Err(e)) if e.is::<HelpShown>() => {
                let _ = out.write_all(e.to_string().as_bytes());
                0
            }
            Ok(Err(e)) if e.is::<UsageError>() => {
                let _ = out.flush();
                eprint!("{prefix}{name}: {e}\n{}", spec.usage_text());
                self.last_error = Some(format!("{name}: {e}"));
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
                self.last_error = Some(format!("{name}: {e:#}"));
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

/// Whether a command is `test …` (as written: a literal first word).
fn is_test_command(command: &SimpleCommand) -> bool {
    command_name(command) == "test"
}

/// A command's first word as written, for messages.
fn command_name(command: &SimpleCommand) -> String {
    let Some(word) = command.words.first() else {
        return String::new();
    };
    word.0
        .iter()
        .map(|part| match part {
            parse::Part::Bare(s) | parse::Part::Quoted(s) => s.clone(),
            parse::Part::Var { name, .. } => format!("${name}"),
        })
        .collect()
}

/// `a -> b -> … -> z`: the first and last scripts of a long chain.
fn chain_text(chain: &[String]) -> String {
    if chain.len() <= 4 {
        return chain.join(" -> ");
    }
    format!(
        "{} -> {} -> … -> {}",
        chain[0],
        chain[1],
        chain[chain.len() - 1]
    )
}

/// What reading one script line gave (the text itself is in the buffer).
#[derive(Debug, PartialEq, Eq)]
enum ScriptLine {
    Eof,
    Text,
    /// Longer than the line limit (this many bytes); the rest was skipped.
    TooLong(usize),
    /// A NUL byte: binary data such as `/dev/zero`, not a script.
    Binary,
    /// No newline within `MAX_SKIPPED_LINE_BYTES`.
    Endless,
}

/// Reads one line into `buf` (without its newline), keeping at most the
/// line limit in memory. Hand-written because `BufRead::read_until` keeps
/// the whole line, however long.
fn read_script_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<ScriptLine> {
    buf.clear();
    let mut len = 0usize;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(match len {
                0 => ScriptLine::Eof,
                n if n > parse::MAX_LINE_BYTES => ScriptLine::TooLong(n),
                _ => ScriptLine::Text,
            });
        }
        let newline = chunk.iter().position(|&b| b == b'\n');
        let text = &chunk[..newline.unwrap_or(chunk.len())];
        if text.contains(&0) {
            return Ok(ScriptLine::Binary);
        }
        let room = (parse::MAX_LINE_BYTES + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&text[..text.len().min(room)]);
        len += text.len();
        let used = text.len() + usize::from(newline.is_some());
        reader.consume(used);
        if newline.is_some() {
            return Ok(if len > parse::MAX_LINE_BYTES {
                ScriptLine::TooLong(len)
            } else {
                ScriptLine::Text
            });
        }
        if len > MAX_SKIPPED_LINE_BYTES {
            return Ok(ScriptLine::Endless);
        }
    }
}

/// Opens `<`, `>` and `>>` targets; the last of each kind wins, as in sh.
fn open_redirects(
    redirects: &[(RedirectKind, String)],
    interrupts: &tokio::sync::watch::Receiver<u64>,
) -> anyhow::Result<(Input, Option<(File, String)>)> {
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
            _ => output = Some((file, target.clone())),
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
            cli: None,
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
