//! The log's writer: a thread that logs appends its line to a shared buffer and goes on; one
//! background thread writes the buffer to the sink in batches.
//!
//! Why not `tracing-appender`'s non-blocking writer, which this replaced: its worker wakes for
//! every line and flushes whenever its channel is empty, which under load is after every line,
//! since writing is faster than reviewing. `strace -c` on a server under load counted, per
//! logged review, 0.39 `write(2)`, 0.46 `sched_yield` (the channel spinning before it parks)
//! and 0.28 more `futex` calls than the no-logic baseline: kernel time and context switches on
//! the cores that serve the reviews, which the instruction counts never showed. Here a line
//! wakes the writer only when it finds it idle; the writer then lingers a few milliseconds so
//! that the lines of that window leave in one `write(2)`.
//!
//! What does not change: the thread that logs never waits on the sink. It holds the lock for
//! one copy; the writer holds it only to swap buffers, never while it writes. When the buffer
//! is full (a stalled sink), lines are dropped and counted, never queued without bound.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the writer batches: a tuning of the defaults, which tests shrink or stretch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batching {
    /// Bytes that wait at most; a line that would go past it is dropped.
    pub capacity: usize,
    /// Bytes waiting that make the writer write at once instead of lingering.
    pub hurry: usize,
    /// How long the writer waits, after a line woke it, for the lines that follow.
    pub linger: Duration,
}

impl Batching {
    /// A few seconds of a busy cluster's `info` log (a patched or denied review writes one
    /// line of about 500 bytes): only a stalled sink fills it. Lines appear at most 10 ms
    /// late, which no reader of a log notices; a burst is written as soon as 64 KB wait.
    pub const DEFAULT: Self = Self {
        capacity: 8 * 1024 * 1024,
        hurry: 64 * 1024,
        linger: Duration::from_millis(10),
    };
}

/// The writer handle the subscriber writes through. Cheap to clone.
#[derive(Clone)]
pub(crate) struct LineWriter(Arc<Shared>);

/// Stops the background writer when dropped, after it has written every waiting line.
pub(crate) struct WriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// The writer waits here: for a first line, for the end of its linger, for the close.
    wake: Condvar,
    dropped: AtomicU64,
    batching: Batching,
}

