//! The one list of commands. Each command file exports `COMMANDS`, a slice
//! of `CommandSpec`s; `all()` joins them. A command gets a `Ctx` (its output,
//! input and the shell) and its arguments (without its own name), and
//! returns an exit status or an error that the shell prints on one line.
//!
//! A command with options parses them with clap (`parse_args`), and its
//! usage and option list are rendered from that same definition (`cli`).
//! Commands whose words are a grammar rather than options (`ip`,
//! `ifconfig`, as iproute2 and net-tools spell them) or that belong to the
//! language itself (`echo -n`, `set -e|+e`) read their words themselves.

use std::sync::OnceLock;

use thiserror::Error;

use crate::shell::Ctx;

pub mod builtin;
pub mod capture;
pub mod convert;
pub mod debug_crash;
pub mod debug_tc;
pub mod droptrace;
pub mod edit;
pub mod expect;
pub mod fakehost;
pub mod files;
pub mod filter;
pub mod ifconfig;
pub mod inject;
pub mod ip;
pub mod modules;
pub mod nettest;
pub mod oside;
pub mod system;
pub mod tap;

/// A command's entry point: arguments exclude the command name.
pub type RunFn = fn(&mut Ctx<'_>, &[String]) -> anyhow::Result<i32>;

/// One command: its name, its help text and how to run it.
pub struct CommandSpec {
    pub name: &'static str,
    /// The syntax, one form per line, without the leading "usage: ".
    /// Empty for commands with a `cli`: their clap definition holds it.
    pub usage: &'static str,
    /// One line for `help`'s list.
    pub summary: &'static str,
    /// More detail for `help NAME` after the options (examples, notes); may be empty.
    pub help: &'static str,
    pub run: RunFn,
    /// For commands with options: the clap definition their arguments are
    /// parsed with (`parse_args`). Their usage (`override_usage`) and option
    /// list are rendered from it, so each option is described once, where it
    /// is parsed.
    pub cli: Option<fn() -> clap::Command>,
}

impl CommandSpec {
    /// The syntax forms, one per line.
    pub fn usage_forms(&self) -> Vec<String> {
        match self.cli {
            Some(cli) => {
                let rendered = cli().render_usage().to_string();
                rendered
                    .trim_start_matches("Usage:")
                    .lines()
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty())
                    .collect()
            }
            None => self.usage.lines().map(str::to_string).collect(),
        }
    }

    /// The usage lines, each prefixed as users see them.
    pub fn usage_text(&self) -> String {
        let mut text = String::new();
        for (i, form) in self.usage_forms().iter().enumerate() {
            text.push_str(if i == 0 { "usage: " } else { "       " });
            text.push_str(form);
            text.push('\n');
        }
        text
    }

    /// The full help of `help NAME`.
    pub fn help_text(&self) -> String {
        let mut text = format!("{} - {}\n{}", self.name, self.summary, self.usage_text());
        if let Some(cli) = self.cli {
            let options = options_text(&cli());
            if !options.is_empty() {
                text.push('\n');
                text.push_str(&options);
            }
        }
        if !self.help.is_empty() {
            text.push('\n');
            text.push_str(self.help.trim_end());
            text.push('\n');
        }
        text
    }
}

/// The arguments of a clap command as help lines (`  -c N        what it
/// does`), then each subcommand's with its summary: in the style of every
/// other command's help, from the definition's doc comments.
fn options_text(cmd: &clap::Command) -> String {
    let mut cmd = cmd.clone();
    // Possible values and value names are filled in when clap builds it.
    cmd.build();
    let mut text = String::new();
    let mut shown = Vec::new();
    push_args(&mut text, &cmd, "  ", &mut shown);
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        let head = format!("{}: ", sub.get_name());
        for (i, line) in wrap(&about, 78 - head.len()).iter().enumerate() {
            let lead = if i == 0 {
                head.clone()
            } else {
                " ".repeat(head.len())
            };
            text.push_str(&format!("{lead}{line}\n"));
        }
        push_args(&mut text, sub, "  ", &mut shown);
    }
    text
}

/// Word-wraps text to `width` columns (clap joins a doc comment's lines).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

