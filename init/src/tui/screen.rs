//! The full-screen terminal of `edit` and `oside`, through crossterm: raw
//! mode, a frame of cells drawn with only the rows that changed, keys and
//! resizes. It asks nothing of the terminal beyond VT100 (cursor moves,
//! reverse video, erase): no mouse, no colours, so it works over a serial
//! console. The terminal comes back as it was when the `Screen` is dropped:
//! on return, on error and on a panic's unwind.

use std::io::{self, IsTerminal, Write};

use crossterm::cursor::{self, MoveTo};
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::style::{Attribute, Print, SetAttribute};
use crossterm::terminal::{self, Clear, ClearType};
use crossterm::{execute, queue};

/// The size used when neither the tty nor the terminal tells one.
pub const FALLBACK_SIZE: (u16, u16) = (80, 24);

/// How a cell is drawn: VT100 has reverse video and bold, nothing else is
/// assumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Style {
    #[default]
    Normal,
    Reverse,
    Bold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cell {
    ch: char,
    style: Style,
}

const BLANK: Cell = Cell {
    ch: ' ',
    style: Style::Normal,
};

/// One screenful to draw: rows of single-column cells and where the
/// cursor goes (hidden when `None`).
pub struct Frame {
    rows: Vec<Vec<Cell>>,
    pub cursor: Option<(u16, u16)>,
}

impl Frame {
    pub fn new((width, height): (u16, u16)) -> Frame {
        Frame {
            rows: vec![vec![BLANK; width as usize]; height as usize],
            cursor: None,
        }
    }

    /// Writes `text` at column `x` of row `y`, cut at the right edge;
    /// returns the column after it. Every char takes one column (control
    /// characters show as `?`): callers that show user text map tabs and
    /// control characters themselves.
    pub fn text(&mut self, x: u16, y: u16, text: &str, style: Style) -> u16 {
        let Some(row) = self.rows.get_mut(y as usize) else {
            return x;
        };
        let mut x = x as usize;
        for ch in text.chars() {
            if x >= row.len() {
                break;
            }
            let ch = if ch.is_control() { '?' } else { ch };
            row[x] = Cell { ch, style };
            x += 1;
        }
        x as u16
    }

    /// Gives a whole row one style (a status bar), keeping its text.
    pub fn style_row(&mut self, y: u16, style: Style) {
        if let Some(row) = self.rows.get_mut(y as usize) {
            row.iter_mut().for_each(|c| c.style = style);
        }
    }
}

/// The terminal in full-screen mode while this lives.
pub struct Screen {
    out: io::Stdout,
    size: (u16, u16),
    /// What the terminal shows now; empty when unknown (redraw it all).
    shown: Vec<Vec<Cell>>,
}

impl Screen {
    /// Takes over the terminal: stdin and stdout must be one.
    pub fn open() -> anyhow::Result<Screen> {
        if !io::stdin().is_terminal() || !io::stdout().is_terminal() {
            anyhow::bail!("needs a terminal (stdin and stdout are not one)");
        }
        terminal::enable_raw_mode()
            .map_err(|e| anyhow::anyhow!("cannot set the terminal to raw mode: {e}"))?;
        let mut screen = Screen {
            out: io::stdout(),
            size: FALLBACK_SIZE,
            shown: Vec::new(),
        };
        screen.size = screen.ask_size();
        // The alternate screen (xterm's) keeps the shell's screen; a VT100
        // ignores the unknown private mode and just gets cleared.
        execute!(
            screen.out,
            terminal::EnterAlternateScreen,
            Clear(ClearType::All)
        )?;
        Ok(screen)
    }

    /// The tty's size; when it says 0x0 (a serial console), the terminal's
    /// answer to a cursor-position report at the far corner; else 80x24.
    fn ask_size(&mut self) -> (u16, u16) {
        if let Some(size) = tty_size() {
            return size;
        }
        let _ = execute!(self.out, cursor::SavePosition, MoveTo(998, 998));
        // crossterm sends `ESC [ 6 n` and waits (at most 2 s) for the answer.
        let answer = cursor::position().ok();
        let _ = execute!(self.out, cursor::RestorePosition);
        match answer {
            Some((x, y)) if x > 0 && y > 0 => (x + 1, y + 1),
            _ => FALLBACK_SIZE,
        }
    }

    pub fn size(&self) -> (u16, u16) {
        self.size
    }

