//! A connection's writes, batched: collected in a buffer and handed to TLS when the HTTP layer
//! flushes, so the responses written between two flushes leave in one TLS record and one
//! `sendto(2)`.
//!
//! Why it is needed: hyper's HTTP/2 copies a DATA frame into its own buffer only when it is
//! small, and "small" depends on the transport. Over a transport that takes vectored writes (as
//! tokio-rustls does), a frame of 256 bytes or more (every patch, every warning) is written on
//! its own, and its write is flushed before the next frame is queued; tokio-rustls seals and
//! sends every write at once. Each patched or warned review therefore cost a TLS record and a
//! system call of its own (`strace -c` under load: 1.0 `sendto` per patched review over
//! HTTP/2, against 0.5 for the baseline's small answers, which HTTP/2 packs several to a
//! write). Over a transport without vectored writes, hyper copies frames up to 1 KB, which
//! holds these answers. So this wrapper says it takes no vectored writes, and buffers what it
//! is given (a larger frame's header and payload then still leave together).
//!
//! Reads pass straight through. Nothing is held back: hyper flushes after each batch of frames
//! and after each HTTP/1.1 response, and a flush writes the whole buffer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, BufWriter, ReadBuf};

/// One TLS record's worth: the most a single record can carry.
const BUFFER_BYTES: usize = 16 * 1024;

pub struct BatchedWrites<S>(BufWriter<S>);

impl<S: AsyncWrite> BatchedWrites<S> {
    pub fn new(inner: S) -> Self {
        Self(BufWriter::with_capacity(BUFFER_BYTES, inner))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for BatchedWrites<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BatchedWrites<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    /// Not vectored: see the module's comment. (The default `poll_write_vectored` writes the
    /// first non-empty slice, into the buffer.)
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A transport that records each write it is given.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl AsyncWrite for Writes {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncRead for Writes {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            buf.put_slice(b"request");
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn writes_reach_the_transport_together_at_the_flush() {
        let mut conn = BatchedWrites::new(Writes::default());
        assert!(
            !conn.is_write_vectored(),
            "hyper must copy mid-sized frames"
        );
        conn.write_all(b"HEADERS").await.unwrap();
        conn.write_all(&[b'd'; 700]).await.unwrap();
        conn.write_all(b"HEADERS").await.unwrap();
        assert!(conn.0.get_ref().0.is_empty(), "written before the flush");
        conn.flush().await.unwrap();
        let writes = &conn.0.get_ref().0;
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].len(), 7 + 700 + 7);
        conn.write_all(b"more").await.unwrap();
        conn.shutdown().await.unwrap();
        assert_eq!(
            conn.0.get_ref().0.last().unwrap(),
            b"more",
            "shutdown flushes"
        );
    }

    #[tokio::test]
    async fn a_write_larger_than_a_record_is_not_copied_and_keeps_its_order() {
        let mut conn = BatchedWrites::new(Writes::default());
        conn.write_all(b"head").await.unwrap();
        conn.write_all(&vec![b'x'; BUFFER_BYTES]).await.unwrap();
        conn.flush().await.unwrap();
        let writes = &conn.0.get_ref().0;
        assert_eq!(writes[0], b"head");
        assert_eq!(writes[1..].concat(), vec![b'x'; BUFFER_BYTES]);
    }

    #[tokio::test]
    async fn reads_pass_through() {
        let mut conn = BatchedWrites::new(Writes::default());
        let mut read = [0; 7];
        conn.read_exact(&mut read).await.unwrap();
        assert_eq!(&read, b"request");
    }
}
