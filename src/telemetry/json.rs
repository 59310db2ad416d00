//! The JSON log line, written straight into the output buffer.
//!
//! tracing-subscriber's JSON formatter collects an event's fields into a `serde_json` map
//! (an allocation per field) and serialises the map; for the one `info` line a patched or
//! denied review writes, that was a sixth of the whole review's instructions
//! (`benches/profile.sh`). This formatter writes the same document — `timestamp`, `level`,
//! the event's fields (`message` among them) flattened, `target` — field by field into the
//! writer, escaping as it goes: no map, no intermediate strings. One difference: a name an
//! event gives twice is written once (see `Names::shadowed`).

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};

use crate::json_string::{Escaped, needs_escaping, push_escaped, push_quoted};

/// One JSON object per event, on one line, handed to `W` whole.
///
/// A layer of its own rather than an event format for tracing-subscriber's `fmt` layer: that
/// layer has the format write into a buffer of its own (through a `dyn fmt::Write`) and then
/// copies the buffer to the writer, which copies it once more, a copy nothing needed (under
/// 200 instructions a logged review: `benches/profile.sh` could not tell it apart from one
/// build's inlining against another's). Filtering is the subscriber's (the `EnvFilter` layer
/// beside this one), as it was. And a line is always one JSON object: the `fmt` layer wrote a
/// plain-text complaint in place of an event it could not format.
#[derive(Debug, Clone)]
pub struct JsonLines<W> {
    writer: W,
}

impl<W> JsonLines<W> {
    pub fn new(writer: W) -> Self {
        Self { writer }
    }
}

impl<S, W> Layer<S> for JsonLines<W>
where
    S: Subscriber,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        // The line is built in a plain String kept per thread. (tracing does not dispatch an
        // event from inside another on the same thread; should that ever happen, the inner
        // one gets a buffer of its own.)
        LINE.with(|kept| {
            let mut fresh = String::new();
            let mut kept = kept.try_borrow_mut();
            let line = match kept.as_deref_mut() {
                Ok(line) => line,
                Err(_) => &mut fresh,
            };
            line.clear();
            if render(line, event).is_err() {
                // A field's `Debug` or `Display` failed midway, leaving half a JSON object:
                // the event is replaced by a line that says so, still one JSON object.
                line.clear();
                render_unformattable(line, event);
            }
            // Where a write could fail (plain stderr, when the writer thread did not start),
            // the only place to say so would be that same stderr.
            let _ = self
                .writer
                .make_writer_for(event.metadata())
                .write_all(line.as_bytes());
            // A `trace` line carries a whole review (up to megabytes): not kept for good.
            if line.capacity() > KEPT_LINE_BYTES {
                *line = String::new();
            }
        });
    }
}

/// The message of the line that replaces an event whose fields could not be formatted.
const UNFORMATTABLE: &str = "a log event's fields could not be formatted";

/// The line in place of an event `render` could not write: its time, level, callsite name
/// and target, which cannot fail.
fn render_unformattable(line: &mut String, event: &Event<'_>) {
    let meta = event.metadata();
    line.push_str("{\"timestamp\":\"");
    // Writing into a String fails only through a failing `Display`, and a timestamp has none.
    let _ = write_timestamp(line, SystemTime::now());
    line.push_str("\",\"level\":\"");
    line.push_str(meta.level().as_str());
    line.push_str("\",\"message\":");
    push_quoted(line, UNFORMATTABLE);
    line.push_str(",\"event\":");
    push_quoted(line, meta.name());
    line.push_str(",\"target\":");
    push_quoted(line, meta.target());
    line.push_str("}\n");
}

/// The largest buffer a thread keeps between lines: a review line is well under 4 KB.
const KEPT_LINE_BYTES: usize = 16 * 1024;

