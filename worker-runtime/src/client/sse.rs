//! Server-sent events as they arrive in pieces: `event:` and `data:` lines, an empty line ending
//! each event (the subset of the format a load-balancing worker's `/stream` sends).

/// One event: its name (`message` when it has none) and its data lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SseEvent {
    pub(super) event: String,
    pub(super) data: String,
}

/// Bytes in, whole events out.
#[derive(Debug, Default)]
pub(super) struct SseParser {
    buffer: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// Take the next bytes of the body; the events they complete.
    pub(super) fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    events.push(SseEvent {
                        event: self.event.take().unwrap_or_else(|| "message".to_owned()),
                        data,
                    });
                }
                self.event = None;
                continue;
            }
            if line.starts_with(':') {
                continue; // a comment: the keep-alive
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line.as_ref(), ""),
            };
            match field {
                "event" => self.event = Some(value.to_owned()),
                "data" => match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.data = Some(value.to_owned()),
                },
                _ => {} // `id`, `retry`: not used here
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let text = ": keep-alive\n\nevent: stream\ndata: {\"output\":\"a\"}\n\nevent: progress\r\ndata: 1\r\ndata: 2\r\n\r\ndata: plain\n\nevent: result\ndata: {}\n\n";
        let expected = vec![
            SseEvent {
                event: "stream".into(),
                data: "{\"output\":\"a\"}".into(),
            },
            SseEvent {
                event: "progress".into(),
                data: "1\n2".into(),
            },
            SseEvent {
                event: "message".into(),
                data: "plain".into(),
            },
            SseEvent {
                event: "result".into(),
                data: "{}".into(),
            },
        ];
        for piece in [1, 2, 5, 7, text.len()] {
            let mut parser = SseParser::default();
            let mut events = Vec::new();
            for chunk in text.as_bytes().chunks(piece) {
                events.extend(parser.push(chunk));
            }
            assert_eq!(events, expected, "pieces of {piece}");
        }
    }
}
