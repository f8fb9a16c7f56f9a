//! The nats-server configuration file syntax: a lexer and parser producing a tree of
//! [`Value`]s. What the keys mean is `settings`' job.
//!
//! The format (nats-server's `conf` package):
//! - `key: value`, `key = value` or `key value`; optional `;` or `,` after a value.
//! - Comments start with `#` or `//` and run to the end of the line.
//! - Blocks `name { ... }` (also `name: { ... }`), arrays `[a, b]` (comma or newline separated).
//! - Strings: bare, `"double"` (escapes `\t \n \r \" \\ \xHH`) or `'single'` (raw) quoted.
//! - Booleans: `true/false/yes/no/on/off`. Integers with size suffixes (`1MB` = 1048576, `1k` =
//!   1000). Floats. Anything else that starts with a digit (`10s`, `127.0.0.1:4222`) is a string.
//! - `$NAME` refers to a key of an enclosing block, else to an environment variable (whose value
//!   is parsed as a value). `include ./other.conf` splices another file in.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// A configuration value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    /// A string (bare or quoted; also datetimes).
    Str(String),
    /// An integer, size suffix applied.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// `true/false/yes/no/on/off`.
    Bool(bool),
    /// `[ ... ]`.
    Array(Vec<Item>),
    /// `{ ... }`.
    Map(Map),
}

impl Value {
    /// What kind of value this is, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Str(_) => "string",
            Self::Int(_) => "integer",
            Self::Float(_) => "float",
            Self::Bool(_) => "boolean",
            Self::Array(_) => "array",
            Self::Map(_) => "map",
        }
    }
}

/// A value and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Item {
    /// The value.
    pub(crate) value: Value,
    /// Where its key starts (for array elements: where the value starts); 1-based line,
    /// 0-based column.
    pub(crate) pos: Pos,
    /// The text as written, for bare tokens (`2m`, `10s`); empty for quoted strings and blocks.
    pub(crate) raw: String,
}

/// A position in a configuration file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pos {
    /// 1-based line.
    pub(crate) line: usize,
    /// 0-based column.
    pub(crate) col: usize,
}

/// A block: keys in the order written. A key written twice keeps its last value.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Map {
    entries: Vec<(String, Item)>,
}

impl Map {
    fn insert(&mut self, key: String, item: Item) {
        if let Some(slot) = self.entries.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = item;
        } else {
            self.entries.push((key, item));
        }
    }

    /// The value of `key` (exact match).
    pub(crate) fn get(&self, key: &str) -> Option<&Item> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Every key and value, in the order written.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Item)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether the block is empty.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Why a configuration file could not be read or parsed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub(crate) enum ConfError {
    /// The file could not be read.
    #[error("error opening config file {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The operating system's error.
        reason: String,
    },
    /// A syntax error (nats-server's words begin its message too: scripts look for them).
    #[error("{file}:{line}:{col}: Parse error: {msg}")]
    Syntax {
        /// The file (or `<string>`).
        file: String,
        /// 1-based line.
        line: usize,
        /// 0-based column.
        col: usize,
        /// What is wrong.
        msg: String,
    },
}

/// How deep includes may nest (guards against a file including itself).
const MAX_INCLUDE_DEPTH: usize = 10;
/// How deep blocks and arrays may nest.
const MAX_NESTING: usize = 64;

/// Reads and parses a configuration file.
pub(crate) fn parse_file(path: &Path) -> Result<Map, ConfError> {
    parse_file_at_depth(path, 0)
}

fn parse_file_at_depth(path: &Path, depth: usize) -> Result<Map, ConfError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Parser::new(&text, path.display().to_string(), Some(dir), depth).parse_document()
}