thread_local! {
    /// The line being built on this thread, kept between events so it is not reallocated.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The event as one JSON object and a newline.
fn render(line: &mut String, event: &Event<'_>) -> fmt::Result {
    let meta = event.metadata();
    line.push_str("{\"timestamp\":\"");
    write_timestamp(line, SystemTime::now())?;
    line.push_str("\",\"level\":\"");
    line.push_str(meta.level().as_str());
    line.push('"');
    let mut fields = Fields {
        out: line,
        names: names(meta),
        result: Ok(()),
    };
    event.record(&mut fields);
    fields.result?;
    line.push_str(",\"target\":");
    push_quoted(line, meta.target());
    line.push_str("}\n");
    Ok(())
}

/// What the formatter needs to know of a callsite's field names, worked out once per callsite
/// (its names never change) and kept per thread for the first callsites seen: a handful log
/// anything at all.
#[derive(Clone, Copy)]
struct Names {
    /// No name needs escaping (tracing accepts any string literal as a name, but names are
    /// nearly always identifiers) or renaming. Asked per name, escaping cost about a tenth of
    /// a review line's instructions: a line has ten names.
    plain: bool,
    /// The fields (a bit per index) whose name a later field of the callsite repeats. They are
    /// left out, so the last value (in the callsite's order, where a format string's message
    /// comes first) wins, as it does for the readers that accept a repeated key (serde_json,
    /// jq): strict ones (Elasticsearch's) refuse the whole line. tracing-subscriber's own JSON
    /// writes every one.
    shadowed: u64,
    /// The fields (a bit per index) named like a key the line writes itself (`timestamp`,
    /// `level`, `target`): written as `fields.<name>`, where tracing-subscriber's JSON writes
    /// the key twice.
    renamed: u64,
}

impl Names {
    fn shadows(&self, field: &Field) -> bool {
        field.index() < SHADOWED_BITS && self.shadowed & 1 << field.index() != 0
    }

    fn renames(&self, field: &Field) -> bool {
        field.index() < SHADOWED_BITS && self.renamed & 1 << field.index() != 0
    }
}

/// The keys every line has besides the event's fields.
const LINE_KEYS: [&str; 3] = ["timestamp", "level", "target"];

/// The prefix of a field renamed because the line has a key of its name.
const RENAMED_PREFIX: &str = "fields.";

/// How many fields `Names::shadowed` can mark: more than tracing lets a callsite declare.
const SHADOWED_BITS: usize = u64::BITS as usize;

fn names(meta: &'static Metadata<'static>) -> Names {
    const KEPT: usize = 32;
    let work_out = || {
        let names: Vec<&str> = meta.fields().iter().map(|f| f.name()).collect();
        let bits = |of: &dyn Fn(usize, &str) -> bool| {
            names
                .iter()
                .enumerate()
                .filter(|&(i, name)| i < SHADOWED_BITS && of(i, name))
                .fold(0, |bits, (i, _)| bits | 1 << i)
        };
        let renamed: u64 = bits(&|_, name| LINE_KEYS.contains(&name));
        // Repeats are found among the names as written, renamed ones included.
        let written: Vec<String> = names
            .iter()
            .map(|name| match LINE_KEYS.contains(name) {
                true => format!("{RENAMED_PREFIX}{name}"),
                false => (*name).to_owned(),
            })
            .collect();
        Names {
            plain: renamed == 0 && names.iter().all(|name| !needs_escaping(name)),
            shadowed: bits(&|i, _| written[i + 1..].contains(&written[i])),
            renamed,
        }
    };
    NAMES.with_borrow_mut(|kept| {
        if let Some((_, names)) = kept.iter().find(|(seen, _)| std::ptr::eq(*seen, meta)) {
            return *names;
        }
        let names = work_out();
        if kept.len() < KEPT {
            kept.push((meta, names));
        }
        names
    })
}

thread_local! {
    /// Callsites seen on this thread, by their metadata (one `static` per callsite).
    static NAMES: RefCell<Vec<(&'static Metadata<'static>, Names)>> =
        const { RefCell::new(Vec::new()) };
}

/// Writes each field as `,"name":value`.
struct Fields<'a> {
    out: &'a mut String,
    names: Names,
    result: fmt::Result,
}

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: impl FnOnce(&mut String) -> fmt::Result) {
        if self.result.is_ok() && !self.names.shadows(field) {
            if self.names.plain {
                self.out.push_str(",\"");
                self.out.push_str(field.name());
                self.out.push_str("\":");
            } else {
                self.out.push_str(",\"");
                if self.names.renames(field) {
                    self.out.push_str(RENAMED_PREFIX);
                }
                push_escaped(self.out, field.name());
                self.out.push_str("\":");
            }
            self.result = value(self.out);
        }
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, |out| {
            push_quoted(out, value);
            Ok(())
        });
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, |out| write!(out, "{value}"));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, |out| write!(out, "{value}"));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        // Counts (patch_ops): `write!` would go through the formatter for a digit or two.
        self.put(field, |out| {
            push_u64(out, value);
            Ok(())
        });
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
            out.push('"');
            write!(Escaped(&mut *out), "{value}")?;
            out.push('"');
            Ok(())
        });
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `message` arrives here as format arguments, as do `%display` and `?debug` fields.
        self.put(field, |out| {
            out.push('"');
            write!(Escaped(&mut *out), "{value:?}")?;
            out.push('"');
            Ok(())
        });
    }
}

