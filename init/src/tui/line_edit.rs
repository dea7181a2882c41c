//! A one-line editor inside a full-screen tool (`oside`'s field values):
//! arrows, Home/End, Delete, Backspace, Ctrl+A/E/K/U; Enter takes the
//! line, Esc gives it up. rustyline owns the terminal itself, so it cannot
//! run inside a screen that `Screen` draws.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::screen::{is_ctrl, Frame, Style};

/// What a key did to the line.
#[derive(Debug, PartialEq, Eq)]
pub enum LineOutcome {
    Editing,
    Done(String),
    Cancelled,
}

/// The line being edited and the cursor in it (a char index).
#[derive(Debug, Clone)]
pub struct LineEdit {
    chars: Vec<char>,
    cursor: usize,
}

impl LineEdit {
    /// Starts with `text`, the cursor at its end.
    pub fn new(text: &str) -> LineEdit {
        let chars: Vec<char> = text.chars().collect();
        LineEdit {
            cursor: chars.len(),
            chars,
        }
    }

    pub fn text(&self) -> String {
        self.chars.iter().collect()
    }

    pub fn key(&mut self, key: &KeyEvent) -> LineOutcome {
        let ctrl = |c| is_ctrl(key, c);
        match key.code {
            KeyCode::Enter => return LineOutcome::Done(self.text()),
            KeyCode::Esc => return LineOutcome::Cancelled,
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(self.chars.len()),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = self.chars.len(),
            KeyCode::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                self.chars.remove(self.cursor);
            }
            KeyCode::Delete if self.cursor < self.chars.len() => {
                self.chars.remove(self.cursor);
            }
            _ if ctrl('a') => self.cursor = 0,
            _ if ctrl('e') => self.cursor = self.chars.len(),
            _ if ctrl('k') => self.chars.truncate(self.cursor),
            _ if ctrl('u') => {
                self.chars.drain(..self.cursor);
                self.cursor = 0;
            }
            KeyCode::Char(c)
                if !key
                    .modifiers
                    .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
            {
                self.chars.insert(self.cursor, c);
                self.cursor += 1;
            }
            _ => {}
        }
        LineOutcome::Editing
    }

    /// Draws the line in `width` columns at (x, y), scrolled so the cursor
    /// shows, and puts the frame's cursor on it.
    pub fn draw(&self, frame: &mut Frame, x: u16, y: u16, width: u16) {
        let width = usize::from(width.max(2));
        let first = (self.cursor + 1).saturating_sub(width);
        let shown: String = self.chars[first..]
            .iter()
            .take(width)
            .map(|c| if c.is_control() { '?' } else { *c })
            .collect();
        frame.text(x, y, &shown, Style::Normal);
        frame.cursor = Some((x + (self.cursor - first) as u16, y));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(line: &mut LineEdit, code: KeyCode, modifiers: KeyModifiers) -> LineOutcome {
        line.key(&KeyEvent::new(code, modifiers))
    }

    #[test]
    fn the_line_editing_keys_change_the_text_where_the_cursor_is() {
        let none = KeyModifiers::NONE;
        let mut line = LineEdit::new("10.0.0.2");
        press(&mut line, KeyCode::Backspace, none);
        press(&mut line, KeyCode::Char('9'), none);
        assert_eq!(line.text(), "10.0.0.9");
        press(&mut line, KeyCode::Home, none);
        press(&mut line, KeyCode::Delete, none);
        press(&mut line, KeyCode::Char('2'), none);
        assert_eq!(line.text(), "20.0.0.9");
        press(&mut line, KeyCode::Right, none);
        press(&mut line, KeyCode::Char('k'), KeyModifiers::CONTROL);
        assert_eq!(line.text(), "20");
        press(&mut line, KeyCode::Left, none);
        press(&mut line, KeyCode::Char('u'), KeyModifiers::CONTROL);
        assert_eq!(line.text(), "0");
        press(&mut line, KeyCode::Char('e'), KeyModifiers::CONTROL);
        press(&mut line, KeyCode::Char('7'), none);
        assert_eq!(
            press(&mut line, KeyCode::Enter, none),
            LineOutcome::Done("07".into())
        );
        assert_eq!(press(&mut line, KeyCode::Esc, none), LineOutcome::Cancelled);
    }
}