/// Parses configuration text (includes are resolved against the current directory).
#[cfg(test)]
pub(crate) fn parse_str(text: &str) -> Result<Map, ConfError> {
    Parser::new(text, "<string>".to_string(), Some(PathBuf::new()), 0).parse_document()
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
    line_start: usize,
    file: String,
    dir: Option<PathBuf>,
    include_depth: usize,
    /// How many blocks and arrays enclose the current position.
    nesting: usize,
    /// Enclosing blocks, innermost last, for `$variable` lookups.
    scopes: Vec<Map>,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str, file: String, dir: Option<PathBuf>, include_depth: usize) -> Self {
        Self {
            src,
            pos: 0,
            line: 1,
            line_start: 0,
            file,
            dir,
            include_depth,
            nesting: 0,
            scopes: Vec::new(),
        }
    }

    fn here(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.pos - self.line_start,
        }
    }

    fn err_at(&self, at: Pos, msg: impl Into<String>) -> ConfError {
        ConfError::Syntax {
            file: self.file.clone(),
            line: at.line,
            col: at.col,
            msg: msg.into(),
        }
    }

    fn err(&self, msg: impl Into<String>) -> ConfError {
        self.err_at(self.here(), msg)
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.src[self.pos..].chars();
        it.next();
        it.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.line_start = self.pos;
        }
        Some(c)
    }

    fn at_comment(&self) -> bool {
        self.peek() == Some('#') || (self.peek() == Some('/') && self.peek2() == Some('/'))
    }

    fn skip_comment(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            self.bump();
        }
    }

    /// Skips spaces and tabs (not newlines).
    fn skip_blank(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
    }

    /// Skips whitespace, newlines and comments.
    fn skip_space(&mut self) {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some(_) if self.at_comment() => self.skip_comment(),
                _ => return,
            }
        }
    }

    fn parse_document(mut self) -> Result<Map, ConfError> {
        self.scopes.push(Map::default());
        self.parse_entries(None)?;
        Ok(self.scopes.pop().unwrap_or_default())
    }

    /// Parses `key value` entries into the innermost scope until EOF (top level) or `}`.
    fn parse_entries(&mut self, close: Option<Pos>) -> Result<(), ConfError> {
        loop {
            self.skip_space();
            match self.peek() {
                None => {
                    return match close {
                        Some(open) => Err(self.err_at(open, "unterminated block: expected '}'")),
                        None => Ok(()),
                    };
                }
                Some('}') if close.is_some() => {
                    self.bump();
                    return Ok(());
                }
                Some('}') => return Err(self.err("unexpected '}'")),
                // As nats-server's lexer: the top level may be wrapped in braces (a JSON
                // object), its entries still top-level keys.
                Some('{') if close.is_none() => {
                    let open = self.here();
                    self.bump();
                    self.nesting += 1;
                    self.parse_entries(Some(open))?;
                    self.nesting -= 1;
                    continue;
                }
                Some(':' | '=') => {
                    return Err(self.err(format!(
                        "unexpected key separator '{}'",
                        self.peek().unwrap_or(':')
                    )))
                }
                Some(_) => self.parse_entry()?,
            }
            // After a value: blanks, an optional terminator, a comment, then a newline.
            self.skip_blank();
            match self.peek() {
                Some(';' | ',') => {
                    self.bump();
                }
                Some('\n' | '\r') | None => {}
                Some('}') if close.is_some() => {}
                Some(_) if self.at_comment() => {}
                Some(c) => {
                    return Err(self.err(format!(
                        "expected a value to end with a new line, comment or EOF, but got '{c}' instead"
                    )))
                }
            }
        }
    }

    fn parse_key(&mut self) -> Result<(String, Pos), ConfError> {
        let at = self.here();
        let key = match self.peek() {
            Some(q @ ('"' | '\'')) => {
                self.bump();
                let start = self.pos;
                loop {
                    match self.bump() {
                        Some(c) if c == q => break,
                        Some('\n') | None => return Err(self.err_at(at, "unterminated quoted key")),
                        Some(_) => {}
                    }
                }
                self.src[start..self.pos - 1].to_string()
            }
            _ => {
                let start = self.pos;
                while let Some(c) = self.peek() {
                    if c.is_whitespace() || c == ':' || c == '=' {
                        break;
                    }
                    if c == '{' || c == '}' || c == '[' || c == ']' {
                        break;
                    }
                    self.bump();
                }
                if self.pos == start {
                    return Err(self.err(format!(
                        "expected a key, found '{}'",
                        self.peek().unwrap_or(' ')
                    )));
                }
                self.src[start..self.pos].to_string()
            }
        };
        Ok((key, at))
    }

    fn parse_entry(&mut self) -> Result<(), ConfError> {
        let (key, at) = self.parse_key()?;
        let had_blank = matches!(self.peek(), Some(' ' | '\t'));
        // As Go's lexer (lexKeyEnd): any whitespace, new lines too, may separate a key from
        // its separator or value (`websocket` on one line, `{` on the next).
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
        if key.eq_ignore_ascii_case("include")
            && had_blank
            && !matches!(self.peek(), Some(':' | '='))
        {
            return self.parse_include(at);
        }
        if matches!(self.peek(), Some(':' | '=')) {
            self.bump();
            self.skip_blank();
        }
        match self.peek() {
            None | Some('\n' | '\r') => {
                return Err(self.err(format!("expected a value for key \"{key}\"")))
            }
            _ => {}
        }
        let mut item = self.parse_value()?;
        // As nats-server: a value is reported at its key's position.
        item.pos = at;
        self.scope().insert(key, item);
        Ok(())
    }

    fn scope(&mut self) -> &mut Map {
        if self.scopes.is_empty() {
            self.scopes.push(Map::default());
        }
        let last = self.scopes.len() - 1;
        &mut self.scopes[last]
    }

    fn parse_include(&mut self, at: Pos) -> Result<(), ConfError> {
        let name = match self.peek() {
            Some(q @ ('"' | '\'')) => {
                self.bump();
                let start = self.pos;
                loop {
                    match self.bump() {
                        Some(c) if c == q => break,
                        Some('\n') | None => {
                            return Err(self.err_at(at, "unterminated include path"))
                        }
                        Some(_) => {}
                    }
                }
                self.src[start..self.pos - 1].to_string()
            }
            _ => {
                let start = self.pos;
                while let Some(c) = self.peek() {
                    if c.is_whitespace() || c == ';' || c == '}' {
                        break;
                    }
                    self.bump();
                }
                self.src[start..self.pos].to_string()
            }
        };
        if name.is_empty() {
            return Err(self.err_at(at, "expected a file name after include"));
        }
        if self.include_depth >= MAX_INCLUDE_DEPTH {
            return Err(self.err_at(at, format!("includes nested too deeply at '{name}'")));
        }
        let path = match &self.dir {
            Some(dir) => dir.join(&name),
            None => PathBuf::from(&name),
        };
        let included = parse_file_at_depth(&path, self.include_depth + 1)
            .map_err(|e| self.err_at(at, format!("error parsing include file '{name}', {e}")))?;
        for (k, v) in included.entries {
            self.scope().insert(k, v);
        }
        Ok(())
    }

    fn parse_value(&mut self) -> Result<Item, ConfError> {
        let at = self.here();
        let item = |value, raw: &str| Item {
            value,
            pos: at,
            raw: raw.to_string(),
        };
        match self.peek() {
            Some('{') => {
                self.bump();
                self.enter()?;
                self.scopes.push(Map::default());
                let res = self.parse_entries(Some(at));
                let map = self.scopes.pop().unwrap_or_default();
                self.nesting -= 1;
                res?;
                Ok(item(Value::Map(map), ""))
            }
            Some('[') => {
                self.bump();
                self.enter()?;
                let arr = self.parse_array(at);
                self.nesting -= 1;
                Ok(item(Value::Array(arr?), ""))
            }
            Some('"') => {
                self.bump();
                let s = self.parse_dq_string(at)?;
                Ok(item(Value::Str(s), ""))
            }
            Some('\'') => {
                self.bump();
                let start = self.pos;
                loop {
                    match self.bump() {
                        Some('\'') => break,
                        None => return Err(self.err_at(at, "unterminated string")),
                        Some(_) => {}
                    }
                }
                Ok(item(
                    Value::Str(self.src[start..self.pos - 1].to_string()),
                    "",
                ))
            }
            Some('(') => {
                self.bump();
                let s = self.parse_block_string(at)?;
                Ok(item(Value::Str(s), ""))
            }
            Some(_) => {
                let start = self.pos;
                while let Some(c) = self.peek() {
                    if matches!(c, '\n' | '\r' | ' ' | '\t' | ';' | ',' | ']' | '}') {
                        break;
                    }
                    self.bump();
                }
                let raw = &self.src[start..self.pos];
                let value = self.classify(raw, at)?;
                Ok(item(value, raw))
            }
            None => Err(self.err("expected a value")),
        }
    }

    fn enter(&mut self) -> Result<(), ConfError> {
        if self.nesting >= MAX_NESTING {
            return Err(self.err("blocks and arrays nested too deeply"));
        }
        self.nesting += 1;
        Ok(())
    }

    fn parse_array(&mut self, open: Pos) -> Result<Vec<Item>, ConfError> {
        let mut out = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                None => return Err(self.err_at(open, "unterminated array: expected ']'")),
                Some(']') => {
                    self.bump();
                    return Ok(out);
                }
                Some(',') => return Err(self.err("unexpected array value terminator ','")),
                Some(_) => out.push(self.parse_value()?),
            }
            self.skip_blank();
            if self.at_comment() {
                self.skip_comment();
            }
            match self.peek() {
                Some(',' | '\n' | '\r') => {
                    self.bump();
                }
                Some(']') => {}
                None => return Err(self.err_at(open, "unterminated array: expected ']'")),
                Some(c) => {
                    return Err(self.err(format!(
                        "expected an array value terminator ',' or an array terminator ']', but got '{c}' instead"
                    )))
                }
            }
        }
    }

    fn parse_dq_string(&mut self, at: Pos) -> Result<String, ConfError> {
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(self.err_at(at, "unterminated string")),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('t') => out.push('\t'),
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('x') => {
                        let hex: String = [self.bump(), self.bump()].iter().flatten().collect();
                        let byte = u8::from_str_radix(&hex, 16)
                            .map_err(|_| self.err(format!("expected two hexadecimal digits after '\\x', but got '{hex}'")))?;
                        out.push(char::from(byte));
                    }
                    other => {
                        return Err(self.err(format!(
                            "invalid escape character '{}'; only \\xXX, \\t, \\n, \\r, \\\", \\\\ are allowed",
                            other.unwrap_or(' ')
                        )))
                    }
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// `( ... )` with the closing `)` alone on its own line.
    fn parse_block_string(&mut self, at: Pos) -> Result<String, ConfError> {
        let start = self.pos;
        loop {
            let line_start = self.pos;
            while let Some(c) = self.peek() {
                if c == '\n' {
                    break;
                }
                self.bump();
            }
            let line = self.src[line_start..self.pos].trim_end_matches('\r');
            if line == ")" && line_start > start {
                return Ok(self.src[start..line_start]
                    .trim_end_matches(['\n', '\r'])
                    .to_string());
            }
            if self.bump().is_none() {
                return Err(self.err_at(
                    at,
                    "unterminated block string: expected ')' on a line by itself",
                ));
            }
        }
    }

    /// Turns a bare token into a value: boolean, variable, integer (with size suffix), float,
    /// or string.
    fn classify(&self, raw: &str, at: Pos) -> Result<Value, ConfError> {
        match raw.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => return Ok(Value::Bool(true)),
            "false" | "no" | "off" => return Ok(Value::Bool(false)),
            _ => {}
        }
        if let Some(name) = raw.strip_prefix('$') {
            let b = name.as_bytes();
            if b.len() >= 3
                && b[0] == b'2'
                && matches!(b[1], b'a' | b'b' | b'x' | b'y')
                && b[2] == b'$'
            {
                return Ok(Value::Str(raw.to_string())); // a bcrypt hash, not a variable
            }
            return self.lookup_variable(name, at);
        }
        let unsigned = raw.strip_prefix('-').unwrap_or(raw);
        if !unsigned.starts_with(|c: char| c.is_ascii_digit()) {
            return Ok(Value::Str(raw.to_string()));
        }
        let digits = unsigned.bytes().take_while(u8::is_ascii_digit).count();
        let (num, suffix) = raw.split_at(raw.len() - unsigned.len() + digits);
        if suffix.is_empty() {
            return num
                .parse::<i64>()
                .map(Value::Int)
                .map_err(|_| self.err_at(at, format!("integer '{raw}' is out of range")));
        }
        if let Some(mult) = size_multiplier(suffix) {
            let n: i64 = num
                .parse()
                .map_err(|_| self.err_at(at, format!("integer '{raw}' is out of range")))?;
            return n
                .checked_mul(mult)
                .map(Value::Int)
                .ok_or_else(|| self.err_at(at, format!("integer '{raw}' is out of range")));
        }
        if let Some(frac) = suffix.strip_prefix('.') {
            if !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit()) {
                return raw
                    .parse::<f64>()
                    .map(Value::Float)
                    .map_err(|_| self.err_at(at, format!("invalid float '{raw}'")));
            }
        }
        Ok(Value::Str(raw.to_string()))
    }

    fn lookup_variable(&self, name: &str, at: Pos) -> Result<Value, ConfError> {
        for scope in self.scopes.iter().rev() {
            if let Some(item) = scope.get(name) {
                return Ok(item.value.clone());
            }
        }
        if let Ok(env) = std::env::var(name) {
            // The environment's text is parsed as a value would be (bounded: `X=$X` must not
            // recurse for ever).
            if self.include_depth >= MAX_INCLUDE_DEPTH {
                return Err(self.err_at(
                    at,
                    format!("variable reference for '{name}' refers to itself"),
                ));
            }
            let text = format!("pk={env}");
            let parsed = Parser::new(&text, format!("${name}"), None, self.include_depth + 1)
                .parse_document()
                .map_err(|e| {
                    self.err_at(
                        at,
                        format!("cannot parse environment variable '{name}': {e}"),
                    )
                })?;
            return match parsed.get("pk") {
                Some(item) => Ok(item.value.clone()),
                None => Ok(Value::Str(env)),
            };
        }
        Err(self.err_at(
            at,
            format!("variable reference for '{name}' can not be found"),
        ))
    }
}

