//! The one tokenizer and parser of myinit's command language, shared by
//! scripts, the interactive shell and `run`. A line parses into commands
//! (separated by `;`); variables stay unexpanded in the tree so that
//! `A=1; echo $A` sees the assignment made earlier on the same line.

use thiserror::Error;

/// The longest line accepted; longer ones are refused whole, not truncated.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SyntaxError {
    #[error("unterminated {0} quote")]
    UnterminatedQuote(&'static str),
    #[error("missing file name after '{0}'")]
    MissingRedirectTarget(&'static str),
    #[error("unterminated '${{'")]
    UnterminatedBrace,
    #[error("bad variable name in '${{{0}}}'")]
    BadVariableName(String),
    #[error("line ends with a backslash")]
    TrailingBackslash,
    #[error("line too long ({0} bytes, at most {MAX_LINE_BYTES})")]
    LineTooLong(usize),
    #[error("line is not valid UTF-8 (byte {0:#04x} at offset {1})")]
    NotUtf8(u8, usize),
    /// sh syntax this language does not have (pipes, `&&`, `&`, `2>`,
    /// command substitution): refused so it is never misread as words.
    #[error("'{token}' at column {column} is not supported (put it in single quotes to pass it literally)")]
    Unsupported { token: String, column: usize },
}

/// The most bytes one variable's value may hold, like a line.
pub const MAX_VALUE_BYTES: usize = MAX_LINE_BYTES;
/// The most bytes the expanded words and redirection targets of one command
/// may hold: room for a few full-size values, far below what would strain memory.
pub const MAX_COMMAND_BYTES: usize = 4 * MAX_LINE_BYTES;

/// An expansion that would pass its bound: the variable being expanded
/// then (`None` for literal text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLong {
    pub var: Option<String>,
    pub limit: usize,
}

impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.var {
            Some(name) => write!(f, "more than {} bytes when expanding ${name}", self.limit),
            None => write!(f, "more than {} bytes", self.limit),
        }
    }
}

/// How many bytes an expansion may still produce; checked as text is
/// appended, so an oversized result is refused before it is built.
#[derive(Debug)]
pub struct Budget {
    left: usize,
    limit: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Budget { left: limit, limit }
    }

    fn take(&mut self, bytes: usize, var: Option<&str>) -> Result<(), TooLong> {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(TooLong {
                var: var.map(str::to_string),
                limit: self.limit,
            }),
        }
    }
}

/// One piece of a word, before variable expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Unquoted text (may hold `=` that makes the word an assignment).
    Bare(String),
    /// Text from quotes or a backslash escape: never split, never special.
    Quoted(String),
    /// `$NAME` / `${NAME}` / `$?`; `quoted` ones are not split on blanks.
    Var { name: String, quoted: bool },
}

/// A word: parts that are glued together after expansion.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Word(pub Vec<Part>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectKind {
    /// `< FILE`
    Input,
    /// `> FILE`
    Truncate,
    /// `>> FILE`
    Append,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub kind: RedirectKind,
    pub target: Word,
}

/// One command: its words and redirections, in source order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SimpleCommand {
    pub words: Vec<Word>,
    pub redirects: Vec<Redirect>,
}

impl Word {
    fn push_char(&mut self, c: char, quoted: bool) {
        match (self.0.last_mut(), quoted) {
            (Some(Part::Bare(s)), false) | (Some(Part::Quoted(s)), true) => s.push(c),
            _ => self.0.push(if quoted {
                Part::Quoted(c.to_string())
            } else {
                Part::Bare(c.to_string())
            }),
        }
    }

    /// The digits of a word that is only unquoted digits (`2` of `2>`).
    fn as_fd_number(&self) -> Option<&str> {
        match self.0.as_slice() {
            [Part::Bare(s)] if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => Some(s),
            _ => None,
        }
    }