/// RFC 3339 in UTC with microseconds, as tracing-subscriber's default timer writes it. The
/// text up to the second is made once a second per thread and copied for the lines after it:
/// converting to a calendar date and writing nineteen digits was a tenth of the line's
/// instructions.
fn write_timestamp(out: &mut String, now: SystemTime) -> fmt::Result {
    // Seconds since 1970 rounded down, and the nanoseconds past that second.
    let (second, nanos) = match now.duration_since(UNIX_EPOCH) {
        Ok(since) => (
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            since.subsec_nanos(),
        ),
        // A clock set before 1970.
        Err(before) => {
            let before = before.duration();
            let whole = -i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            match before.subsec_nanos() {
                0 => (whole, 0),
                nanos => (whole - 1, 1_000_000_000 - nanos),
            }
        }
    };
    SECOND.with_borrow_mut(|(made_for, text)| {
        if *made_for != Some(second) {
            text.clear();
            write_second(text, second)?;
            *made_for = Some(second);
        }
        out.push_str(text);
        Ok(())
    })?;
    push_digits(out, nanos / 1000, 6);
    out.push('Z');
    Ok(())
}

thread_local! {
    /// The second this thread last wrote a timestamp in, and its text up to the fraction
    /// (`2026-12-03T16:40:29.`).
    static SECOND: RefCell<(Option<i64>, String)> = const { RefCell::new((None, String::new())) };
}

/// The timestamp of a second since 1970 up to its fraction: `2026-12-03T16:40:29.`.
fn write_second(out: &mut String, second: i64) -> fmt::Result {
    let (year, month, day) = civil_from_days(second.div_euclid(86_400));
    let of_day = second.rem_euclid(86_400) as u32; // in [0, 86400)
    match u32::try_from(year) {
        Ok(year @ 0..=9999) => push_digits(out, year, 4),
        // RFC 3339 has four digits; a clock this far off still gets a readable year.
        _ => write!(out, "{year:04}")?,
    }
    // Digit by digit: `{:02}` goes through the formatter's padding logic for each number.
    out.push('-');
    push_digits(out, month, 2);
    out.push('-');
    push_digits(out, day, 2);
    out.push('T');
    push_digits(out, of_day / 3600, 2);
    out.push(':');
    push_digits(out, of_day / 60 % 60, 2);
    out.push(':');
    push_digits(out, of_day % 60, 2);
    out.push('.');
    Ok(())
}

/// The proleptic Gregorian date (year, month, day) of a day counted from 1970-01-01, by
/// Howard Hinnant's `civil_from_days`: exact for any day an `i64` second can name, where the
/// `time` crate's conversion panics past the year 9999.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Counted from 0000-03-01, in 400-year eras of 146,097 days, each year starting in March
    // so that the leap day is the era year's last.
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097); // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // [0, 11]
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32; // [1, 31]
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `value` in decimal.
fn push_u64(out: &mut String, value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for &digit in &digits[start..] {
        out.push(char::from(digit));
    }
}

