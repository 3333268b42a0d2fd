//! `test_input = "file.json"`: the file is read here, at compile time, so a file that is not
//! JSON, or not a job, is a compile error on the string instead of a failed local run later.
//! A small JSON reader of its own keeps `serde_json` out of the macro crate's build.

use std::path::PathBuf;

/// What is wrong with the file named by `test_input`, if anything; `None` also when the file
/// cannot be read (then `include_str!` reports it, on the same string).
pub(crate) fn check(path: &str) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let full = PathBuf::from(dir).join(path);
    let text = std::fs::read_to_string(&full).ok()?;
    check_text(path, &text)
}

fn check_text(path: &str, text: &str) -> Option<String> {
    let value = match Reader::new(text).document() {
        Ok(value) => value,
        Err((why, at)) => {
            let (line, column) = line_column(text, at);
            return Some(format!(
                "`{path}` is not valid JSON: {why} at line {line}, column {column}"
            ));
        }
    };
    let is_job =
        |v: &Json| matches!(v, Json::Object(fields) if fields.iter().any(|(k, _)| k == "input"));
    match &value {
        Json::Array(jobs) if jobs.is_empty() => Some(format!(
            "`{path}` is an empty list: give at least one job, `[{{\"input\": …}}]`"
        )),
        Json::Array(jobs) => jobs.iter().position(|j| !is_job(j)).map(|i| {
            format!(
                "`{path}`: item {i} of the list is not a job: each must be an object with an \
                 `input` field, `{{\"input\": …}}`"
            )
        }),
        v if is_job(v) => None,
        _ => Some(format!(
            "`{path}` is not a job: write an object with an `input` field, `{{\"input\": …}}` \
             (or a list of them)"
        )),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// Just enough of a JSON value to see whether it is a job.
enum Json {
    Object(Vec<(String, Json)>),
    Array(Vec<Json>),
    Other,
}

type Failed = (&'static str, usize);

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str) -> Reader<'a> {
        Reader {
            bytes: text.as_bytes(),
            at: 0,
        }
    }

    fn document(mut self) -> Result<Json, Failed> {
        let value = self.value(0)?;
        self.space();
        if self.at < self.bytes.len() {
            return Err(("trailing characters after the JSON value", self.at));
        }
        Ok(value)
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, Failed> {
        if depth > 128 {
            return Err(("nested too deeply", self.at));
        }
        self.space();
        match self.bytes.get(self.at) {
            None => Err(("unexpected end of file, expected a value", self.at)),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(|_| Json::Other),
            Some(b't') => self.word("true"),
            Some(b'f') => self.word("false"),
            Some(b'n') => self.word("null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(("expected a value", self.at)),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, Failed> {
        self.at += 1;
        let mut fields = Vec::new();
        self.space();
        if self.bytes.get(self.at) == Some(&b'}') {
            self.at += 1;
            return Ok(Json::Object(fields));
        }
        loop {
            self.space();
            if self.bytes.get(self.at) != Some(&b'"') {
                return Err(("expected a field name in double quotes", self.at));
            }
            let key = self.string()?;
            self.space();
            if self.bytes.get(self.at) != Some(&b':') {
                return Err(("expected `:` after the field name", self.at));
            }
            self.at += 1;
            let value = self.value(depth + 1)?;
            fields.push((key, value));
            self.space();
            match self.bytes.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Json::Object(fields));
                }
                _ => return Err(("expected `,` or `}`", self.at)),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, Failed> {
        self.at += 1;
        let mut items = Vec::new();
        self.space();
        if self.bytes.get(self.at) == Some(&b']') {
            self.at += 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.space();
            match self.bytes.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(("expected `,` or `]`", self.at)),
            }
        }
    }

    /// A string starting at `"`; returns its text (escapes kept as written: only field names
    /// are compared, and `input` has none).
    fn string(&mut self) -> Result<String, Failed> {
        let start = self.at + 1;
        self.at += 1;
        loop {
            match self.bytes.get(self.at) {
                None => return Err(("unterminated string", start - 1)),
                Some(b'"') => {
                    let text = String::from_utf8_lossy(&self.bytes[start..self.at]).into_owned();
                    self.at += 1;
                    return Ok(text);
                }
                Some(b'\\') => match self.bytes.get(self.at + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.at += 2,
                    Some(b'u') => {
                        let hex = self.bytes.get(self.at + 2..self.at + 6);
                        if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                            return Err(("invalid \\u escape", self.at));
                        }
                        self.at += 6;
                    }
                    _ => return Err(("invalid escape", self.at)),
                },
                Some(0..=0x1f) => return Err(("control character in a string", self.at)),
                Some(_) => self.at += 1,
            }
        }
    }

    fn word(&mut self, word: &'static str) -> Result<Json, Failed> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(Json::Other)
        } else {
            Err(("expected a value", self.at))
        }
    }

    fn number(&mut self) -> Result<Json, Failed> {
        let start = self.at;
        let digits = |r: &mut Reader<'_>| {
            let from = r.at;
            while r.bytes.get(r.at).is_some_and(u8::is_ascii_digit) {
                r.at += 1;
            }
            r.at > from
        };
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        if self.bytes.get(self.at) == Some(&b'0') {
            self.at += 1;
        } else if !digits(self) {
            return Err(("invalid number", start));
        }
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            if !digits(self) {
                return Err(("invalid number", start));
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                self.at += 1;
            }
            if !digits(self) {
                return Err(("invalid number", start));
            }
        }
        Ok(Json::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::check_text;

    #[test]
    fn jobs_pass() {
        for ok in [
            r#"{"input": {"text": "hi", "n": -1.5e3, "ok": [true, false, null]}}"#,
            r#"[{"input": 1}, {"id": "two", "input": "\u00e9\n"}]"#,
            "  {\"input\": {}}\n",
        ] {
            assert_eq!(check_text("t.json", ok), None, "{ok}");
        }
    }

    #[test]
    fn mistakes_are_located() {
        let cases = [
            (
                "{\"input\": {\"text\": \"hi\",}}",
                "`t.json` is not valid JSON: expected a field name in double quotes at line 1, column 25",
            ),
            (
                "{\n  \"input\": 01\n}",
                "`t.json` is not valid JSON: expected `,` or `}` at line 2, column 13",
            ),
            (
                "{\"input\": 'hi'}",
                "`t.json` is not valid JSON: expected a value at line 1, column 11",
            ),
            (
                "{\"input\": 1} x",
                "`t.json` is not valid JSON: trailing characters after the JSON value at line 1, column 14",
            ),
            (
                "{\"text\": \"hi\"}",
                "`t.json` is not a job: write an object with an `input` field, `{\"input\": …}` (or a list of them)",
            ),
            (
                "[{\"input\": 1}, 2]",
                "`t.json`: item 1 of the list is not a job: each must be an object with an `input` field, `{\"input\": …}`",
            ),
            (
                "[]",
                "`t.json` is an empty list: give at least one job, `[{\"input\": …}]`",
            ),
        ];
        for (text, message) in cases {
            assert_eq!(
                check_text("t.json", text).as_deref(),
                Some(message),
                "{text}"
            );
        }
    }
}