    /// `NAME=value` when the word starts with a bare `NAME=`: (name, rest of the word).
    pub fn as_assignment(&self) -> Option<(String, Word)> {
        let Some(Part::Bare(first)) = self.0.first() else {
            return None;
        };
        let (name, value) = first.split_once('=')?;
        if !is_valid_name(name) {
            return None;
        }
        let mut rest = Word::default();
        if !value.is_empty() {
            rest.0.push(Part::Bare(value.to_string()));
        }
        rest.0.extend(self.0[1..].iter().cloned());
        Some((name.to_string(), rest))
    }

    /// Expands variables with `lookup`. Bare variable text is split on
    /// blanks (as sh does), so one word may give zero or several fields.
    pub fn expand(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
        budget: &mut Budget,
    ) -> Result<Vec<String>, TooLong> {
        let mut fields: Vec<String> = Vec::new();
        let mut current = String::new();
        // Whether `current` is a field even if empty (quotes make `""` a field).
        let mut has_field = false;
        for part in &self.0 {
            match part {
                Part::Bare(s) | Part::Quoted(s) => {
                    budget.take(s.len(), None)?;
                    current.push_str(s);
                    has_field = has_field || matches!(part, Part::Quoted(_)) || !s.is_empty();
                }
                Part::Var { name, quoted: true } => {
                    let value = lookup(name).unwrap_or_default();
                    budget.take(value.len(), Some(name))?;
                    current.push_str(&value);
                    has_field = true;
                }
                Part::Var {
                    name,
                    quoted: false,
                } => {
                    let value = lookup(name).unwrap_or_default();
                    budget.take(value.len(), Some(name))?;
                    let mut pieces = value.split([' ', '\t', '\n']).peekable();
                    let starts_blank = value.starts_with([' ', '\t', '\n']);
                    if starts_blank && has_field {
                        fields.push(std::mem::take(&mut current));
                        has_field = false;
                    }
                    while let Some(piece) = pieces.next() {
                        if !piece.is_empty() {
                            current.push_str(piece);
                            has_field = true;
                        }
                        if pieces.peek().is_some() && has_field {
                            fields.push(std::mem::take(&mut current));
                            has_field = false;
                        }
                    }
                }
            }
        }
        if has_field {
            fields.push(current);
        }
        Ok(fields)
    }

    /// The word's text with variables expanded but no splitting
    /// (redirect targets, assigned values).
    pub fn expand_joined(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
        budget: &mut Budget,
    ) -> Result<String, TooLong> {
        let mut text = String::new();
        for part in &self.0 {
            match part {
                Part::Bare(s) | Part::Quoted(s) => {
                    budget.take(s.len(), None)?;
                    text.push_str(s);
                }
                Part::Var { name, .. } => {
                    let value = lookup(name).unwrap_or_default();
                    budget.take(value.len(), Some(name))?;
                    text.push_str(&value);
                }
            }
        }
        Ok(text)
    }
}

/// Letters, digits and `_`, not starting with a digit.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Checks a raw line before parsing: size and UTF-8.
pub fn decode_line(bytes: &[u8]) -> Result<&str, SyntaxError> {
    if bytes.len() > MAX_LINE_BYTES {
        return Err(SyntaxError::LineTooLong(bytes.len()));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        SyntaxError::NotUtf8(bytes[at], at)
    })
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\r' || c == '\n'
}

/// The characters of a line with their byte offsets, for error columns.
type Chars<'a> = std::iter::Peekable<std::str::CharIndices<'a>>;

/// The 1-based column (in characters) of byte offset `at` of `line`.
fn column(line: &str, at: usize) -> usize {
    line[..at].chars().count() + 1
}

fn unsupported(line: &str, at: usize, token: &str) -> SyntaxError {
    SyntaxError::Unsupported {
        token: token.to_string(),
        column: column(line, at),
    }
}