#[derive(Default)]
struct State {
    waiting: Vec<u8>,
    /// The writer waits for a line: the next one must wake it.
    idle: bool,
    /// The writer lingers: a line that brings `waiting` past `hurry` must wake it.
    lingering: bool,
    /// The guard was dropped: write what waits, then stop.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; were it poisoned, the buffer is still whole
        // bytes of whole lines.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer in front of `sink`, and the guard that stops it. Fails only when the thread
/// cannot be started.
pub(crate) fn spawn<W: Write + Send + 'static>(
    sink: W,
    batching: Batching,
) -> std::io::Result<(LineWriter, WriterGuard)> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        wake: Condvar::new(),
        dropped: AtomicU64::new(0),
        batching,
    });
    let thread = std::thread::Builder::new()
        .name("storage-admission-log".into())
        .spawn({
            let shared = Arc::clone(&shared);
            move || write_batches(&shared, sink)
        })?;
    Ok((
        LineWriter(Arc::clone(&shared)),
        WriterGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

impl LineWriter {
    /// Lines dropped so far: the buffer was full, or the sink failed to take them.
    pub fn dropped_lines(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }

    /// Appends one line (the subscriber hands over a whole line per event) without waiting.
    fn append(&self, line: &[u8]) {
        let shared = &*self.0;
        let mut state = shared.lock();
        if state.waiting.len() + line.len() > shared.batching.capacity {
            drop(state);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        state.waiting.extend_from_slice(line);
        // Waking costs a system call: only when the writer would otherwise not look.
        let wake = state.idle || (state.lingering && state.waiting.len() >= shared.batching.hurry);
        if wake {
            state.idle = false;
            state.lingering = false;
        }
        drop(state);
        if wake {
            shared.wake.notify_one();
        }
    }
}

impl Write for &LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LineWriter {
    type Writer = &'a LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// The background thread: wait for a line, linger, swap the buffers, write; until closed and
/// nothing waits.
fn write_batches<W: Write>(shared: &Shared, mut sink: W) {
    let batching = shared.batching;
    let mut batch = Vec::new();
    loop {
        let mut state = shared.lock();
        while state.waiting.is_empty() && !state.closed {
            state.idle = true;
            state = shared
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.idle = false;
        if !state.closed && state.waiting.len() < batching.hurry {
            state.lingering = true;
            state = shared
                .wake
                .wait_timeout_while(state, batching.linger, |state| {
                    !state.closed && state.waiting.len() < batching.hurry
                })
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            state.lingering = false;
        }
        if state.waiting.is_empty() {
            // Closed with nothing left.
            return;
        }
        std::mem::swap(&mut state.waiting, &mut batch);
        drop(state);
        let written = sink.write_all(&batch).and_then(|()| sink.flush());
        if written.is_err() {
            // Nowhere to say it but the count: the sink is where it would be said.
            let lines = batch.iter().filter(|byte| **byte == b'\n').count();
            shared.dropped.fetch_add(lines as u64, Ordering::Relaxed);
        }
        batch.clear();
        // A stalled sink's backlog can reach `capacity`: not kept once it is written.
        batch.shrink_to(batching.hurry * 2);
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // The writer does not panic; were it to, there is nothing left to write with.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// Long enough that a test which finishes saw no linger run out.
    const FOREVER: Duration = Duration::from_secs(3600);
    /// How long a test waits for what must happen before it calls it a hang.
    const HANG: Duration = Duration::from_secs(30);

    /// A sink that hands over each `write` it is given.
    struct Writes(mpsc::Sender<Vec<u8>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn lines_written_while_the_writer_lingers_leave_in_one_write() {
        let (writes, got) = mpsc::channel();
        let batching = Batching {
            linger: FOREVER,
            ..Batching::DEFAULT
        };
        let (writer, guard) = spawn(Writes(writes), batching).unwrap();
        for line in ["first\n", "second\n", "third\n"] {
            (&writer).write_all(line.as_bytes()).unwrap();
        }
        // The first line woke the writer, which lingers until the guard closes it: then it
        // writes everything that waits, in one piece, before the drop returns.
        drop(guard);
        let writes: Vec<String> = got.try_iter().map(text).collect();
        assert_eq!(writes, ["first\nsecond\nthird\n"]);
    }

    #[test]
    fn a_line_is_written_after_the_linger_without_another_one() {
        let (writes, got) = mpsc::channel();
        let batching = Batching {
            linger: Duration::ZERO,
            ..Batching::DEFAULT
        };
        let (writer, guard) = spawn(Writes(writes), batching).unwrap();
        for line in ["first\n", "second\n"] {
            (&writer).write_all(line.as_bytes()).unwrap();
            // The guard is alive: only the writer, woken by this line, can deliver it.
            assert_eq!(text(got.recv_timeout(HANG).unwrap()), line);
        }
        drop(guard);
    }

    #[test]
    fn a_burst_past_the_hurry_mark_is_written_without_waiting_for_the_linger() {
        let (writes, got) = mpsc::channel();
        let batching = Batching {
            capacity: 1024,
            hurry: 16,
            linger: FOREVER,
        };
        let (writer, guard) = spawn(Writes(writes), batching).unwrap();
        (&writer).write_all(b"short\n").unwrap();
        (&writer).write_all(b"a line past the mark\n").unwrap();
        // Whether the writer woke for the first line or not, the second takes the buffer
        // past the mark: it must arrive while the linger has an hour to run.
        let mut arrived = String::new();
        while arrived.len() < "short\na line past the mark\n".len() {
            arrived += &text(got.recv_timeout(HANG).unwrap());
        }
        assert_eq!(arrived, "short\na line past the mark\n");
        drop(guard);
    }

    /// A sink that takes nothing until told to: a stalled container log pipe.
    struct Stalled(mpsc::Receiver<()>);

    impl Write for Stalled {
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
        let batching = Batching {
            capacity: 40,
            hurry: 1,
            linger: Duration::ZERO,
        };
        let (writer, guard) = spawn(Stalled(stalled), batching).unwrap();
        // Each line is 10 bytes: at most 4 wait, at most 4 more are in the stalled write.
        // Every write returns at once: were the caller blocked, this loop would hang.
        for i in 0..100 {
            (&writer)
                .write_all(format!("line {i:04}\n").as_bytes())
                .unwrap();
        }
        let dropped = writer.dropped_lines();
        assert!(
            (100 - 8..=100 - 4).contains(&dropped),
            "dropped {dropped} of 100"
        );
        drop(release);
        drop(guard);
    }

    /// A sink that fails every write: stderr closed.
    struct Failing;

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_the_sink_refuses_are_counted_as_dropped() {
        let batching = Batching {
            linger: FOREVER,
            ..Batching::DEFAULT
        };
        let (writer, guard) = spawn(Failing, batching).unwrap();
        for line in ["first\n", "second\n", "third\n"] {
            (&writer).write_all(line.as_bytes()).unwrap();
        }
        drop(guard);
        assert_eq!(writer.dropped_lines(), 3);
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_and_all_of_them() {
        let (writes, got) = mpsc::channel();
        let batching = Batching {
            hurry: 256,
            linger: Duration::from_millis(1),
            ..Batching::DEFAULT
        };
        let (writer, guard) = spawn(Writes(writes), batching).unwrap();
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let writer = writer.clone();
                scope.spawn(move || {
                    for i in 0..500 {
                        let line = format!("thread {thread} line {i} {}\n", "x".repeat(i % 97));
                        (&writer).write_all(line.as_bytes()).unwrap();
                    }
                });
            }
        });
        drop(guard);
        let all = text(got.try_iter().flatten().collect());
        let mut seen = std::collections::HashSet::new();
        for line in all.lines() {
            let mut words = line.split(' ');
            let (thread, i) = match (words.next(), words.next(), words.next(), words.next()) {
                (Some("thread"), Some(thread), Some("line"), Some(i)) => (thread, i),
                _ => panic!("a line came apart: {line:?}"),
            };
            let i: usize = i.parse().unwrap();
            assert_eq!(words.next().unwrap_or(""), "x".repeat(i % 97), "{line:?}");
            assert!(seen.insert((thread.to_owned(), i)), "twice: {line:?}");
        }
        assert_eq!(seen.len(), 4 * 500);
        assert_eq!(writer.dropped_lines(), 0);
    }
}
