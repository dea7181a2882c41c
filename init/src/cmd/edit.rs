//! `edit FILE`: a full-screen text editor for fixing a script in a VM that
//! has no other editor. The file is kept as lines of chars and written back
//! exactly: the bytes saved are the bytes typed (no newline is added, none
//! is lost, `\r` and tabs stay).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::{CommandFactory, Parser};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{parse_args, CommandSpec};
use crate::packet::files::AtomicFile;
use crate::shell::Ctx;
use crate::tui::screen::{column_of, is_ctrl, shown_chars, Frame, Screen, Style};
use crate::util::io_error;

pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "edit",
    usage: "",
    summary: "full-screen text editor (works over a serial console)",
    help: "Keys:\n\
           \x20 arrows, PgUp/PgDn, Home/End   move\n\
           \x20 Enter, Tab, Backspace, Delete edit; other keys insert what they type\n\
           \x20 Ctrl+S                        save\n\
           \x20 Ctrl+X                        save and exit\n\
           \x20 Ctrl+Q                        quit (asks first when there are unsaved changes)\n\
           The status line shows the file, line:column and whether it is modified.\n\
           A file that does not exist is created on the first save. Files up to\n\
           16 MiB of UTF-8 text are taken.",
    run: edit_cmd,
    cli: Some(EditArgs::command),
}];

#[derive(Parser, Debug)]
#[command(name = "edit", override_usage = "edit FILE", disable_help_flag = true)]
struct EditArgs {
    /// The file to edit (created on the first save if it does not exist)
    file: String,
}

/// The largest file taken: the buffer is a Vec of chars (4 bytes each).
const MAX_FILE: u64 = 16 << 20;

fn edit_cmd(_ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let args: EditArgs = parse_args("edit", args)?;
    if args.file.is_empty() {
        return Err(super::usage("FILE is empty"));
    }
    let path = PathBuf::from(&args.file);
    // Everything that can be wrong with the file is found before the
    // terminal is touched.
    let buffer = Buffer::load(&path).map_err(|e| anyhow!("{}: {e}", args.file))?;
    let mut screen = Screen::open()?;
    let mut editor = Editor {
        name: args.file,
        path,
        buffer,
        row: 0,
        col: 0,
        want_col: 0,
        top: 0,
        left: 0,
        modified: false,
        message: String::new(),
        confirm_quit: false,
    };
    editor.run(&mut screen)?;
    Ok(0)
}

/// The text: always at least one line; joined with `\n` on save.
struct Buffer {
    lines: Vec<Vec<char>>,
}

impl Buffer {
    fn load(path: &Path) -> Result<Buffer, String> {
        let bytes = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(crate::util::io_error(&e)),
            Ok(m) if m.is_dir() => return Err("is a directory".into()),
            Ok(m) if m.len() > MAX_FILE => {
                return Err(format!(
                    "{} bytes, more than the {} MiB edit takes",
                    m.len(),
                    MAX_FILE >> 20
                ))
            }
            Ok(_) => std::fs::read(path).map_err(|e| crate::util::io_error(&e))?,
        };
        let text = String::from_utf8(bytes).map_err(|e| {
            format!(
                "not UTF-8 text (byte {} is not valid): not opened",
                e.utf8_error().valid_up_to()
            )
        })?;
        Ok(Buffer {
            lines: text.split('\n').map(|l| l.chars().collect()).collect(),
        })
    }

    fn bytes(&self) -> Vec<u8> {
        let mut text = String::new();
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                text.push('\n');
            }
            text.extend(line.iter());
        }
        text.into_bytes()
    }
}

struct Editor {
    name: String,
    path: PathBuf,
    buffer: Buffer,
    /// The cursor: line and char index in it.
    row: usize,
    col: usize,
    /// The column Up/Down aim for (kept across shorter lines).
    want_col: usize,
    /// The first line and the first column shown.
    top: usize,
    left: usize,
    modified: bool,
    message: String,
    /// Ctrl+Q with unsaved changes asked; the next key answers.
    confirm_quit: bool,
}

impl Editor {
    fn run(&mut self, screen: &mut Screen) -> anyhow::Result<()> {
        loop {
            let frame = self.render(screen.size());
            screen.draw(&frame)?;
            let Some(key) = screen.next_key()? else {
                continue;
            };
            if self.key(&key, screen.size()) {
                return Ok(());
            }
        }
    }

    /// Rows of text on a screen `height` high (status and message below).
    fn text_rows(height: u16) -> usize {
        usize::from(height.saturating_sub(2)).max(1)
    }