/// Parses one line into its commands. Empty and comment-only lines give none.
pub fn parse_line(line: &str) -> Result<Vec<SimpleCommand>, SyntaxError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(SyntaxError::LineTooLong(line.len()));
    }
    let mut commands = Vec::new();
    let mut command = SimpleCommand::default();
    let mut word: Option<Word> = None;
    // The redirection waiting for its target word.
    let mut pending: Option<RedirectKind> = None;
    let mut chars: Chars<'_> = line.char_indices().peekable();

    // Ends the word being read, giving it to a pending redirection or the command.
    let finish_word = |word: &mut Option<Word>,
                       pending: &mut Option<RedirectKind>,
                       command: &mut SimpleCommand| {
        if let Some(w) = word.take() {
            match pending.take() {
                Some(kind) => command.redirects.push(Redirect { kind, target: w }),
                None => command.words.push(w),
            }
        }
    };
    let op_name = |kind: RedirectKind| match kind {
        RedirectKind::Input => "<",
        RedirectKind::Truncate => ">",
        RedirectKind::Append => ">>",
    };

    while let Some((at, c)) = chars.next() {
        match c {
            c if is_blank(c) => finish_word(&mut word, &mut pending, &mut command),
            '#' if word.is_none() => break,
            ';' => {
                finish_word(&mut word, &mut pending, &mut command);
                if let Some(kind) = pending {
                    return Err(SyntaxError::MissingRedirectTarget(op_name(kind)));
                }
                if !command.words.is_empty() || !command.redirects.is_empty() {
                    commands.push(std::mem::take(&mut command));
                }
            }
            '|' | '&' => {
                let mut token = c.to_string();
                if let Some(&(_, next)) = chars.peek() {
                    if next == c || (c == '&' && next == '>') {
                        token.push(next);
                    }
                }
                return Err(unsupported(line, at, &token));
            }
            '`' => return Err(unsupported(line, at, "`")),
            '<' if chars.peek().map(|&(_, n)| n) == Some('<') => {
                // A here-document.
                return Err(unsupported(line, at, "<<"));
            }
            '<' | '>' => {
                let kind = if c == '<' {
                    RedirectKind::Input
                } else if chars.peek().map(|&(_, n)| n) == Some('>') {
                    chars.next();
                    RedirectKind::Append
                } else {
                    RedirectKind::Truncate
                };
                // `2>`, `0<`: sh reads the digits as a file descriptor.
                if let Some(digits) = word.as_ref().and_then(Word::as_fd_number) {
                    let start = at - digits.len();
                    return Err(unsupported(
                        line,
                        start,
                        &format!("{digits}{}", op_name(kind)),
                    ));
                }
                // `>&2`, `<&0`: descriptor duplication.
                if chars.peek().map(|&(_, n)| n) == Some('&') {
                    return Err(unsupported(line, at, &format!("{}&", op_name(kind))));
                }
                finish_word(&mut word, &mut pending, &mut command);
                if let Some(kind) = pending {
                    return Err(SyntaxError::MissingRedirectTarget(op_name(kind)));
                }
                pending = Some(kind);
            }
            '\\' => {
                let (_, escaped) = chars.next().ok_or(SyntaxError::TrailingBackslash)?;
                word.get_or_insert_with(Word::default)
                    .push_char(escaped, true);
            }
            '\'' => {
                let w = word.get_or_insert_with(Word::default);
                // An empty '' still makes a (quoted, empty) part.
                w.0.push(Part::Quoted(String::new()));
                loop {
                    match chars.next() {
                        None => return Err(SyntaxError::UnterminatedQuote("single")),
                        Some((_, '\'')) => break,
                        Some((_, c)) => w.push_char(c, true),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(Word::default);
                w.0.push(Part::Quoted(String::new()));
                loop {
                    match chars.next() {
                        None => return Err(SyntaxError::UnterminatedQuote("double")),
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, e @ ('"' | '\\' | '$' | '`'))) => w.push_char(e, true),
                            Some((_, other)) => {
                                w.push_char('\\', true);
                                w.push_char(other, true);
                            }
                            None => return Err(SyntaxError::UnterminatedQuote("double")),
                        },
                        // Substitutions in sh, even inside double quotes.
                        Some((at, '`')) => return Err(unsupported(line, at, "`")),
                        Some((at, '$')) => match read_var(line, at, &mut chars)? {
                            Some(name) => w.0.push(Part::Var { name, quoted: true }),
                            None => w.push_char('$', true),
                        },
                        Some((_, c)) => w.push_char(c, true),
                    }
                }
            }
            '$' => {
                let w = word.get_or_insert_with(Word::default);
                match read_var(line, at, &mut chars)? {
                    Some(name) => w.0.push(Part::Var {
                        name,
                        quoted: false,
                    }),
                    None => w.push_char('$', false),
                }
            }
            c => word.get_or_insert_with(Word::default).push_char(c, false),
        }
    }
    finish_word(&mut word, &mut pending, &mut command);
    if let Some(kind) = pending {
        return Err(SyntaxError::MissingRedirectTarget(op_name(kind)));
    }
    if !command.words.is_empty() || !command.redirects.is_empty() {
        commands.push(command);
    }
    Ok(commands)
}

