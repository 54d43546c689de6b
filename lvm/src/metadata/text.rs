//! LVM's text configuration format, as used for VG metadata: nested
//! `name { ... }` sections and `key = value` settings where a value is a
//! quoted string (with `\"` and `\\` escapes), an integer, a float or a
//! `[ ... ]` list of those; `#` starts a comment to the end of the line.
//! This is a small recursive-descent parser with a nesting limit, so corrupt or
//! hostile text yields a [`LvmError::Syntax`] with line and column, never a
//! panic or a stack overflow.

use crate::error::{LvmError, Result};

/// Sections nested deeper than this are refused (real metadata uses 4 levels).
pub const MAX_DEPTH: usize = 32;

/// A scalar or list value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A quoted string, unescaped.
    Str(String),
    /// An integer.
    Int(i64),
    /// A number with a fractional part.
    Float(f64),
    /// A `[ ... ]` list.
    List(Vec<Value>),
}

/// One entry of a section: a setting or a nested section, in file order.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `key = value`.
    Value(Value),
    /// `name { ... }`.
    Section(Section),
}

/// A section's entries in file order (names may repeat; lookups take the first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Section {
    /// `(name, node)` pairs.
    pub entries: Vec<(String, Node)>,
}

impl Section {
    /// The first setting called `key`.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find_map(|(k, n)| match n {
            Node::Value(v) if k == key => Some(v),
            _ => None,
        })
    }

    /// The first subsection called `key`.
    pub fn section(&self, key: &str) -> Option<&Section> {
        self.entries.iter().find_map(|(k, n)| match n {
            Node::Section(s) if k == key => Some(s),
            _ => None,
        })
    }

    /// All subsections, in order.
    pub fn sections(&self) -> impl Iterator<Item = (&str, &Section)> {
        self.entries.iter().filter_map(|(k, n)| match n {
            Node::Section(s) => Some((k.as_str(), s)),
            Node::Value(_) => None,
        })
    }
}

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    column: usize,
}

fn is_ident_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '{' | '}' | '[' | ']' | '=' | ',' | '"' | '#')
}

