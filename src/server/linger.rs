//! A lingering close: after the server's last byte (TCP `FIN`), read and discard what the
//! client is still sending for a little while before closing the socket.
//!
//! Closing a socket with unread data in its receive buffer makes the kernel answer with a
//! `RST`, and a client still uploading (a body over `--max-body-bytes`, refused before it was
//! read) then fails on its next write and never reads the `413` already on its way. Draining
//! for a bounded time and byte count lets it finish sending and read the answer (nginx's
//! `lingering_close` does the same). It sits under TLS: the drained bytes are never decrypted.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long the client may stay silent before the socket is closed: a client that is not
/// sending anything (the usual close) costs at most this long.
const IDLE: Duration = Duration::from_secs(1);
/// The most time and bytes spent draining one connection, however fast the client sends.
const MAX_TIME: Duration = Duration::from_secs(5);
const MAX_BYTES: usize = 32 * 1024 * 1024;

pub struct LingeringClose<S> {
    inner: S,
    state: State,
}

enum State {
    Open,
    Draining {
        idle: Pin<Box<Sleep>>,
        until: Instant,
        left: usize,
    },
    Closed,
}

impl<S> LingeringClose<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            state: State::Open,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LingeringClose<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LingeringClose<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Open => {
                    ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
                    this.state = State::Draining {
                        idle: Box::pin(tokio::time::sleep(IDLE)),
                        until: Instant::now() + MAX_TIME,
                        left: MAX_BYTES,
                    };
                }
                State::Draining { idle, until, left } => {
                    if idle.as_mut().poll(cx).is_ready() || Instant::now() >= *until {
                        this.state = State::Closed;
                        continue;
                    }
                    let mut scratch = [0u8; 8192];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                        Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                            *left = left.saturating_sub(buf.filled().len());
                            if *left == 0 {
                                this.state = State::Closed;
                            } else {
                                idle.as_mut().reset(Instant::now() + IDLE);
                            }
                        }
                        // The client closed its side (or the socket failed): nothing to wait for.
                        Poll::Ready(_) => this.state = State::Closed,
                        Poll::Pending => return Poll::Pending,
                    }
                }
                State::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_closed_after_the_idle_time() {
        let (server, mut client) = duplex(64);
        let mut server = LingeringClose::new(server);
        let started = Instant::now();
        server.shutdown().await.unwrap();
        assert_eq!(
            started.elapsed(),
            IDLE,
            "paused time: exactly the idle wait"
        );
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "the client saw the end of the stream");
    }

    #[tokio::test(start_paused = true)]
    async fn what_the_client_still_sends_is_drained_until_it_closes() {
        let (server, mut client) = duplex(64);
        let mut server = LingeringClose::new(server);
        let drain = tokio::spawn(async move { server.shutdown().await });
        // Far more than the pipe holds: it is all written only because the server reads it.
        client.write_all(&[b' '; 64 * 1024]).await.unwrap();
        drop(client);
        drain.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn draining_stops_at_the_byte_limit() {
        let (server, mut client) = duplex(64 * 1024);
        let mut server = LingeringClose::new(server);
        let drain = tokio::spawn(async move { server.shutdown().await });
        // A client that never stops: the drain ends at MAX_BYTES, and the pipe then fills up.
        let chunk = [b' '; 64 * 1024];
        let mut sent = 0;
        while client.write_all(&chunk).await.is_ok() {
            sent += chunk.len();
            if drain.is_finished() {
                break;
            }
        }
        drain.await.unwrap().unwrap();
        assert!(sent >= MAX_BYTES, "{sent}");
    }
}