/// The last `width` decimal digits of `value`, zero-padded.
fn push_digits(out: &mut String, value: u32, width: u32) {
    for place in (0..width).rev() {
        let digit = (value / 10u32.pow(place)) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;
    use crate::telemetry::Captured;

    /// The lines `log` writes through our formatter, parsed back (`Captured::lines` fails on
    /// a repeated key).
    fn ours(log: impl Fn()) -> Vec<Value> {
        let ours = Captured::default();
        let subscriber = tracing_subscriber::registry().with(JsonLines::new(ours.clone()));
        tracing::subscriber::with_default(subscriber, log);
        ours.lines()
    }

    /// What `log` writes through each formatter: ours, and tracing-subscriber's JSON one as
    /// the service used it before, parsed back.
    fn both(log: impl Fn()) -> (Value, Value) {
        let [ours] = <[Value; 1]>::try_from(ours(&log)).expect("one line");
        let theirs = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(theirs.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, &log);
        let [theirs] = <[Value; 1]>::try_from(theirs.lines()).expect("one line");
        (ours, theirs)
    }

    /// A value whose `Debug` fails, as a buggy `Debug` impl may.
    struct Failing;

    impl fmt::Debug for Failing {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("half")?;
            Err(fmt::Error)
        }
    }

    #[test]
    fn an_event_that_cannot_be_formatted_is_replaced_by_a_line_that_says_so() {
        let lines = ours(|| {
            tracing::warn!(before = "kept?", broken = ?Failing, "the event");
            tracing::info!("the next event");
        });
        let [replaced, next] = <[Value; 2]>::try_from(lines).expect("two lines");
        assert_eq!(replaced["message"], UNFORMATTABLE);
        assert_eq!(replaced["level"], "WARN");
        assert!(replaced["event"].as_str().unwrap().starts_with("event "));
        assert_eq!(replaced["target"], module_path!());
        assert!(replaced.get("before").is_none(), "no half of the event");
        assert_eq!(next["message"], "the next event");
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
                denial = %message,
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
    fn warnings_are_one_plain_string_each_as_written() {
        let warnings = vec!["say \"hi\" to the class".to_owned(), "ünïcode ✓".to_owned()];
        let (ours, theirs) = both(|| {
            tracing::info!(
                warnings = &*crate::telemetry::warnings_field(&warnings),
                one = &*crate::telemetry::warnings_field(&warnings[..1]),
                none = &*crate::telemetry::warnings_field(&[]),
                "admitted"
            );
        });
        assert_eq!(ours["warnings"], "say \"hi\" to the class | ünïcode ✓");
        assert_eq!(ours["one"], "say \"hi\" to the class");
        assert_eq!(ours["none"], "");
        for field in ["warnings", "one", "none"] {
            assert_eq!(ours[field], theirs[field]);
        }
    }

    #[test]
    fn field_names_that_are_not_identifiers_are_escaped() {
        let (mut ours, mut theirs) = both(|| {
            tracing::info!(
                "say \"hi\"" = 1,
                "dotted.name" = "d",
                "ünï" = true,
                plain_name = "p",
                "named"
            )
        });
        ours["timestamp"] = Value::Null;
        theirs["timestamp"] = Value::Null;
        assert_eq!(ours, theirs);
        assert_eq!(ours["say \"hi\""], 1);
        assert_eq!(ours["dotted.name"], "d");
        assert_eq!(ours["ünï"], true);
        assert_eq!(ours["plain_name"], "p");
    }

    #[test]
    fn a_name_given_twice_is_written_once_with_the_last_value() {
        // tracing-subscriber's JSON writes both keys here; ours writes the last one.
        let lines = ours(|| {
            tracing::info!(
                message = "the field",
                count = 1u64,
                count = 2u64,
                "the format"
            )
        });
        let [line] = <[Value; 1]>::try_from(lines).expect("one line");
        // tracing lists a format string's message before the other fields: the field is last.
        assert_eq!(line["message"], "the field");
        assert_eq!(line["count"], 2);
        assert_eq!(line["level"], "INFO");
    }

    #[test]
    fn a_field_named_like_a_key_of_the_line_is_written_under_fields() {
        let lines = ours(|| {
            tracing::warn!(
                level = "high",
                target = "pvc/a",
                timestamp = 7u64,
                plain = 1u64,
                "m"
            );
            // Renamed onto a name the callsite also gives: written once, the last value.
            tracing::info!(level = "first", "fields.level" = "second", "m");
        });
        let [line, both] = <[Value; 2]>::try_from(lines).expect("two lines");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["fields.level"], "high");
        assert_eq!(line["fields.target"], "pvc/a");
        assert_eq!(line["fields.timestamp"], 7);
        assert_eq!(line["plain"], 1);
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(line["target"], module_path!());
        assert_eq!(both["fields.level"], "second");
        assert_eq!(both["level"], "INFO");
    }

    #[test]
    fn counts_are_written_in_decimal() {
        for value in [0, 1, 9, 10, 99, 100, 12_345, u64::MAX] {
            let mut out = String::new();
            push_u64(&mut out, value);
            assert_eq!(out, value.to_string());
        }
    }

    #[test]
    fn timestamps_are_rfc_3339_in_utc_with_microseconds() {
        let epoch = |secs, nanos| UNIX_EPOCH + Duration::new(secs, nanos);
        // In this order on one thread: the second's text is kept between lines, so a line in
        // the same second, the next one, and one back in time (the clock stepped) each follow
        // one that left something else behind.
        let times = [
            epoch(0, 0),
            epoch(951_782_400, 7_000), // 2000-02-29T00:00:00.000007Z
            epoch(951_782_400, 999_999_999),
            epoch(951_782_401, 0),
            epoch(951_782_400, 500_000),
            epoch(1_796_256_000 - 1, 999_999_999), // the last instant of 2026
            epoch(4_102_444_800 + 59, 123_456_789),
            UNIX_EPOCH - Duration::new(1, 500_000_000), // a clock set before 1970
            UNIX_EPOCH - Duration::new(62_135_596_800, 0), // 0001-01-01
            epoch(253_402_300_799, 999_999_000),        // the last second of 9999
            epoch(951_782_400, 7_000),
        ];
        for now in times {
            let t = time::OffsetDateTime::from(now);
            let mut ours = String::new();
            write_timestamp(&mut ours, now).unwrap();
            let expected = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.microsecond()
            );
            assert_eq!(ours, expected);
        }
        for (now, expected) in [
            (epoch(951_782_400, 7_000), "2000-02-29T00:00:00.000007Z"),
            (
                UNIX_EPOCH - Duration::new(1, 500_000_000),
                "1969-12-31T23:59:58.500000Z",
            ),
            // Past what the `time` crate converts (it panics): still a clear timestamp.
            (
                epoch(253_402_300_800, 1_000),
                "10000-01-01T00:00:00.000001Z",
            ),
        ] {
            let mut ours = String::new();
            write_timestamp(&mut ours, now).unwrap();
            assert_eq!(ours, expected);
        }
    }

    /// Every day from 1600 to 2500 (leap centuries, and 400-year eras on both sides of
    /// 1970), as the `time` crate dates it.
    #[test]
    fn calendar_dates_agree_with_the_time_crate() {
        let first = time::Date::from_calendar_date(1600, time::Month::January, 1).unwrap();
        let days_before_1970 =
            (time::Date::from_calendar_date(1970, time::Month::January, 1).unwrap() - first)
                .whole_days();
        let mut date = first;
        for days in -days_before_1970..(-days_before_1970 + 900 * 366) {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(
                (year, month, day),
                (
                    i64::from(date.year()),
                    u32::from(u8::from(date.month())),
                    u32::from(date.day())
                ),
                "day {days}"
            );
            date = date.next_day().unwrap();
        }
    }

    #[test]
    fn a_huge_line_is_written_whole_and_its_buffer_not_kept() {
        let payload = "x".repeat(4 * KEPT_LINE_BYTES);
        let (ours, _) = both(|| tracing::info!(request = %payload, "review payload"));
        assert_eq!(ours["request"].as_str().map(str::len), Some(payload.len()));
        assert!(LINE.with(|line| line.borrow().capacity()) <= KEPT_LINE_BYTES);
        let (ours, _) = both(|| tracing::info!("small"));
        assert_eq!(ours["message"], "small");
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
