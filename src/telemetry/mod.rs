//! Logging: tracing with a text or JSON formatter, level from `RUST_LOG` (default `info`).
//!
//! Lines are written by a background thread (`tracing-appender`'s non-blocking writer), never
//! by the task serving a review: a slow or stalled log pipe (a busy container runtime, a full
//! disk behind it) must not stall the webhooks, since the API server waits on every review and
//! a stalled webhook with `failurePolicy: Fail` blocks its objects cluster-wide. When the
//! buffer is full, lines are dropped instead (`lossy`), for the same reason, and counted:
//! `storage_admission_log_lines_dropped_total` says when the log is incomplete.

mod json;

#[cfg(test)]
pub(crate) use json::JsonLines;

use std::io::IsTerminal as _;
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Lines the writer buffers before it drops. The channel allocates its slots up front (32
/// bytes each): 0.5 MB of idle RSS, where 128k lines cost 4 MB of a 20 MB budget. Full, it
/// holds a few MB and seconds of logging at the `info` rate of a busy cluster (one line per
/// patched or denied review), so only a stalled sink reaches it.
const BUFFERED_LINES: usize = 16_384;

/// What one write to stderr carries at most: about a hundred review lines.
const SINK_BUFFER_BYTES: usize = 64 * 1024;

/// The installed writer's drop count. Global like the subscriber it belongs to: a process
/// has one log.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines dropped because the sink did not keep up (0 before `init`, or when `init` did
/// not install its writer).
pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |counter| counter.dropped_lines() as u64)
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

/// Flushes the buffered log lines when dropped: keep it alive until the process exits.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(#[allow(dead_code)] Option<WorkerGuard>);

/// The non-blocking, lossy writer in front of `sink`.
fn writer<W: std::io::Write + Send + 'static>(sink: W, lines: usize) -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(lines)
        .thread_name("storage-admission-log")
        .finish(sink)
}

/// The sink behind the worker, buffered: the worker writes every line it finds waiting and
/// flushes when none is left (tracing-appender's worker loop), so under load one write(2)
/// carries many lines, and a line is never held back once the log is idle.
fn buffered<W: std::io::Write>(sink: W) -> std::io::BufWriter<W> {
    std::io::BufWriter::with_capacity(SINK_BUFFER_BYTES, sink)
}

/// Installs the global subscriber; logs go to stderr so `review -o json` output stays clean.
/// Colours only on a terminal: escape codes in a log file or a container log are noise.
pub fn init(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = writer(buffered(std::io::stderr()), BUFFERED_LINES);
    let dropped = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    // try_init: a second call (tests) keeps the first subscriber instead of panicking.
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        // No spans: a review's fields are on its events (see server::router).
        LogFormat::Json => builder.event_format(json::JsonLines).try_init(),
    };
    if installed.is_ok() {
        let _ = DROPPED.set(dropped);
    }
    LogGuard(installed.is_ok().then_some(guard))
}

/// What a subscriber wrote, for tests: the writer to give it, and its lines read back.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl Captured {
    /// Each line, parsed as JSON (a line that is not fails the test).
    pub fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
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

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::sync::mpsc;

    use super::*;

    /// A sink that takes nothing until told to: a stalled container log pipe.
    struct Stalled(mpsc::Receiver<()>);

    impl std::io::Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_sink_drops_and_counts_lines_instead_of_blocking_the_caller() {
        let (release, stalled) = mpsc::channel();
        let (mut writer, guard) = writer(Stalled(stalled), 4);
        let dropped = writer.error_counter();
        // The worker takes at most one line into the stalled write; the buffer holds four
        // more. Every write returns at once: were the writer blocking, this loop would hang.
        for i in 0..100 {
            writer.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(
            dropped.dropped_lines() >= 100 - 5,
            "dropped {} of 100",
            dropped.dropped_lines()
        );
        drop(release);
        drop(guard);
    }

    /// A sink that hands over what it was given each time it is flushed.
    struct Flushed {
        written: Vec<u8>,
        flushed: mpsc::Sender<Vec<u8>>,
    }

    impl std::io::Write for Flushed {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            let _ = self.flushed.send(std::mem::take(&mut self.written));
            Ok(())
        }
    }

    #[test]
    fn a_buffered_sink_is_flushed_as_soon_as_no_other_line_waits() {
        let (flushed, lines) = mpsc::channel();
        let sink = buffered(Flushed {
            written: Vec::new(),
            flushed,
        });
        let (mut writer, guard) = writer(sink, 16);
        for line in ["first\n", "second\n"] {
            writer.write_all(line.as_bytes()).unwrap();
            // The guard is alive: only the worker's flush after its batch can deliver it.
            let got = lines
                .recv_timeout(std::time::Duration::from_secs(30))
                .expect("a line waited in the buffer with nothing else to write");
            assert_eq!(String::from_utf8(got).unwrap(), line);
        }
        drop(guard);
    }
}