/// nats-server's size suffixes: `k`=1000, `kb|ki|kib`=1024, and so on up to `e`/`eb`.
pub(crate) fn size_multiplier(suffix: &str) -> Option<i64> {
    let s = suffix.to_ascii_lowercase();
    let (base, power) = match s.as_str() {
        "k" => (1000, 1),
        "kb" | "ki" | "kib" => (1024, 1),
        "m" => (1000, 2),
        "mb" | "mi" | "mib" => (1024, 2),
        "g" => (1000, 3),
        "gb" | "gi" | "gib" => (1024, 3),
        "t" => (1000, 4),
        "tb" | "ti" | "tib" => (1024, 4),
        "p" => (1000, 5),
        "pb" | "pi" | "pib" => (1024, 5),
        "e" => (1000, 6),
        "eb" | "ei" | "eib" => (1024, 6),
        _ => return None,
    };
    Some((0..power).fold(1i64, |acc, _| acc * base))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'m>(m: &'m Map, key: &str) -> &'m Value {
        &m.get(key)
            .unwrap_or_else(|| panic!("missing key {key}"))
            .value
    }

    #[test]
    fn separators_and_terminators() {
        let m = parse_str("a: 1\nb = 2\nc 3\nd: 4;\ne = 5,\n").unwrap();
        for (k, v) in [("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5)] {
            assert_eq!(get(&m, k), &Value::Int(v), "{k}");
        }
    }

    #[test]
    fn a_block_may_open_on_the_line_after_its_key() {
        // nats.py's websocket test configurations are written this way.
        let m = parse_str("websocket\n{\n    port: 8080\n    no_tls: true\n}\n").unwrap();
        let Value::Map(ws) = get(&m, "websocket") else {
            panic!("a block");
        };
        assert_eq!(get(ws, "port"), &Value::Int(8080));
    }

    #[test]
    fn comments() {
        let m =
            parse_str("# top\n// also\nport: 4222 # trailing\nhost: 'h' // trailing\n").unwrap();
        assert_eq!(get(&m, "port"), &Value::Int(4222));
        assert_eq!(get(&m, "host"), &Value::Str("h".into()));
    }

    #[test]
    fn strings() {
        let m = parse_str(
            "a: bare\nb: \"dq \\t\\\"x\\\" \\x41\"\nc: 'sq \\n raw'\nd: 127.0.0.1:4222\ne: 10s\nf: \"2m\"\ng: $2a$11$abc\n",
        )
        .unwrap();
        assert_eq!(get(&m, "a"), &Value::Str("bare".into()));
        assert_eq!(get(&m, "b"), &Value::Str("dq \t\"x\" A".into()));
        assert_eq!(get(&m, "c"), &Value::Str("sq \\n raw".into()));
        assert_eq!(get(&m, "d"), &Value::Str("127.0.0.1:4222".into()));
        assert_eq!(get(&m, "e"), &Value::Str("10s".into()));
        assert_eq!(get(&m, "f"), &Value::Str("2m".into()));
        assert_eq!(get(&m, "g"), &Value::Str("$2a$11$abc".into()));
    }

    #[test]
    fn numbers_and_sizes() {
        let m =
            parse_str("a: -1\nb: 1MB\nc: 1k\nd: 2KiB\ne: 3g\nf: 1.5\ng: 2m\nh: 64mb\n").unwrap();
        assert_eq!(get(&m, "a"), &Value::Int(-1));
        assert_eq!(get(&m, "b"), &Value::Int(1 << 20));
        assert_eq!(get(&m, "c"), &Value::Int(1000));
        assert_eq!(get(&m, "d"), &Value::Int(2048));
        assert_eq!(get(&m, "e"), &Value::Int(3_000_000_000));
        assert_eq!(get(&m, "f"), &Value::Float(1.5));
        // As in nats-server: a bare 2m is the number 2,000,000, not two minutes.
        assert_eq!(get(&m, "g"), &Value::Int(2_000_000));
        assert_eq!(m.get("g").unwrap().raw, "2m");
        assert_eq!(get(&m, "h"), &Value::Int(64 << 20));
    }

    #[test]
    fn booleans() {
        let m = parse_str("a: true\nb: NO\nc: on\nd: off\ne: Yes\nf: false\n").unwrap();
        let want = [
            ("a", true),
            ("b", false),
            ("c", true),
            ("d", false),
            ("e", true),
            ("f", false),
        ];
        for (k, v) in want {
            assert_eq!(get(&m, k), &Value::Bool(v), "{k}");
        }
    }

    #[test]
    fn blocks_and_arrays() {
        let text = "authorization {\n  user: alice\n  password = \"s3cret\"\n  timeout: 0.5\n}\n\
                    cluster: { routes: [\n  nats://a:6222\n  nats://b:6222, nats://c:6222\n] }\n\
                    empty {}\nnested { a { b { c: 1 } } }\n";
        let m = parse_str(text).unwrap();
        let Value::Map(auth) = get(&m, "authorization") else {
            panic!()
        };
        assert_eq!(get(auth, "user"), &Value::Str("alice".into()));
        assert_eq!(get(auth, "password"), &Value::Str("s3cret".into()));
        assert_eq!(get(auth, "timeout"), &Value::Float(0.5));
        let Value::Map(cluster) = get(&m, "cluster") else {
            panic!()
        };
        let Value::Array(routes) = get(cluster, "routes") else {
            panic!()
        };
        let routes: Vec<_> = routes.iter().map(|i| i.value.clone()).collect();
        assert_eq!(
            routes,
            ["nats://a:6222", "nats://b:6222", "nats://c:6222"].map(|s| Value::Str(s.into()))
        );
        let Value::Map(empty) = get(&m, "empty") else {
            panic!()
        };
        assert!(empty.is_empty());
    }

    #[test]
    fn one_line_block_with_commas() {
        let m = parse_str("authorization { user: a, password: b; token: c }").unwrap();
        let Value::Map(auth) = get(&m, "authorization") else {
            panic!()
        };
        assert_eq!(get(auth, "password"), &Value::Str("b".into()));
        assert_eq!(get(auth, "token"), &Value::Str("c".into()));
    }

    #[test]
    fn quoted_keys_and_last_wins() {
        let m = parse_str("\"port\": 1\n'port': 2\n").unwrap();
        assert_eq!(get(&m, "port"), &Value::Int(2));
    }

    #[test]
    fn variables() {
        let m = parse_str("PORT: 4333\nport: $PORT\nb { x: 1, y: $x, z: $PORT }\n").unwrap();
        assert_eq!(get(&m, "port"), &Value::Int(4333));
        let Value::Map(b) = get(&m, "b") else {
            panic!()
        };
        assert_eq!(get(b, "y"), &Value::Int(1));
        assert_eq!(get(b, "z"), &Value::Int(4333));
        let e = parse_str("port: $STARLING_SURELY_UNSET_VARIABLE\n").unwrap_err();
        assert!(e.to_string().contains("can not be found"), "{e}");
        std::env::set_var("STARLING_TEST_CONF_PORT", "4444");
        std::env::set_var("STARLING_TEST_CONF_SELF", "$STARLING_TEST_CONF_SELF");
        let m = parse_str("port: $STARLING_TEST_CONF_PORT\n").unwrap();
        assert_eq!(get(&m, "port"), &Value::Int(4444));
        assert!(parse_str("port: $STARLING_TEST_CONF_SELF\n").is_err());
    }

    #[test]
    fn block_string() {
        let m = parse_str("text: (\nline one\n  line two)\n)\nport: 1\n").unwrap();
        assert_eq!(
            get(&m, "text"),
            &Value::Str("\nline one\n  line two)".into())
        );
        assert_eq!(get(&m, "port"), &Value::Int(1));
    }

    #[test]
    fn include_splices_a_file() {
        let dir = crate::test_dir("conf-include");
        std::fs::write(dir.join("auth.conf"), "user: bob\npassword: pw\n").unwrap();
        std::fs::write(
            dir.join("main.conf"),
            "port: 1\nauthorization {\n  include auth.conf\n}\n",
        )
        .unwrap();
        let m = parse_file(&dir.join("main.conf")).unwrap();
        let Value::Map(auth) = get(&m, "authorization") else {
            panic!()
        };
        assert_eq!(get(auth, "user"), &Value::Str("bob".into()));
        // A file that includes itself is stopped, not a stack overflow.
        std::fs::write(dir.join("loop.conf"), "include loop.conf\n").unwrap();
        let e = parse_file(&dir.join("loop.conf")).unwrap_err();
        assert!(e.to_string().contains("nested too deeply"), "{e}");
    }

    #[test]
    fn a_document_wrapped_in_braces_is_read_as_nats_server_reads_it() {
        let m = parse_str("{\n  \"port\": 4567,\n  \"jetstream\": true\n}").unwrap();
        assert_eq!(get(&m, "port"), &Value::Int(4567));
        assert_eq!(get(&m, "jetstream"), &Value::Bool(true));
        let e = parse_str("{\n  \"port\": : \"invalid syntax\"\n}").unwrap_err();
        assert!(e.to_string().contains("Parse error"), "{e}");
    }

    #[test]
    fn errors_carry_positions() {
        for (text, want) in [
            ("port: [\n", "unterminated array"),
            ("a {\n b: 1\n", "unterminated block"),
            ("a: \"open\n", "unterminated string"),
            ("a: 1 2\n", "expected a value to end"),
            ("}\n", "unexpected '}'"),
            (": 1\n", "unexpected key separator"),
            ("a:\n", "expected a value"),
            ("a: \"\\q\"\n", "invalid escape"),
            ("a: 99999999999999999999\n", "out of range"),
            ("a: 9999999999999999gb\n", "out of range"),
        ] {
            let e = parse_str(text).unwrap_err();
            assert!(e.to_string().contains(want), "{text:?}: {e}");
            assert!(e.to_string().starts_with("<string>:"), "{e}");
        }
        let e = parse_str("a: 1\nb: 1 x\n").unwrap_err();
        assert!(matches!(e, ConfError::Syntax { line: 2, .. }), "{e:?}");
    }

    #[test]
    fn never_panics_on_garbage() {
        let samples = [
            "",
            "{",
            "}",
            "[",
            "]",
            "a",
            "a b c",
            "a: {[",
            "a: [{]}",
            "a: (",
            "'",
            "\"",
            "a: \"\\x4",
            "a: \"\\x\"",
            "a = = 1",
            "\u{feff}a: 1",
            "a: é",
            "a: $",
            "a: -",
            "a: -x",
            "a: 1.",
            "a: 1.2.3",
            "include",
            "include \"",
            "a: [,]",
            "a {,}",
            "$$",
            "//",
            "#",
            "a: 1e5",
            "a: 0x10",
        ];
        for s in samples {
            let _ = parse_str(s);
        }
        let deep = "a: ".to_string() + &"[".repeat(10_000);
        assert!(parse_str(&deep).is_err());
        let deep = "a ".to_string() + &"{ a ".repeat(10_000);
        assert!(parse_str(&deep).is_err());
    }
}
