//! The interactive shell: rustyline for editing (arrows, Home/End, Ctrl-A/E/
//! K/U/W, history) and Tab completion of command names and paths.

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Config, Context, Editor, Helper};

use super::{Flow, Origin, Output, Shell};

/// Completes the first word from the command list, later words as paths.
struct ShellHelper {
    files: FilenameCompleter,
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        // The start of the current command: after the last `;`.
        let command_start = before.rfind(';').map_or(0, |i| i + 1);
        let current = &before[command_start..];
        let word_start = current
            .rfind([' ', '\t'])
            .map_or(command_start, |i| command_start + i + 1);
        let is_first_word = before[command_start..word_start].trim().is_empty();
        let prefix = &before[word_start..];
        if is_first_word && !prefix.contains('/') {
            let candidates = crate::cmd::all()
                .iter()
                .filter(|c| c.name.starts_with(prefix))
                .map(|c| Pair {
                    display: c.name.to_string(),
                    replacement: format!("{} ", c.name),
                })
                .collect();
            return Ok((word_start, candidates));
        }
        self.files.complete(line, pos, ctx)
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

/// Gives a serial console whose size the kernel does not know (0x0) the
/// classic 80x24, so line editing and `ps` wrap sensibly.
pub fn default_terminal_size() {
    let fd = libc::STDIN_FILENO;
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ read/write a winsize struct we own.
    unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        if libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) == 0 && size.ws_col == 0 {
            size.ws_col = 80;
            size.ws_row = 24;
            libc::ioctl(fd, libc::TIOCSWINSZ, &size);
        }
    }
}

/// Runs the interactive shell until `exit` (or end of input, outside PID 1).
/// Returns the status to exit with.
pub fn interactive(shell: &mut Shell) -> i32 {
    default_terminal_size();
    let config = Config::builder()
        .auto_add_history(true)
        .max_history_size(1000)
        .map(|b| b.build())
        .unwrap_or_default();
    let mut editor: Editor<ShellHelper, rustyline::history::DefaultHistory> =
        match Editor::with_config(config) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("shell: cannot start the line editor: {e}");
                return 1;
            }
        };
    editor.set_helper(Some(ShellHelper {
        files: FilenameCompleter::new(),
    }));
    let mut out = Output::stdout();
    loop {
        let prompt = if shell.last_status == 0 {
            "myinit# ".to_string()
        } else {
            format!("myinit [{}]# ", shell.last_status)
        };
        match editor.readline(&prompt) {
            Ok(line) => {
                if let Flow::Exit(status) = shell.run_line(&line, &mut out, &Origin::Interactive) {
                    return status;
                }
            }
            // Ctrl-C at the prompt drops the line, as in bash.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => {
                if shell.state.is_pid1 {
                    eprintln!("(PID 1: use poweroff or reboot to leave)");
                    continue;
                }
                return shell.last_status;
            }
            Err(e) => {
                eprintln!("shell: {e}");
                if shell.state.is_pid1 {
                    // Do not spin on a console that keeps failing.
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    continue;
                }
                return 1;
            }
        }
    }
}
