//! The one list of commands. Each command file exports `COMMANDS`, a slice
//! of `CommandSpec`s; `all()` joins them. A command gets a `Ctx` (its output,
//! input and the shell) and its arguments (without its own name), and
//! returns an exit status or an error that the shell prints on one line.

use std::sync::OnceLock;

use thiserror::Error;

use crate::shell::Ctx;

pub mod builtin;
pub mod debug_tc;
pub mod droptrace;
pub mod files;
pub mod inject;
pub mod modules;
pub mod net;
pub mod nettest;
pub mod system;

/// A command's entry point: arguments exclude the command name.
pub type RunFn = fn(&mut Ctx<'_>, &[String]) -> anyhow::Result<i32>;

/// One command: its name, its help text and how to run it.
pub struct CommandSpec {
    pub name: &'static str,
    /// The syntax, one form per line, without the leading "usage: ".
    pub usage: &'static str,
    /// One line for `help`'s list.
    pub summary: &'static str,
    /// More detail for `help NAME` (options, examples); may be empty.
    pub help: &'static str,
    pub run: RunFn,
}

impl CommandSpec {
    /// The usage lines, each prefixed as users see them.
    pub fn usage_text(&self) -> String {
        let mut text = String::new();
        for (i, form) in self.usage.lines().enumerate() {
            text.push_str(if i == 0 { "usage: " } else { "       " });
            text.push_str(form);
            text.push('\n');
        }
        text
    }

    /// The full help of `help NAME`.
    pub fn help_text(&self) -> String {
        let mut text = format!("{} - {}\n{}", self.name, self.summary, self.usage_text());
        if !self.help.is_empty() {
            text.push('\n');
            text.push_str(self.help.trim_end());
            text.push('\n');
        }
        text
    }
}

/// Every command, sorted by name.
pub fn all() -> &'static [&'static CommandSpec] {
    static ALL: OnceLock<Vec<&'static CommandSpec>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut list: Vec<&'static CommandSpec> = [
            builtin::COMMANDS,
            droptrace::COMMANDS,
            files::COMMANDS,
            inject::COMMANDS,
            modules::COMMANDS,
            net::COMMANDS,
            nettest::COMMANDS,
            system::COMMANDS,
        ]
        .into_iter()
        .flatten()
        .collect();
        list.sort_by_key(|c| c.name);
        list
    })
}

/// Developer commands: run by name, but not listed by `help` nor completed
/// (kept out of `all()`), as they stand in for commands still to come.
const HIDDEN: &[&[CommandSpec]] = &[debug_tc::COMMANDS];

pub fn find(name: &str) -> Option<&'static CommandSpec> {
    all()
        .iter()
        .copied()
        .chain(HIDDEN.iter().copied().flatten())
        .find(|c| c.name == name)
}

/// Wrong arguments: the shell prints the message and the command's usage.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Builds a usage error; `return Err(usage("missing DEST"))`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// Splits leading options off `args`, accepting only those in `known`;
/// `--` ends the options, so `mkdir -- -odd-name` still works.
pub fn take_options<'a>(
    args: &'a [String],
    known: &[&str],
) -> anyhow::Result<(Vec<&'a str>, &'a [String])> {
    let mut options = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if arg == "--" {
            return Ok((options, &args[i + 1..]));
        }
        if !arg.starts_with('-') || arg == "-" {
            return Ok((options, &args[i..]));
        }
        if !known.contains(&arg.as_str()) {
            return Err(usage(format!("unknown option {arg}")));
        }
        options.push(arg.as_str());
    }
    Ok((options, &[]))
}

/// The foreground command was stopped by Ctrl-C (status 130).
#[derive(Debug, Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Parses arguments with a clap derive type. Parse errors become one-line
/// `UsageError`s (the shell adds the usage from the command's spec).
pub fn parse_args<T: clap::Parser>(name: &str, args: &[String]) -> anyhow::Result<T> {
    T::try_parse_from(std::iter::once(name.to_string()).chain(args.iter().cloned())).map_err(|e| {
        let rendered = e.render().to_string();
        let first = rendered
            .lines()
            .next()
            .unwrap_or("bad arguments")
            .trim_start_matches("error: ")
            .to_string();
        usage(first)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_usage_and_summary_and_a_unique_name() {
        let mut names: Vec<_> = all().iter().map(|c| c.name).collect();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "duplicate command names");
        for c in all() {
            assert!(!c.usage.is_empty(), "{} has no usage", c.name);
            assert!(!c.summary.is_empty(), "{} has no summary", c.name);
            assert!(c.usage_text().starts_with("usage: "));
        }
    }
}
