//! A cloneable `futures::io` view of a tokio `TcpStream`.
//!
//! erl_dist is written against `futures::io::{AsyncRead, AsyncWrite}` and its
//! message channel needs a `Clone` stream (one clone reads, one writes).
//! tokio's `TcpStream` is neither, so this wraps it in an `Arc` and drives it
//! through the `&self` readiness API (`poll_read_ready` + `try_read`).
//!
//! tokio keeps one waker per direction, so at most one task may read and one
//! task may write at a time; the relay's connection handler respects that.

use futures::io::{AsyncRead, AsyncWrite};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::net::TcpStream;

/// Shared TCP stream; clones refer to the same socket.
#[derive(Debug, Clone)]
pub struct Stream(Arc<TcpStream>);

impl Stream {
    /// Wraps a connected socket.
    pub fn new(inner: TcpStream) -> Self {
        Self(Arc::new(inner))
    }

    /// Address of the remote end.
    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.0.peer_addr()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf) {
                // Readiness was stale: poll again, which registers the waker.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    // A TCP socket has no user-space buffer to flush.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    // The socket closes when the last clone is dropped.
    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (Stream, Stream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (
            Stream::new(client.unwrap()),
            Stream::new(accepted.unwrap().0),
        )
    }

    #[tokio::test]
    async fn round_trip_through_clones() {
        let (a, b) = pair().await;
        let (mut a_read, mut a_write) = (a.clone(), a);
        let (mut b_read, mut b_write) = (b.clone(), b);

        a_write.write_all(b"hello").await.unwrap();
        a_write.flush().await.unwrap();
        let mut buf = [0u8; 5];
        b_read.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");

        b_write.write_all(b"world!").await.unwrap();
        let mut buf = [0u8; 6];
        a_read.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"world!");
    }

    #[tokio::test]
    async fn large_transfer_with_concurrent_reader_and_writer() {
        let (a, b) = pair().await;
        let data: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let mut writer = a.clone();
        let send = tokio::spawn(async move {
            writer.write_all(&data).await.unwrap();
            writer.close().await.unwrap();
        });
        let mut reader = b;
        let mut got = vec![0u8; expected.len()];
        reader.read_exact(&mut got).await.unwrap();
        send.await.unwrap();
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn eof_when_peer_drops() {
        let (a, mut b) = pair().await;
        drop(a);
        let mut buf = [0u8; 1];
        assert_eq!(b.read(&mut buf).await.unwrap(), 0);
    }
}
