//! Logging: tracing with a text or JSON formatter, level from `RUST_LOG` (default `info`).
//!
//! Lines are written by a background thread (`writer`), never by the task serving a review: a
//! slow or stalled log pipe (a busy container runtime, a full disk behind it) must not stall
//! the webhooks, since the API server waits on every review and a stalled webhook with
//! `failurePolicy: Fail` blocks its objects cluster-wide. When the buffer is full, lines are
//! dropped instead, for the same reason, and counted: `storage_admission_log_lines_dropped_total`
//! says when the log is incomplete.

mod json;
mod writer;

#[cfg(test)]
pub(crate) use json::JsonLines;

use std::io::IsTerminal as _;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use writer::{Batching, LineWriter, WriterGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The installed writer, for its drop count. Global like the subscriber it belongs to: a
/// process has one log.
static INSTALLED: OnceLock<LineWriter> = OnceLock::new();

/// Log lines dropped because the sink did not keep up or failed (0 before `init`, or when
/// `init` did not install its writer).
pub fn dropped_lines() -> u64 {
    INSTALLED.get().map_or(0, LineWriter::dropped_lines)
}

/// A review's warnings as one log field: each warning as written, separated by ` | `. A
/// `?Vec` field would render Rust's debug list (`["…"]`, every quote escaped twice in JSON),
/// escaping each character on the way; one warning is by far the common case, and reads best
/// as itself. A plain `&str` field, not a `Display` one: the line's formatter copies a string
/// as it is, where a `Display` value goes through the formatting machinery first.
pub fn warnings_field(warnings: &[String]) -> std::borrow::Cow<'_, str> {
    match warnings {
        [] => "".into(),
        [one] => one.as_str().into(),
        many => many.join(" | ").into(),
    }
}

/// Writes the waiting log lines when dropped: keep it alive until the process exits.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(#[allow(dead_code)] Option<WriterGuard>);

/// Installs the global subscriber; logs go to stderr so `review -o json` output stays clean.
pub fn init(format: LogFormat) -> LogGuard {
    init_with(format, writer::spawn(std::io::stderr(), Batching::DEFAULT))
}

/// `init` with the writer thread as started (or not).
fn init_with(format: LogFormat, started: std::io::Result<(LineWriter, WriterGuard)>) -> LogGuard {
    match started {
        Ok((writer, guard)) => {
            let installed = install(format, writer.clone());
            if installed {
                let _ = INSTALLED.set(writer);
            }
            LogGuard(installed.then_some(guard))
        }
        Err(e) => {
            // Out of threads at startup: log from the caller rather than not at all.
            eprintln!("the log writer thread did not start ({e}): logging without it");
            install(format, std::io::stderr);
            LogGuard(None)
        }
    }
}

/// Installs the subscriber writing to `writer`, unless one is installed already (tests call
/// `init` more than once: the first stays). Colours only on a terminal: escape codes in a log
/// file or a container log are noise.
fn install<W>(format: LogFormat, writer: W) -> bool
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(writer)
            .try_init()
            .is_ok(),
        // No spans: a review's fields are on its events (see server::router).
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(json::JsonLines::new(writer))
            .try_init()
            .is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Out of threads at startup: the process still logs (straight to stderr), with no writer
    /// to count drops for and no guard to wait on. (Sets the process's global subscriber:
    /// nextest runs each test in a process of its own.)
    #[test]
    fn without_a_writer_thread_the_log_is_written_from_the_caller() {
        let guard = init_with(
            LogFormat::Json,
            Err(std::io::Error::other("cannot start a thread")),
        );
        assert!(guard.0.is_none());
        assert!(
            tracing::dispatcher::has_been_set(),
            "a subscriber is installed"
        );
        assert!(INSTALLED.get().is_none());
        assert_eq!(dropped_lines(), 0);
        tracing::info!("logged without the writer");
    }
}

/// What a subscriber wrote, for tests: the writer to give it, and its lines read back.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl Captured {
    /// Each line, parsed as JSON (a line that is not, or that repeats a key, fails the test:
    /// readers differ on which of two equal keys wins, and strict ones refuse the line).
    pub fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        text.lines()
            .map(|line| {
                let Keys(keys) =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                let mut sorted = keys.clone();
                sorted.sort();
                sorted.dedup();
                assert_eq!(sorted.len(), keys.len(), "a key repeated: {line}");
                serde_json::from_str(line).unwrap()
            })
            .collect()
    }
}

/// A JSON object's keys, in order and with repeats: `serde_json::Value` keeps only the last
/// of two equal keys.
#[cfg(test)]
struct Keys(Vec<String>);

#[cfg(test)]
impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some((key, serde::de::IgnoredAny)) = map.next_entry::<String, _>()? {
                    keys.push(key);
                }
                Ok(Keys(keys))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

#[cfg(test)]
impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