/// Appends `cmd`'s arguments; one shared by several subcommands (a
/// flattened filter) is described the first time only.
fn push_args(
    text: &mut String,
    cmd: &clap::Command,
    indent: &str,
    shown: &mut Vec<(String, String)>,
) {
    const WIDTH: usize = 16;
    for arg in cmd.get_arguments() {
        if arg.is_hide_set() || arg.get_id() == "help" || arg.get_id() == "version" {
            continue;
        }
        let Some(help) = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
        else {
            continue;
        };
        let key = (arg.get_id().to_string(), help.clone());
        if !arg.is_positional() && shown.contains(&key) {
            continue;
        }
        shown.push(key);
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| v.get_name().to_string())
            .collect();
        let value = if values.is_empty() {
            arg.get_value_names().map(|names| {
                names
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        } else {
            Some(values.join("|"))
        };
        let takes_value = arg.get_action().takes_values();
        let left = if arg.is_positional() {
            value.unwrap_or_else(|| arg.get_id().as_str().to_uppercase())
        } else {
            let flag = match (arg.get_short(), arg.get_long()) {
                (_, Some(long)) => format!("--{long}"),
                (Some(short), None) => format!("-{short}"),
                (None, None) => arg.get_id().to_string(),
            };
            match (takes_value, value) {
                (true, Some(v)) => format!("{flag} {v}"),
                (true, None) => format!("{flag} {}", arg.get_id().as_str().to_uppercase()),
                (false, _) => flag,
            }
        };
        for (i, line) in wrap(&help, 78 - indent.len() - WIDTH).iter().enumerate() {
            let head = if i == 0 { left.as_str() } else { "" };
            if i == 0 && head.len() >= WIDTH {
                text.push_str(&format!("{indent}{head}\n{indent}{:WIDTH$}{line}\n", ""));
            } else {
                text.push_str(&format!("{indent}{head:WIDTH$}{line}\n"));
            }
        }
    }
}

/// Every command, sorted by name.
pub fn all() -> &'static [&'static CommandSpec] {
    static ALL: OnceLock<Vec<&'static CommandSpec>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut list: Vec<&'static CommandSpec> = [
            builtin::COMMANDS,
            capture::COMMANDS,
            convert::COMMANDS,
            droptrace::COMMANDS,
            edit::COMMANDS,
            expect::COMMANDS,
            fakehost::COMMANDS,
            files::COMMANDS,
            filter::COMMANDS,
            ifconfig::COMMANDS,
            inject::COMMANDS,
            ip::COMMANDS,
            modules::COMMANDS,
            nettest::COMMANDS,
            oside::COMMANDS,
            system::COMMANDS,
            tap::COMMANDS,
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
const HIDDEN: &[&[CommandSpec]] = &[debug_tc::COMMANDS, debug_crash::COMMANDS];

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

/// Help asked for inside a command (`fakehost add --help`): the shell
/// prints it to standard output with status 0, as for `fakehost --help`.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct HelpShown(pub String);

/// Builds a usage error; `return Err(usage("missing DEST"))`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// Parses a duration in seconds such as `5`, `0.5` (0 to 1e9): the one
/// parser of seconds for every command.
pub fn parse_seconds(text: &str) -> anyhow::Result<std::time::Duration> {
    let secs: f64 = text
        .parse()
        .map_err(|_| usage(format!("not a number of seconds: {text}")))?;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(usage(format!("not a number of seconds: {text}")));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// `parse_seconds` for an option, with the option named in the error.
pub fn seconds_option(option: &str, text: &str) -> anyhow::Result<std::time::Duration> {
    parse_seconds(text).map_err(|e| usage(format!("{option}: {e}")))
}

pub use crate::util::Interrupted;

/// Parses arguments with a clap derive type. Parse errors become one-line
/// `UsageError`s (the shell adds the usage from the command's spec).
pub fn parse_args<T: clap::Parser>(name: &str, args: &[String]) -> anyhow::Result<T> {
    T::try_parse_from(std::iter::once(name.to_string()).chain(args.iter().cloned())).map_err(|e| {
        use clap::error::ErrorKind;
        match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                HelpShown(e.render().to_string()).into()
            }
            _ => usage(clap_error_line(&e)),
        }
    })
}

/// A clap error as one line in the shell's words: what is missing names
/// the arguments (clap's own first line does not), an unknown word says
/// whether it looked like an option.
fn clap_error_line(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(v)) => v.clone(),
        _ => Vec::new(),
    };
    // `<FILE>` or `--count <N>` as the user wrote it: FILE, --count.
    let plain = |arg: &str| {
        let arg = arg.trim_end_matches("...");
        match arg.split_once(' ') {
            Some((flag, _)) if flag.starts_with('-') => flag.to_string(),
            _ => arg.trim_matches(['<', '>', '[', ']']).to_string(),
        }
    };
    match e.kind() {
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            return "missing what to do (one of the forms below)".into();
        }
        ErrorKind::MissingRequiredArgument => {
            let names: Vec<String> = context(ContextKind::InvalidArg)
                .iter()
                .map(|a| plain(a))
                .collect();
            if let Some((last, rest)) = names.split_last() {
                return if rest.is_empty() {
                    format!("missing {last}")
                } else {
                    format!("missing {} and {last}", rest.join(", "))
                };
            }
        }
        ErrorKind::UnknownArgument => {
            if let Some(word) = context(ContextKind::InvalidArg).first() {
                return if word.starts_with('-') {
                    format!("unknown option {}", word.split('=').next().unwrap_or(word))
                } else {
                    format!("unexpected argument '{word}'")
                };
            }
        }
        ErrorKind::InvalidValue => {
            let arg = context(ContextKind::InvalidArg);
            let value = context(ContextKind::InvalidValue);
            if let (Some(arg), Some(value)) = (arg.first(), value.first()) {
                if value.is_empty() {
                    // `-t <TYPE>`: "needs a TYPE"; a one-letter name says less
                    // than "a value".
                    let wanted = arg
                        .split_once(' ')
                        .map(|(_, v)| v.trim_matches(['<', '>']).trim_end_matches("..."))
                        .filter(|v| v.len() > 1)
                        .unwrap_or("value");
                    return format!("{} needs a {wanted}", plain(arg));
                }
            }
        }
        _ => {}
    }
    let rendered = e.render().to_string();
    rendered
        .lines()
        .next()
        .unwrap_or("bad arguments")
        .trim_start_matches("error: ")
        .to_string()
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
            assert!(!c.usage_forms().is_empty(), "{} has no usage", c.name);
            assert!(!c.summary.is_empty(), "{} has no summary", c.name);
            assert!(c.usage_text().starts_with("usage: "));
        }
    }

    #[test]
    fn commands_with_options_describe_each_once_in_their_clap_definition() {
        for c in all() {
            let Some(cli) = c.cli else { continue };
            let mut cmd = cli();
            cmd.build();
            assert_eq!(cmd.get_name(), c.name);
            // The syntax lives in the definition, not beside it as well.
            assert!(c.usage.is_empty(), "{}: usage given twice", c.name);
            assert!(!c.usage_forms().is_empty(), "{}: no usage", c.name);
            let commands = std::iter::once(&cmd).chain(cmd.get_subcommands());
            for sub in commands {
                for arg in sub.get_arguments() {
                    if arg.is_hide_set() || ["help", "version"].contains(&arg.get_id().as_str()) {
                        continue;
                    }
                    assert!(
                        arg.get_help().is_some(),
                        "{} {}: --{} has no description",
                        c.name,
                        sub.get_name(),
                        arg.get_id()
                    );
                }
            }
            assert!(c.help_text().contains("\n  "), "{}: no option list", c.name);
        }
    }

    #[test]
    fn clap_errors_become_lines_that_name_what_is_wrong() {
        #[derive(clap::Parser, Debug)]
        #[command(name = "t", disable_help_flag = true)]
        struct T {
            #[arg(required = true)]
            file: String,
            #[arg(required = true)]
            dev: String,
            #[arg(long, value_name = "N")]
            count: Option<String>,
            #[arg(short = 't', value_name = "TYPE")]
            fstype: Option<String>,
        }
        let err = |line: &str| {
            let words: Vec<String> = line.split_whitespace().map(String::from).collect();
            parse_args::<T>("t", &words).unwrap_err().to_string()
        };
        assert_eq!(err(""), "missing FILE and DEV");
        assert_eq!(err("a"), "missing DEV");
        assert_eq!(err("a b --loud"), "unknown option --loud");
        assert_eq!(err("a b c"), "unexpected argument 'c'");
        assert_eq!(err("a b --count"), "--count needs a value");
        assert_eq!(err("a b -t"), "-t needs a TYPE");
    }
}
