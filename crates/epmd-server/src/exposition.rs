//! `GET /metrics` over HTTP/1.1 on the `-metrics` address, and nothing
//! else: one request per connection, answered and closed.
//!
//! The endpoint is bounded like the EPMD port: at most [`MAX_CONNECTIONS`]
//! at once (more are closed unanswered), a request head of at most
//! [`MAX_HEAD`] bytes, and [`DEADLINE`] for reading it and for writing the
//! reply. Request parsing is `httparse`'s; routing is [`route`], pure.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tracing::{debug, trace, Instrument};

use crate::metrics::CONTENT_TYPE;

/// Scrapes served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// The longest request head read.
pub const MAX_HEAD: usize = 8 * 1024;
/// For reading the request and for writing the reply.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// Headers parsed at most (more: 431).
const MAX_HEADERS: usize = 32;

/// What a request head asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics` (`head`: `HEAD /metrics`).
    Metrics {
        /// Reply without a body.
        head: bool,
    },
    /// Another path: 404.
    NotFound,
    /// Another method on `/metrics`: 405.
    MethodNotAllowed,
    /// Too many headers: 431.
    HeadersTooLarge,
    /// Not HTTP/1.x: 400.
    Bad,
}

/// Routes a request head; `None` while it is incomplete.
pub fn route(buf: &[u8]) -> Option<Route> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => None,
        Err(httparse::Error::TooManyHeaders) => Some(Route::HeadersTooLarge),
        Err(_) => Some(Route::Bad),
        Ok(httparse::Status::Complete(_)) => {
            let path = req.path.unwrap_or("");
            let path = path.split_once('?').map_or(path, |(p, _)| p);
            Some(match (req.method, path) {
                (Some("GET"), "/metrics") => Route::Metrics { head: false },
                (Some("HEAD"), "/metrics") => Route::Metrics { head: true },
                (_, "/metrics") => Route::MethodNotAllowed,
                _ => Route::NotFound,
            })
        }
    }
}

/// The whole reply to `route`, the exposition drawn from `render`.
pub fn response(route: Route, render: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
    let (status, extra, body, send_body) = match route {
        Route::Metrics { head } => ("200 OK", "", render(), !head),
        Route::NotFound => (
            "404 Not Found",
            "",
            b"not found: try /metrics\n".to_vec(),
            true,
        ),
        Route::MethodNotAllowed => (
            "405 Method Not Allowed",
            "Allow: GET, HEAD\r\n",
            b"method not allowed\n".to_vec(),
            true,
        ),
        Route::HeadersTooLarge => (
            "431 Request Header Fields Too Large",
            "",
            b"too many headers\n".to_vec(),
            true,
        ),
        Route::Bad => ("400 Bad Request", "", b"bad request\n".to_vec(), true),
    };
    let content_type = match route {
        Route::Metrics { .. } => CONTENT_TYPE,
        _ => "text/plain; charset=utf-8",
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if send_body {
        out.extend_from_slice(&body);
    }
    out
}

/// Serves the metrics listener until the task is dropped. `render` draws
/// the exposition. Like the EPMD listeners, it stops accepting when an
/// upgrade begins (the new process then serves the socket's backlog), and
/// a scrape in progress counts as busy, so the upgrade lets it finish
/// before this process exits.
pub(crate) async fn serve(
    listener: AsyncFd<std::net::TcpListener>,
    gate: Arc<crate::handover::Gate>,
    render: Arc<dyn Fn() -> Vec<u8> + Send + Sync>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        gate.wait_accepting().await;
        let mut ready = match listener.readable().await {
            Ok(r) => r,
            Err(e) => {
                debug!("metrics listener failed: {e}");
                return;
            }
        };
        loop {
            if gate.accept_paused() {
                break;
            }
            let (stream, peer) = match crate::accept::accept4(ready.get_inner()) {
                Ok(a) => a,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    ready.clear_ready();
                    break;
                }
                Err(e) => {
                    // Out of descriptors, most likely: the EPMD port has the
                    // priority, so back off instead of spinning.
                    debug!("metrics accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    break;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                debug!(%peer, "metrics: too many scrapes at once, closed");
                continue;
            };
            let busy = gate.busy();
            let render = render.clone();
            tokio::spawn(
                async move {
                    match TcpStream::from_std(stream) {
                        Ok(s) => {
                            if let Err(e) = scrape(s, &*render).await {
                                trace!("metrics connection ended: {e}");
                            }
                        }
                        Err(e) => debug!("metrics connection: {e}"),
                    }
                    drop((permit, busy));
                }
                .instrument(tracing::debug_span!("metrics", %peer)),
            );
        }
    }
}

async fn scrape(
    mut stream: TcpStream,
    render: &(dyn Fn() -> Vec<u8> + Send + Sync),
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let route = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(r) = route(&buf) {
                return Ok::<_, std::io::Error>(r);
            }
            if buf.len() >= MAX_HEAD {
                return Ok(Route::HeadersTooLarge);
            }
            let mut chunk = [0u8; 1024];
            let want = chunk.len().min(MAX_HEAD - buf.len());
            let n = stream.read(&mut chunk[..want]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    if !matches!(route, Route::Metrics { .. }) {
        debug!("metrics endpoint: {route:?}");
    }
    let reply = response(route, render);
    tokio::time::timeout(DEADLINE, async {
        stream.write_all(&reply).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(Route::Metrics { head: false })
        );
        assert_eq!(
            route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Some(Route::Metrics { head: false })
        );
        assert_eq!(
            route(b"HEAD /metrics HTTP/1.1\r\n\r\n"),
            Some(Route::Metrics { head: true })
        );
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Some(Route::MethodNotAllowed)
        );
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Some(Route::NotFound));
        assert_eq!(route(b"\x00\x01\x6e"), Some(Route::Bad));
        let many = format!("GET /metrics HTTP/1.1\r\n{}\r\n", "a: b\r\n".repeat(40));
        assert_eq!(route(many.as_bytes()), Some(Route::HeadersTooLarge));
    }

    #[test]
    fn responses() {
        let r = response(Route::Metrics { head: false }, || b"x 1\n".to_vec());
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 4\r\n"));
        assert!(text.contains(CONTENT_TYPE));
        assert!(text.ends_with("\r\n\r\nx 1\n"));
        let head = response(Route::Metrics { head: true }, || b"x 1\n".to_vec());
        assert!(head.ends_with(b"Content-Length: 4\r\nConnection: close\r\n\r\n"));
        let r = response(Route::MethodNotAllowed, Vec::new);
        assert!(r.starts_with(b"HTTP/1.1 405 "));
        assert!(String::from_utf8(r)
            .unwrap()
            .contains("Allow: GET, HEAD\r\n"));
    }
}
