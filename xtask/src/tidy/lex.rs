//! Splits Rust source into per-line code and comment text.
//!
//! Just enough lexing for tidy's string checks: comments (line, block,
//! nested, doc) move to [`Line::comment`], string and char literals are
//! emptied in [`Line::code`] (their quotes stay), so a token inside a comment
//! or a string never counts as code.

/// One source line, split.
pub struct Line {
    /// The code on the line, with comments removed and literals emptied.
    pub code: String,
    /// The text of every comment on the line, delimiters included.
    pub comment: String,
}

impl Line {
    /// Whether the line holds a comment and no code.
    pub fn is_comment_only(&self) -> bool {
        self.code.trim().is_empty() && !self.comment.trim().is_empty()
    }
}

/// Where the lexer is between characters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Code,
    LineComment,
    /// Inside `/* */`, at this nesting depth.
    BlockComment(usize),
    Str,
    /// Inside `r#"..."#`, with this many hashes.
    RawStr(usize),
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Splits `src` into lines of code and comment text.
pub fn lex(src: &str) -> Vec<Line> {
    let chars: Vec<char> = src.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut parts: Vec<(String, String)> = Vec::new();
    let (mut code, mut comment) = (String::new(), String::new());
    let mut state = State::Code;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            parts.push((std::mem::take(&mut code), std::mem::take(&mut comment)));
            if state == State::LineComment {
                state = State::Code;
            }
            i += 1;
            continue;
        }
        match state {
            State::Code => {
                if c == '/' && at(i + 1) == '/' {
                    state = State::LineComment;
                    comment.push_str("//");
                    i += 2;
                } else if c == '/' && at(i + 1) == '*' {
                    state = State::BlockComment(1);
                    comment.push_str("/*");
                    i += 2;
                } else if c == '"' {
                    state = State::Str;
                    code.push('"');
                    i += 1;
                } else if c == 'r' && raw_string_can_start(&chars, i) {
                    let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
                    if at(i + 1 + hashes) == '"' {
                        state = State::RawStr(hashes);
                        code.push_str("r\"");
                        i += 2 + hashes;
                    } else {
                        // A raw identifier such as `r#type`.
                        code.push(c);
                        i += 1;
                    }
                } else if c == '\'' {
                    i = char_literal_or_lifetime(&chars, i, &mut code);
                } else {
                    code.push(c);
                    i += 1;
                }
            }
            State::LineComment => {
                comment.push(c);
                i += 1;
            }
            State::BlockComment(depth) => {
                if c == '/' && at(i + 1) == '*' {
                    state = State::BlockComment(depth + 1);
                    comment.push_str("/*");
                    i += 2;
                } else if c == '*' && at(i + 1) == '/' {
                    state = if depth == 1 { State::Code } else { State::BlockComment(depth - 1) };
                    comment.push_str("*/");
                    i += 2;
                } else {
                    comment.push(c);
                    i += 1;
                }
            }
            State::Str => {
                if c == '\\' {
                    // Skip the escaped character, unless it is a line break
                    // (string continuation), which the loop must still count.
                    i += if at(i + 1) == '\n' { 1 } else { 2 };
                } else {
                    if c == '"' {
                        code.push('"');
                        state = State::Code;
                    }
                    i += 1;
                }
            }
            State::RawStr(hashes) => {
                if c == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                    code.push('"');
                    state = State::Code;
                    i += 1 + hashes;
                } else {
                    i += 1;
                }
            }
        }
    }
    parts.push((code, comment));

    parts.into_iter().map(|(code, comment)| Line { code, comment }).collect()
}

/// Whether the `r` at `i` may open a raw string: it starts a token, or
/// follows a `b` or `c` prefix that does.
fn raw_string_can_start(chars: &[char], i: usize) -> bool {
    let before = |k: usize| i.checked_sub(k).map(|j| chars[j]);
    match before(1) {
        None => true,
        Some('b' | 'c') => !before(2).is_some_and(is_ident),
        Some(p) => !is_ident(p),
    }
}

/// Handles the `'` at `i`: empties a char literal (`'x'`, `'\n'`,
/// `'\u{1F600}'`) or keeps a lifetime's quote. Returns the next index.
fn char_literal_or_lifetime(chars: &[char], i: usize, code: &mut String) -> usize {
    let at = |k: usize| chars.get(k).copied().unwrap_or('\0');
    if at(i + 1) == '\\' {
        // Escape: the closing quote comes after the escaped character.
        let mut j = i + 3;
        while j < chars.len() && chars[j] != '\'' && chars[j] != '\n' {
            j += 1;
        }
        code.push_str("''");
        return if at(j) == '\'' { j + 1 } else { j };
    }
    if at(i + 1) != '\n' && at(i + 2) == '\'' {
        code.push_str("''");
        return i + 3;
    }
    code.push('\'');
    i + 1
}