/// Reads a variable reference after the `$` at byte `at`: `NAME`,
/// `{NAME}` or `?`. `None` when `$` is not followed by a name (then it is
/// a literal `$`); `$(` is refused as command substitution.
fn read_var(line: &str, at: usize, chars: &mut Chars<'_>) -> Result<Option<String>, SyntaxError> {
    match chars.peek().map(|&(_, c)| c) {
        Some('(') => Err(unsupported(line, at, "$(")),
        Some('?') => {
            chars.next();
            Ok(Some("?".into()))
        }
        Some('{') => {
            chars.next();
            let mut name = String::new();
            loop {
                match chars.next() {
                    None => return Err(SyntaxError::UnterminatedBrace),
                    Some((_, '}')) => break,
                    Some((_, c)) => name.push(c),
                }
            }
            if name == "?" || is_valid_name(&name) {
                Ok(Some(name))
            } else {
                Err(SyntaxError::BadVariableName(name))
            }
        }
        Some(c) if c == '_' || c.is_ascii_alphabetic() => {
            let mut name = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c == '_' || c.is_ascii_alphanumeric() {
                    name.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            Ok(Some(name))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars() -> HashMap<String, String> {
        [
            ("A", "one"),
            ("SPACED", "x y  z"),
            ("EMPTY", ""),
            ("?", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Parses and expands each command's words with the test variables.
    fn words(line: &str) -> Vec<Vec<String>> {
        let v = vars();
        parse_line(line)
            .unwrap()
            .iter()
            .map(|c| {
                c.words
                    .iter()
                    .flat_map(|w| {
                        w.expand(&|n| v.get(n).cloned(), &mut Budget::new(MAX_COMMAND_BYTES))
                            .unwrap()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn splits_words_on_blanks() {
        assert_eq!(words("echo  a\tb "), vec![vec!["echo", "a", "b"]]);
    }

    #[test]
    fn double_quotes_keep_text_without_quotes() {
        assert_eq!(
            words(r#"echo "Running automated tests...""#),
            vec![vec!["echo", "Running automated tests..."]]
        );
    }

    #[test]
    fn single_quotes_do_not_expand() {
        assert_eq!(words("echo '$A' \"$A\""), vec![vec!["echo", "$A", "one"]]);
    }

    #[test]
    fn backslash_escapes_specials() {
        assert_eq!(
            words(r"echo a\ b \; \# \$A \>"),
            vec![vec!["echo", "a b", ";", "#", "$A", ">"]]
        );
        assert_eq!(
            words(r#"echo "q\"x\\y\n""#),
            vec![vec!["echo", "q\"x\\y\\n"]]
        );
    }

    #[test]
    fn comments_whole_line_and_trailing() {
        assert!(parse_line("# a comment").unwrap().is_empty());
        assert!(parse_line("   # indented").unwrap().is_empty());
        assert_eq!(words("echo hi # trailing"), vec![vec!["echo", "hi"]]);
        // `#` inside a word is text, as in sh.
        assert_eq!(words("echo a#b"), vec![vec!["echo", "a#b"]]);
    }

    #[test]
    fn semicolons_separate_commands() {
        assert_eq!(
            words("echo a; echo b;;echo c;"),
            vec![vec!["echo", "a"], vec!["echo", "b"], vec!["echo", "c"]]
        );
    }

    #[test]
    fn variables_expand_in_both_forms() {
        assert_eq!(
            words("echo $A ${A}x $?"),
            vec![vec!["echo", "one", "onex", "3"]]
        );
        assert_eq!(words("echo $UNSET end"), vec![vec!["echo", "end"]]);
        assert_eq!(words("echo \"$EMPTY\""), vec![vec!["echo", ""]]);
        assert_eq!(words("echo $ a$"), vec![vec!["echo", "$", "a$"]]);
    }

    #[test]
    fn unquoted_variables_split_quoted_do_not() {
        assert_eq!(
            words("echo $SPACED \"$SPACED\""),
            vec![vec!["echo", "x", "y", "z", "x y  z"]]
        );
    }

    #[test]
    fn redirections_attached_or_separate() {
        let cmds = parse_line("echo add nat46dev > /proc/net/nat46/control").unwrap();
        assert_eq!(cmds[0].words.len(), 3);
        assert_eq!(cmds[0].redirects[0].kind, RedirectKind::Truncate);
        let cmds = parse_line("cat<in>>out").unwrap();
        assert_eq!(cmds[0].words.len(), 1);
        assert_eq!(cmds[0].redirects[0].kind, RedirectKind::Input);
        assert_eq!(cmds[0].redirects[1].kind, RedirectKind::Append);
        assert_eq!(
            cmds[0].redirects[1]
                .target
                .expand_joined(&|_| None, &mut Budget::new(100))
                .unwrap(),
            "out"
        );
    }

    #[test]
    fn assignment_is_detected_only_when_bare() {
        let cmds = parse_line("NAME=va'l ue'").unwrap();
        let (name, value) = cmds[0].words[0].as_assignment().unwrap();
        assert_eq!(name, "NAME");
        assert_eq!(
            value
                .expand_joined(&|_| None, &mut Budget::new(100))
                .unwrap(),
            "val ue"
        );
        assert!(parse_line("'A=1'").unwrap()[0].words[0]
            .as_assignment()
            .is_none());
        assert!(parse_line("1A=1").unwrap()[0].words[0]
            .as_assignment()
            .is_none());
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        assert_eq!(
            parse_line("echo 'abc"),
            Err(SyntaxError::UnterminatedQuote("single"))
        );
        assert_eq!(
            parse_line("echo \"abc"),
            Err(SyntaxError::UnterminatedQuote("double"))
        );
        assert_eq!(
            parse_line("echo hi >"),
            Err(SyntaxError::MissingRedirectTarget(">"))
        );
        assert_eq!(
            parse_line("echo hi > ; ls"),
            Err(SyntaxError::MissingRedirectTarget(">"))
        );
        assert_eq!(
            parse_line("cat < > x"),
            Err(SyntaxError::MissingRedirectTarget("<"))
        );
        assert_eq!(parse_line("echo ${A"), Err(SyntaxError::UnterminatedBrace));
        assert_eq!(
            parse_line("echo ${1x}"),
            Err(SyntaxError::BadVariableName("1x".into()))
        );
        assert_eq!(parse_line("echo a\\"), Err(SyntaxError::TrailingBackslash));
        let long = "x".repeat(1 << 20);
        assert_eq!(parse_line(&long), Err(SyntaxError::LineTooLong(1 << 20)));
        assert_eq!(
            decode_line(b"echo \xff"),
            Err(SyntaxError::NotUtf8(0xff, 5))
        );
        assert_eq!(
            SyntaxError::MissingRedirectTarget(">").to_string(),
            "missing file name after '>'"
        );
    }

    fn unsupported_at(line: &str) -> (String, usize) {
        match parse_line(line) {
            Err(SyntaxError::Unsupported { token, column }) => (token, column),
            other => panic!("{line}: expected an unsupported-syntax error, got {other:?}"),
        }
    }

    #[test]
    fn sh_syntax_the_language_lacks_is_refused_with_its_column() {
        for (line, token, column) in [
            ("mount | grep t", "|", 7),
            ("a && b", "&&", 3),
            ("a || b", "||", 3),
            ("sleep 1 &", "&", 9),
            ("echo a 2> x", "2>", 8),
            ("echo a 2>> x", "2>>", 8),
            ("cat 0< x", "0<", 5),
            ("echo a &> x", "&>", 8),
            ("echo a >&2", ">&", 8),
            ("cat <<EOF", "<<", 5),
            ("echo $(date)", "$(", 6),
            ("echo `date`", "`", 6),
            ("echo \"x $(date)\"", "$(", 9),
            ("echo \"`date`\"", "`", 7),
            ("echo é | x", "|", 8),
        ] {
            assert_eq!(unsupported_at(line), (token.to_string(), column), "{line}");
        }
        assert_eq!(
            parse_line("a | b").unwrap_err().to_string(),
            "'|' at column 3 is not supported (put it in single quotes to pass it literally)"
        );
    }

    #[test]
    fn quoted_or_escaped_sh_syntax_stays_literal() {
        assert_eq!(
            words(r#"echo '|' "a && b" \& \| '$(x)' '`x`' "\$(x)" "\`x\`" \$(x)"#),
            vec![vec![
                "echo", "|", "a && b", "&", "|", "$(x)", "`x`", "$(x)", "`x`", "$(x)"
            ]]
        );
        // Digits only count as a descriptor directly before the operator.
        let cmds = parse_line("echo a 2 > x; echo b2> y; echo '2'> z").unwrap();
        let texts: Vec<Vec<String>> = cmds
            .iter()
            .map(|c| {
                c.words
                    .iter()
                    .map(|w| w.expand_joined(&|_| None, &mut Budget::new(100)).unwrap())
                    .collect()
            })
            .collect();
        assert_eq!(
            texts,
            vec![
                vec!["echo", "a", "2"],
                vec!["echo", "b2"],
                vec!["echo", "2"]
            ]
        );
        assert!(cmds.iter().all(|c| c.redirects.len() == 1));
    }

    #[test]
    fn expansion_stops_at_its_budget_and_names_the_variable() {
        let big = "x".repeat(1000);
        let lookup = |n: &str| (n == "BIG").then(|| big.clone());
        let word = &parse_line("a$BIG$BIG").unwrap()[0].words[0];
        assert_eq!(
            word.expand(&lookup, &mut Budget::new(2001)).unwrap()[0].len(),
            2001
        );
        assert_eq!(
            word.expand(&lookup, &mut Budget::new(2000)),
            Err(TooLong {
                var: Some("BIG".into()),
                limit: 2000
            })
        );
        // The budget is shared by the words of one command.
        let mut budget = Budget::new(1500);
        assert!(word.expand_joined(&|_| None, &mut budget).is_ok());
        let err = word.expand_joined(&lookup, &mut budget).unwrap_err();
        assert_eq!(err.to_string(), "more than 1500 bytes when expanding $BIG");
    }
}

/// Property-based fuzzing of the tokenizer, the parser and the expander:
/// whatever the input, no panic and an answer in bounded time; and where
/// the meaning is certain (plain words, UTF-8 checks, words without
/// variables) the answer is the right one. `MYINIT_FUZZ_CASES=N` runs N
/// cases per property instead of the default.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    /// Far more than any line takes; a parser that loops gets caught here.
    const BOUND: Duration = Duration::from_secs(2);

    fn config() -> ProptestConfig {
        let cases = std::env::var("MYINIT_FUZZ_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(256);
        ProptestConfig::with_cases(cases)
    }

    /// Lines made of the characters that mean something to the parser,
    /// mixed with any other text.
    fn shellish_line() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just(" ".to_string()),
            Just("\t".to_string()),
            Just(";".to_string()),
            Just("#".to_string()),
            Just("'".to_string()),
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just("$".to_string()),
            Just("${".to_string()),
            Just("}".to_string()),
            Just("$?".to_string()),
            Just("<".to_string()),
            Just(">".to_string()),
            Just(">>".to_string()),
            Just("=".to_string()),
            Just("|".to_string()),
            Just("&".to_string()),
            Just("&&".to_string()),
            Just("2>".to_string()),
            Just("$(".to_string()),
            Just("`".to_string()),
            "[A-Za-z_][A-Za-z0-9_]{0,6}",
            "[0-9]{1,3}",
            any::<String>().prop_map(|s| s.chars().take(8).collect()),
        ];
        prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    /// The variables the expander sees: blanks, empty values, odd text.
    fn lookup_values() -> impl Strategy<Value = Vec<(String, String)>> {
        let value = prop_oneof![
            Just(String::new()),
            Just(" ".to_string()),
            Just(" a  b ".to_string()),
            Just("\t\n".to_string()),
            any::<String>(),
        ];
        prop::collection::vec(("[A-Za-z_][A-Za-z0-9_]{0,6}|\\?", value), 0..6)
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn any_line_parses_or_is_refused_quickly(line in shellish_line()) {
            let started = Instant::now();
            let _ = parse_line(&line);
            prop_assert!(started.elapsed() < BOUND);
        }

        #[test]
        fn plain_words_parse_to_themselves(
            words in prop::collection::vec("[A-Za-z0-9_.,/:+-]{1,12}", 1..12),
            blanks in prop::collection::vec("[ \t]{1,3}", 12),
        ) {
            let line: String = words
                .iter()
                .zip(&blanks)
                .map(|(w, b)| format!("{w}{b}"))
                .collect();
            let commands = parse_line(&line).unwrap();
            prop_assert_eq!(commands.len(), 1);
            let got: Vec<String> = commands[0]
                .words
                .iter()
                .map(|w| w.expand_joined(&|_| None, &mut Budget::new(MAX_COMMAND_BYTES)).unwrap())
                .collect();
            prop_assert_eq!(got, words);
        }

        #[test]
        fn decode_line_accepts_exactly_short_utf8(
            bytes in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            match decode_line(&bytes) {
                Ok(text) => prop_assert_eq!(text.as_bytes(), bytes.as_slice()),
                Err(SyntaxError::NotUtf8(byte, at)) => {
                    prop_assert!(std::str::from_utf8(&bytes).is_err());
                    prop_assert_eq!(bytes[at], byte);
                    prop_assert!(std::str::from_utf8(&bytes[..at]).is_ok());
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }

        #[test]
        fn expansion_never_panics_and_is_exact_without_variables(
            line in shellish_line(),
            vars in lookup_values(),
        ) {
            let Ok(commands) = parse_line(&line) else {
                return Ok(());
            };
            let lookup = |name: &str| {
                vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
            };
            let started = Instant::now();
            for command in &commands {
                for word in command.words.iter().chain(command.redirects.iter().map(|r| &r.target)) {
                    let fields = word.expand(&lookup, &mut Budget::new(MAX_COMMAND_BYTES));
                    let joined = word.expand_joined(&lookup, &mut Budget::new(MAX_COMMAND_BYTES));
                    // Over the budget both refuse: nothing more to compare.
                    let (Ok(fields), Ok(joined)) = (fields, joined) else {
                        prop_assert!(started.elapsed() < BOUND);
                        continue;
                    };
                    let has_var = word.0.iter().any(|p| matches!(p, Part::Var { .. }));
                    if !has_var {
                        // Nothing to split: one field, the word's text.
                        prop_assert_eq!(fields, vec![joined]);
                    } else {
                        // Splitting only removes blanks, never adds text.
                        prop_assert!(fields.concat().len() <= joined.len());
                    }
                }
            }
            prop_assert!(started.elapsed() < BOUND);
        }
    }
}