    /// Draws `frame`, sending only the rows that differ from the screen.
    pub fn draw(&mut self, frame: &Frame) -> io::Result<()> {
        if self.shown.len() != frame.rows.len()
            || self.shown.first().map(Vec::len) != frame.rows.first().map(Vec::len)
        {
            queue!(
                self.out,
                SetAttribute(Attribute::Reset),
                Clear(ClearType::All)
            )?;
            self.shown = vec![Vec::new(); frame.rows.len()];
        }
        queue!(self.out, cursor::Hide)?;
        let last = frame.rows.len().saturating_sub(1);
        for (y, row) in frame.rows.iter().enumerate() {
            if self.shown[y] == *row {
                continue;
            }
            queue!(self.out, MoveTo(0, y as u16))?;
            // The bottom-right cell is left alone: writing it makes some
            // terminals scroll.
            let cells = if y == last {
                &row[..row.len().saturating_sub(1)]
            } else {
                &row[..]
            };
            let mut style = Style::Normal;
            let mut run = String::new();
            for cell in cells {
                if cell.style != style {
                    queue!(self.out, Print(&run))?;
                    run.clear();
                    queue!(self.out, SetAttribute(Attribute::Reset))?;
                    match cell.style {
                        Style::Reverse => queue!(self.out, SetAttribute(Attribute::Reverse))?,
                        Style::Bold => queue!(self.out, SetAttribute(Attribute::Bold))?,
                        Style::Normal => {}
                    }
                    style = cell.style;
                }
                run.push(cell.ch);
            }
            queue!(self.out, Print(&run), SetAttribute(Attribute::Reset))?;
            self.shown[y] = row.clone();
        }
        if let Some((x, y)) = frame.cursor {
            queue!(self.out, MoveTo(x, y), cursor::Show)?;
        }
        self.out.flush()
    }

    /// Waits for the next key. A resize is taken in here (the next frame
    /// gets the new size and is drawn whole) and returned as `None`.
    pub fn next_key(&mut self) -> io::Result<Option<KeyEvent>> {
        loop {
            match event::read()? {
                Event::Key(key) if key.kind != KeyEventKind::Release => return Ok(Some(key)),
                Event::Resize(..) => {
                    // The tty's own numbers (see `tty_size`); a tty that
                    // says 0x0 keeps the size the terminal reported.
                    self.size = tty_size().unwrap_or(self.size);
                    self.shown.clear();
                    return Ok(None);
                }
                _ => {}
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        // Cleared while still on the alternate screen: an xterm then shows
        // the shell's screen again untouched, a VT100 (which has no
        // alternate screen) a clean one with the prompt at the top.
        let _ = execute!(
            self.out,
            SetAttribute(Attribute::Reset),
            Clear(ClearType::All),
            MoveTo(0, 0),
            cursor::Show,
            terminal::LeaveAlternateScreen
        );
        let _ = terminal::disable_raw_mode();
    }
}

/// The size the tty holds, if it holds one. Not crossterm's `size()`: when
/// the tty says 0x0 that asks `tput`, which answers terminfo's default
/// rather than what the terminal has.
fn tty_size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ writes a winsize struct we own.
    let size = unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        (libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) == 0).then_some(size)
    }?;
    (size.ws_col > 0 && size.ws_row > 0).then_some((size.ws_col, size.ws_row))
}

/// Whether `key` is Ctrl + `letter`.
pub fn is_ctrl(key: &KeyEvent, letter: char) -> bool {
    key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char(letter)
}

/// How `text` shows in a terminal column by column: tabs to the next
/// multiple of 8, control characters as `^X`. Each item is (char index in
/// `text`, the shown char, whether it is a stand-in); used to map the
/// cursor and to draw.
pub fn shown_chars(text: &[char]) -> Vec<(usize, char, bool)> {
    let mut cells = Vec::with_capacity(text.len());
    for (i, &ch) in text.iter().enumerate() {
        if ch == '\t' {
            let pad = 8 - cells.len() % 8;
            cells.extend(std::iter::repeat_n((i, ' ', false), pad));
        } else if ch.is_control() {
            let shown = char::from_u32((ch as u32 ^ 0x40) & 0x7f).unwrap_or('?');
            cells.push((i, '^', true));
            cells.push((i, shown, true));
        } else {
            cells.push((i, ch, false));
        }
    }
    cells
}

/// The column at which char `index` of `text` starts when shown.
pub fn column_of(text: &[char], index: usize) -> usize {
    let mut col = 0;
    for &ch in &text[..index.min(text.len())] {
        col += match ch {
            '\t' => 8 - col % 8,
            c if c.is_control() => 2,
            _ => 1,
        };
    }
    col
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabs_and_control_characters_take_the_columns_they_show_in() {
        let text: Vec<char> = "a\tb\u{1}c".chars().collect();
        let shown: String = shown_chars(&text).iter().map(|c| c.1).collect();
        assert_eq!(shown, "a       b^Ac");
        assert_eq!(column_of(&text, 2), 8);
        assert_eq!(column_of(&text, 4), 11);
    }

    #[test]
    fn a_frame_cuts_text_at_its_right_edge() {
        let mut frame = Frame::new((5, 2));
        assert_eq!(frame.text(3, 1, "abcdef", Style::Normal), 5);
        let row: String = frame.rows[1].iter().map(|c| c.ch).collect();
        assert_eq!(row, "   ab");
    }
}
