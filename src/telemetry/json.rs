//! The JSON log line, written straight into the output buffer.
//!
//! tracing-subscriber's JSON formatter collects an event's fields into a `serde_json` map
//! (an allocation per field) and serialises the map; for the one `info` line a patched or
//! denied review writes, that was a sixth of the whole review's instructions
//! (`benches/profile.sh`). This formatter writes the same document — `timestamp`, `level`,
//! the event's fields (`message` among them) flattened, `target` — field by field into the
//! writer, escaping as it goes: no map, no intermediate strings.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// One JSON object per event, on one line.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut writer, std::time::SystemTime::now())?;
        write!(writer, "\",\"level\":\"{}\"", meta.level())?;
        let mut fields = Fields {
            out: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        write_string(&mut writer, meta.target())?;
        writer.write_str("}\n")
    }
}

/// Writes each field as `,"name":value`.
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        self.out.write_char(',')?;
        write_string(self.out, field.name())?;
        self.out.write_char(':')
    }

    fn put(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| value(self.out));
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, |out| write_string(out, value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, |out| write!(out, "{value}"));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, |out| write!(out, "{value}"));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, |out| write!(out, "{value}"));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: those are written as strings.
        if value.is_finite() {
            self.put(field, |out| write!(out, "{value}"));
        } else {
            self.put(field, |out| write!(out, "\"{value}\""));
        }
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, |out| {
            out.write_char('"')?;
            write!(Escaped(&mut *out), "{value}")?;
            out.write_char('"')
        });
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `message` arrives here as format arguments, as do `%display` and `?debug` fields.
        self.put(field, |out| {
            out.write_char('"')?;
            write!(Escaped(&mut *out), "{value:?}")?;
            out.write_char('"')
        });
    }
}

/// A JSON string, quoted and escaped.
fn write_string(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(&mut *out).write_str(value)?;
    out.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string (RFC 8259 §7).
struct Escaped<W>(W);

impl<W: fmt::Write> fmt::Write for Escaped<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut start = 0;
        for (i, byte) in s.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x00..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[start..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

/// RFC 3339 in UTC with microseconds, as tracing-subscriber's default timer writes it.
fn write_timestamp(out: &mut impl fmt::Write, now: std::time::SystemTime) -> fmt::Result {
    let t = time::OffsetDateTime::from(now);
    write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// What `log` writes through each formatter: ours, and tracing-subscriber's JSON one as
    /// the service used it before, parsed back.
    fn both(log: impl Fn()) -> (Value, Value) {
        let ours = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_writer(ours.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, &log);
        let theirs = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(theirs.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, &log);
        let parse = |c: Captured| {
            let bytes = c.0.lock().unwrap().clone();
            let text = String::from_utf8(bytes).unwrap();
            assert_eq!(text.lines().count(), 1, "one line: {text}");
            serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
        };
        (parse(ours), parse(theirs))
    }

    #[test]
    fn a_review_line_has_the_same_fields_as_tracing_subscribers_json() {
        let warnings = vec![
            "say \"hi\"\\ to\nthe\tclass \u{1}".to_owned(),
            "ünïcode ✓".to_owned(),
        ];
        let (mut ours, mut theirs) = both(|| {
            let message = "PersistentVolumeClaim \"a\" denied";
            tracing::info!(
                uid = %"12df",
                webhook = "mutate",
                namespace = "",
                patch_ops = 2usize,
                allowed = false,
                ratio = 0.5,
                warnings = ?warnings,
                message = %message,
                "denied"
            );
        });
        for line in [&ours, &theirs] {
            let ts = line["timestamp"].as_str().unwrap();
            assert!(
                ts.len() == 27 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
                "{ts}"
            );
        }
        ours["timestamp"] = Value::Null;
        theirs["timestamp"] = Value::Null;
        assert_eq!(ours, theirs);
        assert_eq!(ours["warnings"].as_str().unwrap(), format!("{warnings:?}"));
    }

    #[test]
    fn a_plain_message_and_an_error_read_back_as_written() {
        let error = std::io::Error::other("disk \"full\"");
        let (mut ours, mut theirs) = both(|| {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                nan = f64::NAN,
                "cannot write\u{7f}"
            )
        });
        ours["timestamp"] = Value::Null;
        theirs["timestamp"] = Value::Null;
        assert_eq!(ours["message"], "cannot write\u{7f}");
        assert_eq!(ours["error"], "disk \"full\"");
        assert_eq!(ours["level"], "WARN");
        assert_eq!(ours["message"], theirs["message"]);
        assert_eq!(ours["error"], theirs["error"]);
    }
}