    /// Handles a key; true when the editor is done.
    fn key(&mut self, key: &KeyEvent, size: (u16, u16)) -> bool {
        if self.confirm_quit {
            self.confirm_quit = false;
            self.message.clear();
            return match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => self.save(),
                KeyCode::Char('n') | KeyCode::Char('N') => true,
                _ => {
                    self.message = "quit cancelled".into();
                    false
                }
            };
        }
        self.message.clear();
        let page = Self::text_rows(size.1);
        let line_len = self.buffer.lines[self.row].len();
        let mut vertical = false;
        match key.code {
            _ if is_ctrl(key, 's') => {
                self.save();
            }
            _ if is_ctrl(key, 'x') => return self.save(),
            _ if is_ctrl(key, 'q') => {
                if !self.modified {
                    return true;
                }
                self.confirm_quit = true;
                self.message =
                    "unsaved changes: save them before quitting? (y)es, (n)o, other key cancels"
                        .into();
            }
            _ if is_ctrl(key, 'c') => {
                self.message = "Ctrl+Q quits, Ctrl+X saves and exits".into();
            }
            KeyCode::Left if self.col > 0 => self.col -= 1,
            KeyCode::Left if self.row > 0 => {
                self.row -= 1;
                self.col = self.buffer.lines[self.row].len();
            }
            KeyCode::Right if self.col < line_len => self.col += 1,
            KeyCode::Right if self.row + 1 < self.buffer.lines.len() => {
                self.row += 1;
                self.col = 0;
            }
            KeyCode::Up => {
                self.row = self.row.saturating_sub(1);
                vertical = true;
            }
            KeyCode::Down => {
                self.row = (self.row + 1).min(self.buffer.lines.len() - 1);
                vertical = true;
            }
            KeyCode::PageUp => {
                self.row = self.row.saturating_sub(page);
                self.top = self.top.saturating_sub(page);
                vertical = true;
            }
            KeyCode::PageDown => {
                self.row = (self.row + page).min(self.buffer.lines.len() - 1);
                self.top += page;
                vertical = true;
            }
            KeyCode::Home => self.col = 0,
            KeyCode::End => self.col = line_len,
            KeyCode::Enter => {
                let rest = self.buffer.lines[self.row].split_off(self.col);
                self.buffer.lines.insert(self.row + 1, rest);
                self.row += 1;
                self.col = 0;
                self.modified = true;
            }
            KeyCode::Backspace if self.col > 0 => {
                self.col -= 1;
                self.buffer.lines[self.row].remove(self.col);
                self.modified = true;
            }
            KeyCode::Backspace if self.row > 0 => {
                let line = self.buffer.lines.remove(self.row);
                self.row -= 1;
                self.col = self.buffer.lines[self.row].len();
                self.buffer.lines[self.row].extend(line);
                self.modified = true;
            }
            KeyCode::Delete if self.col < line_len => {
                self.buffer.lines[self.row].remove(self.col);
                self.modified = true;
            }
            KeyCode::Delete if self.row + 1 < self.buffer.lines.len() => {
                let next = self.buffer.lines.remove(self.row + 1);
                self.buffer.lines[self.row].extend(next);
                self.modified = true;
            }
            KeyCode::Tab => self.insert('\t'),
            KeyCode::Char(c)
                if !key
                    .modifiers
                    .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
            {
                self.insert(c)
            }
            _ => {}
        }
        let line = &self.buffer.lines[self.row];
        if vertical {
            // Aim for the same screen column on the new line.
            self.col = (0..=line.len())
                .take_while(|&i| column_of(line, i) <= self.want_col)
                .last()
                .unwrap_or(0);
        } else {
            self.want_col = column_of(line, self.col);
        }
        false
    }

    fn insert(&mut self, c: char) {
        self.buffer.lines[self.row].insert(self.col, c);
        self.col += 1;
        self.modified = true;
    }

    /// Saves; true when it worked (the message says what happened).
    fn save(&mut self) -> bool {
        let bytes = self.buffer.bytes();
        // Through a temporary file: a failed save leaves the file as it was.
        let written = AtomicFile::create(&self.path)
            .map_err(|e| e.reason())
            .and_then(|mut file| {
                file.write_all(&bytes).map_err(|e| io_error(&e))?;
                file.commit().map_err(|e| e.reason())
            });
        match written {
            Ok(()) => {
                self.modified = false;
                self.message = format!("saved {} bytes to {}", bytes.len(), self.name);
                true
            }
            Err(e) => {
                self.message = format!("cannot save {}: {e} (nothing written)", self.name);
                false
            }
        }
    }

    fn render(&mut self, (width, height): (u16, u16)) -> Frame {
        let mut frame = Frame::new((width, height));
        let rows = Self::text_rows(height);
        let width = usize::from(width).max(1);
        // Keep the cursor on screen, vertically and horizontally.
        self.top = self.top.min(self.buffer.lines.len().saturating_sub(1));
        if self.row < self.top {
            self.top = self.row;
        } else if self.row >= self.top + rows {
            self.top = self.row + 1 - rows;
        }
        let cursor_col = column_of(&self.buffer.lines[self.row], self.col);
        if cursor_col < self.left {
            self.left = cursor_col.saturating_sub(width / 4);
        } else if cursor_col >= self.left + width {
            self.left = cursor_col + 1 - width + width / 4;
        }
        for (y, line) in self.buffer.lines[self.top..].iter().take(rows).enumerate() {
            for (x, (_, ch, stand_in)) in shown_chars(line)
                .into_iter()
                .skip(self.left)
                .take(width)
                .enumerate()
            {
                let style = if stand_in {
                    Style::Reverse
                } else {
                    Style::Normal
                };
                frame.text(x as u16, y as u16, &ch.to_string(), style);
            }
        }
        let status_y = rows as u16;
        let left = format!(
            " {}{}",
            self.name,
            if self.modified { " [modified]" } else { "" }
        );
        let right = format!(
            "line {}:{} of {} ",
            self.row + 1,
            self.col + 1,
            self.buffer.lines.len()
        );
        let gap = width.saturating_sub(left.chars().count() + right.chars().count());
        frame.text(
            0,
            status_y,
            &format!("{left}{}{right}", " ".repeat(gap.max(1))),
            Style::Reverse,
        );
        frame.style_row(status_y, Style::Reverse);
        let message = if self.message.is_empty() {
            "^S save  ^X save and exit  ^Q quit"
        } else {
            &self.message
        };
        frame.text(0, status_y + 1, message, Style::Normal);
        frame.cursor = Some((
            (cursor_col - self.left) as u16,
            (self.row - self.top) as u16,
        ));
        frame
    }
}
