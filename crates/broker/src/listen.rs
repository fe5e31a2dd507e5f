//! Accepting connections without letting one listener starve the process: each
//! listener holds at most its share of the descriptors (a permit per open
//! connection; at the limit it stops accepting and the kernel's backlog waits),
//! accept errors back off instead of spinning (EMFILE returns at once, forever),
//! their log lines are rate-limited, and HTTP connections that go quiet are closed.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Descriptors kept for what is not a connection: the store, logs, outbound calls.
pub const RESERVED_DESCRIPTORS: usize = 64;
/// How often a recurring accept problem is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);
const BACKOFF_START: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The process's soft limit on open descriptors (Linux; 1024 where it cannot be read).
pub fn descriptor_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        })
        .unwrap_or(1024)
}

/// The connections a listener (or a group of listeners) may hold open at once.
#[derive(Clone)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl ConnectionLimit {
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(1);
        Self { permits: Arc::new(Semaphore::new(limit)), limit }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// Logs a recurring problem at most once per [`LOG_EVERY`], with how often it happened meanwhile.
struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    fn should_log(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now.duration_since(last) < LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// A TCP listener with a connection limit and error back-off.
pub struct Listener {
    tcp: TcpListener,
    limit: ConnectionLimit,
    name: &'static str,
    errors: Throttled,
    full: Throttled,
}

/// Whether an accept error says the process or the system ran out of something
/// (retrying at once would fail again), rather than that one connection failed.
fn exhausted(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(code) if [libc_codes::EMFILE, libc_codes::ENFILE, libc_codes::ENOBUFS, libc_codes::ENOMEM].contains(&code))
}

/// Linux's errno values for resource exhaustion (stable ABI constants).
mod libc_codes {
    pub const ENOMEM: i32 = 12;
    pub const ENFILE: i32 = 23;
    pub const EMFILE: i32 = 24;
    pub const ENOBUFS: i32 = 105;
}

impl Listener {
    /// `name` labels the listener in logs and metrics (a fixed set: api, mqtt, https).
    pub fn new(tcp: TcpListener, limit: ConnectionLimit, name: &'static str) -> Self {
        let quiet = || Throttled { last: None, suppressed: 0 };
        Self { tcp, limit, name, errors: quiet(), full: quiet() }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The next connection, with the permit it holds until it is dropped.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
        let mut backoff = BACKOFF_START;
        loop {
            let permit = match self.limit.permits.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    metrics::counter!("ferrocore_listener_full_total", "listener" => self.name).increment(1);
                    if let Some(suppressed) = self.full.should_log(Instant::now()) {
                        tracing::warn!(
                            listener = self.name,
                            limit = self.limit.limit,
                            suppressed,
                            "connection limit reached: new connections wait"
                        );
                    }
                    match self.limit.permits.clone().acquire_owned().await {
                        Ok(permit) => permit,
                        Err(_) => std::future::pending().await,
                    }
                }
            };
            match self.tcp.accept().await {
                Ok((stream, peer)) => return (stream, peer, permit),
                Err(err) => {
                    drop(permit);
                    metrics::counter!("ferrocore_listener_accept_errors_total", "listener" => self.name).increment(1);
                    if let Some(suppressed) = self.errors.should_log(Instant::now()) {
                        tracing::warn!(listener = self.name, error = %err, suppressed, "accept failed");
                    }
                    if exhausted(&err) {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
        }
    }
}

/// A stream that fails with `TimedOut` once neither direction has moved a byte
/// for `timeout` while the server waits on it: an idle keep-alive connection, a
/// client that stalls in its body, or one that stops reading the answer.
pub struct IdleTimeout<S> {
    inner: S,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<S> IdleTimeout<S> {
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self { inner, timeout, deadline: Box::pin(tokio::time::sleep(timeout)) }
    }

    fn moved(&mut self) {
        self.deadline.as_mut().reset(tokio::time::Instant::now() + self.timeout);
    }

    fn waiting<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        ready!(self.deadline.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "connection idle")))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(result)
            }
            Poll::Pending => self.waiting(cx),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(result) => {
                if result.as_ref().is_ok_and(|written| *written > 0) {
                    self.moved();
                }
                Poll::Ready(result)
            }
            Poll::Pending => self.waiting(cx),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_quiet_stream_times_out_and_traffic_keeps_it_open() {
        let (client, server) = tokio::io::duplex(64);
        let (mut client, mut server) = (client, IdleTimeout::new(server, Duration::from_secs(60)));
        let mut byte = [0u8; 1];
        for _ in 0..3 {
            // Positive control: a byte every 50 s keeps the connection alive past 60 s.
            tokio::time::sleep(Duration::from_secs(50)).await;
            client.write_all(b"x").await.unwrap();
            server.read_exact(&mut byte).await.unwrap();
        }
        let started = tokio::time::Instant::now();
        let err = server.read_exact(&mut byte).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(60));
    }

    #[tokio::test]
    async fn at_the_limit_the_next_connection_waits_for_a_permit() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut listener = Listener::new(tcp, ConnectionLimit::new(1), "api");
        let _first_client = TcpStream::connect(addr).await.unwrap();
        let (_first, _, permit) = listener.accept().await;
        let _second_client = TcpStream::connect(addr).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(waiting.is_err(), "accepted beyond the limit");
        drop(permit);
        let accepted = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
        assert!(accepted.is_ok(), "a freed permit lets the next connection in");
    }

    #[test]
    fn recurring_problems_are_logged_once_per_period_with_a_count() {
        let mut log = Throttled { last: None, suppressed: 0 };
        let start = Instant::now();
        assert_eq!(log.should_log(start), Some(0));
        for _ in 0..1000 {
            assert_eq!(log.should_log(start + Duration::from_secs(1)), None);
        }
        assert_eq!(log.should_log(start + LOG_EVERY), Some(1000));
    }

    #[test]
    fn exhaustion_errors_are_told_apart() {
        assert!(exhausted(&io::Error::from_raw_os_error(24)));
        assert!(!exhausted(&io::Error::from(io::ErrorKind::ConnectionAborted)));
        assert!(descriptor_limit() >= 16);
    }
}