impl<'a> Parser<'a> {
    fn err<T>(&self, message: impl Into<String>) -> Result<T> {
        Err(LvmError::Syntax {
            line: self.line,
            column: self.column,
            message: message.into(),
        })
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    /// Skips whitespace and comments; returns the next significant char.
    fn peek(&mut self) -> Option<char> {
        loop {
            match self.chars.peek().copied() {
                Some(c) if c.is_whitespace() || c == '\0' => {
                    self.bump();
                }
                Some('#') => {
                    while let Some(c) = self.bump() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                other => return other,
            }
        }
    }

    fn ident(&mut self) -> Result<String> {
        let mut s = String::new();
        while let Some(&c) = self.chars.peek() {
            if !is_ident_char(c) {
                break;
            }
            s.push(c);
            self.bump();
        }
        if s.is_empty() {
            return match self.peek() {
                Some(c) => self.err(format!("expected a name, found '{c}'")),
                None => self.err("expected a name, found end of text"),
            };
        }
        Ok(s)
    }

    /// Entries until `}` (nested) or end of text (top level).
    fn entries(&mut self, depth: usize) -> Result<Section> {
        if depth > MAX_DEPTH {
            return self.err(format!("sections nested deeper than {MAX_DEPTH}"));
        }
        let mut sec = Section::default();
        loop {
            match self.peek() {
                None if depth == 0 => return Ok(sec),
                None => return self.err("unclosed section: expected '}', found end of text"),
                Some('}') if depth > 0 => {
                    self.bump();
                    return Ok(sec);
                }
                Some(_) => {}
            }
            let name = self.ident()?;
            match self.peek() {
                Some('{') => {
                    self.bump();
                    let s = self.entries(depth + 1)?;
                    sec.entries.push((name, Node::Section(s)));
                }
                Some('=') => {
                    self.bump();
                    let v = self.value(true)?;
                    sec.entries.push((name, Node::Value(v)));
                }
                Some(c) => {
                    return self.err(format!("expected '=' or '{{' after {name:?}, found '{c}'"))
                }
                None => {
                    return self.err(format!(
                        "expected '=' or '{{' after {name:?}, found end of text"
                    ))
                }
            }
        }
    }

    fn value(&mut self, allow_list: bool) -> Result<Value> {
        match self.peek() {
            Some('"') => self.string().map(Value::Str),
            Some('[') if allow_list => {
                self.bump();
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(']') {
                        self.bump();
                        return Ok(Value::List(items));
                    }
                    items.push(self.value(false)?);
                    match self.peek() {
                        Some(',') => {
                            self.bump();
                        }
                        Some(']') => {}
                        Some(c) => {
                            return self.err(format!("expected ',' or ']' in a list, found '{c}'"))
                        }
                        None => return self.err("unclosed list: expected ']', found end of text"),
                    }
                }
            }
            Some(c) if c == '-' || c == '+' || c.is_ascii_digit() => self.number(),
            Some(c) => self.err(format!(
                "expected a value (string, number or list), found '{c}'"
            )),
            None => self.err("expected a value, found end of text"),
        }
    }

    fn string(&mut self) -> Result<String> {
        self.bump(); // opening quote
        let mut s = String::new();
        loop {
            match self.bump() {
                Some('"') => return Ok(s),
                Some('\\') => match self.bump() {
                    Some(c) => s.push(c),
                    None => return self.err("unterminated string"),
                },
                Some(c) => s.push(c),
                None => return self.err("unterminated string"),
            }
        }
    }

    fn number(&mut self) -> Result<Value> {
        let mut s = String::new();
        while let Some(&c) = self.chars.peek() {
            if !(c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.')) {
                break;
            }
            s.push(c);
            self.bump();
        }
        if let Ok(i) = s.parse::<i64>() {
            return Ok(Value::Int(i));
        }
        if s.contains('.') {
            if let Ok(f) = s.parse::<f64>() {
                if f.is_finite() {
                    return Ok(Value::Float(f));
                }
            }
        }
        self.err(format!("{s:?} is not a number (or does not fit 64 bits)"))
    }
}

/// Parses a whole text into its top-level section. NUL bytes (metadata areas
/// pad the text with them) count as whitespace.
pub fn parse(text: &str) -> Result<Section> {
    let mut p = Parser {
        chars: text.chars().peekable(),
        line: 1,
        column: 1,
    };
    p.entries(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn nested_sections_strings_numbers_lists() {
        let t = "vg { id = \"a\\\"b\" # c\n n = -5 f = 1.5 l = [\"pv0\", 0, \"pv1\", 7] e = [] s { } }\nversion = 1\0\0";
        let top = parse(t).unwrap();
        let vg = top.section("vg").unwrap();
        assert_eq!(vg.value("id"), Some(&Value::Str("a\"b".into())));
        assert_eq!(vg.value("n"), Some(&Value::Int(-5)));
        assert_eq!(vg.value("f"), Some(&Value::Float(1.5)));
        assert_eq!(
            vg.value("l"),
            Some(&Value::List(vec![
                Value::Str("pv0".into()),
                Value::Int(0),
                Value::Str("pv1".into()),
                Value::Int(7)
            ]))
        );
        assert_eq!(vg.value("e"), Some(&Value::List(vec![])));
        assert!(vg.section("s").is_some());
        assert_eq!(top.value("version"), Some(&Value::Int(1)));
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = parse("vg {\n  id = \"x\"\n  seqno = }\n").unwrap_err();
        match e {
            LvmError::Syntax { line, column, .. } => assert_eq!((line, column), (3, 11)),
            other => panic!("{other}"),
        }
        assert!(matches!(
            parse("vg {"),
            Err(LvmError::Syntax { line: 1, .. })
        ));
        assert!(matches!(parse("a = \"x"), Err(LvmError::Syntax { .. })));
        assert!(matches!(
            parse("a = 99999999999999999999"),
            Err(LvmError::Syntax { .. })
        ));
        assert!(matches!(parse("a = [[1]]"), Err(LvmError::Syntax { .. })));
        assert!(matches!(parse("}"), Err(LvmError::Syntax { .. })));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let t = "a {".repeat(100_000);
        assert!(matches!(parse(&t), Err(LvmError::Syntax { .. })));
    }
}
