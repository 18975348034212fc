//! Live streams served on the bare socket, outside hyper's connection.
//!
//! A device keeps one `GET /v1/live` open for as long as it is online, so a
//! node holds one idle connection per device in the field. Served by hyper's
//! HTTP/1 connection, each of them would keep that connection's read buffer
//! (grown to 8 KiB by the first read) and write buffer (allocated at 8 KiB)
//! for its whole life: most of what an idle device costs the node. So the
//! accept loop ([`super::serve`]) peeks at a new connection's first bytes and
//! hands a connection that opens with `GET /v1/live` here:
//!
//! 1. the request's head is read (bounded by [`MAX_HEAD`] and the header-read
//!    timeout) and parsed with `httparse`; anything this path does not take
//!    on (a body, `Expect`, `Upgrade`, HTTP/1.0, a head that does not parse)
//!    goes to hyper with the bytes read so far put back in front
//!    ([`Rewind`]), so it is answered exactly as before;
//! 2. the request goes through the node's router like any other, so the
//!    route's authentication, caps, metrics and errors are the ones
//!    `GET /v1/live` always had;
//! 3. the answer's head is written, then its body as chunks as the stream
//!    yields them, with nothing buffered between events; the connection
//!    closes when the stream ends (`connection: close`).
//!
//! While idle the task waits on the stream, on the socket turning readable
//! (a client that went away is noticed at once, not at the next heartbeat,
//! so its place under the per-device cap frees at once) and on nothing else.
//! A write that cannot make progress for [`WRITE_STALL`] ends the connection:
//! a client that stops reading does not hold the node's memory.
//!
//! A live request that arrives on a connection already used for other
//! requests (a client pooling its connections) is served by hyper as before.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Method, Request, Response, Uri, Version, header};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tower_service::Service;

/// What a connection for the live channel starts with.
const LIVE: &[u8] = b"GET /v1/live";

/// The longest request head this path reads (a live request is a line, a
/// bearer token and a few headers); a longer one goes to hyper, whose own
/// limits answer it.
pub const MAX_HEAD: usize = 8 * 1024;

/// The most headers a live request may carry here.
const MAX_HEADERS: usize = 32;

/// How long a write may stall before the connection is dropped.
pub const WRITE_STALL: Duration = Duration::from_secs(30);

/// Whether `tcp` opens with a live-channel request, by peeking (nothing is
/// consumed). `false` when its first bytes are something else or arrive in
/// pieces too small to tell: hyper serves those connections in full.
async fn opens_with_live(tcp: &TcpStream) -> io::Result<bool> {
    let mut first = [0u8; LIVE.len() + 1];
    let n = tcp.peek(&mut first).await?;
    Ok(n == first.len() && first.starts_with(LIVE) && matches!(first[LIVE.len()], b' ' | b'?'))
}

/// Where a new connection goes.
pub enum Route {
    /// Its first request is a live request this path serves.
    Live(TcpStream, Box<Request<Body>>),
    /// hyper serves it (with whatever was read of it put back in front).
    Hyper(Rewind),
    /// It closed, failed or sent no complete head within `limit`.
    Drop,
}

/// Decides where `tcp` goes: peeks at its first bytes and, for a live
/// request, reads its head, all within `limit` (the header-read timeout).
pub async fn route(mut tcp: TcpStream, peer: SocketAddr, limit: Option<Duration>) -> Route {
    let first = async {
        if !opens_with_live(&tcp).await? {
            return Ok(Head::Other(Vec::new()));
        }
        read_head(&mut tcp, peer).await
    };
    let head = match limit {
        Some(limit) => tokio::time::timeout(limit, first).await,
        None => Ok(first.await),
    };
    match head {
        Ok(Ok(Head::Live(req))) => Route::Live(tcp, req),
        Ok(Ok(Head::Other(read))) => Route::Hyper(Rewind::new(read, tcp)),
        Ok(Ok(Head::Closed)) | Ok(Err(_)) | Err(_) => Route::Drop,
    }
}

/// The outcome of reading a connection's first request head.
enum Head {
    /// A live request this path serves.
    Live(Box<Request<Body>>),
    /// Anything else: hyper serves the connection, these bytes first.
    Other(Vec<u8>),
    /// The client closed the connection before its head was complete.
    Closed,
}

/// Reads and parses the first request's head of a connection that
/// [`opens_with_live`]. The caller bounds the time it may take.
async fn read_head(tcp: &mut TcpStream, peer: SocketAddr) -> io::Result<Head> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.len() >= MAX_HEAD {
            return Ok(Head::Other(buf));
        }
        let mut chunk = [0u8; 1024];
        let want = chunk.len().min(MAX_HEAD - buf.len());
        let n = tcp.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Partial) => continue,
            Ok(httparse::Status::Complete(len)) if len == buf.len() => {
                return Ok(match live_request(&parsed, peer) {
                    Some(req) => Head::Live(Box::new(req)),
                    None => Head::Other(buf),
                });
            }
            // Bytes past the head (a body or a pipelined request), too many
            // headers, or a head that does not parse: hyper's to answer.
            Ok(httparse::Status::Complete(_)) | Err(_) => return Ok(Head::Other(buf)),
        }
    }
}

/// The request as the router takes it, when it is a plain HTTP/1.1 `GET`
/// without a body; `None` for anything to leave to hyper.
fn live_request(parsed: &httparse::Request<'_, '_>, peer: SocketAddr) -> Option<Request<Body>> {
    if parsed.method != Some("GET") || parsed.version != Some(1) {
        return None;
    }
    let uri: Uri = parsed.path?.parse().ok()?;
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .version(Version::HTTP_11)
        .body(Body::empty())
        .ok()?;
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        if [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::EXPECT,
            header::UPGRADE,
        ]
        .contains(&name)
        {
            return None;
        }
        let value = HeaderValue::from_bytes(h.value).ok()?;
        req.headers_mut().append(name, value);
    }
    req.extensions_mut().insert(ConnectInfo(peer));
    Some(req)
}

/// Serves one live request on `tcp`: routes it, writes the answer and
/// streams its body until the stream ends, the client goes away or a write
/// stalls. Then the connection closes.
pub async fn serve_live(mut tcp: TcpStream, req: Box<Request<Body>>, mut router: Router) {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let resp = match router.call(*req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    if let Err(e) = answer(&mut tcp, resp).await {
        tracing::debug!(error = %e, ?peer, "live connection ended");
    }
}

async fn answer(tcp: &mut TcpStream, resp: Response<Body>) -> io::Result<()> {
    let (parts, body) = resp.into_parts();
    let (mut rd, mut wr) = tcp.split();
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    head.extend_from_slice(b"\r\n");
    for (name, value) in parts.headers.iter() {
        // This path frames the body and closes the connection itself.
        if [
            header::CONNECTION,
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
        ]
        .contains(name)
        {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        head.extend_from_slice(b"date: ");
        head.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n");
    write(&mut wr, &head).await?;
    drop(head);

    let mut data = body.into_data_stream();
    loop {
        // Only the stream and the socket's readability are waited on; what a
        // client sends is discarded (it has nothing to say on a live
        // connection) and its end of file ends the stream.
        let mut probe = [0u8; 16];
        let next = tokio::select! {
            next = data.next() => next,
            read = rd.read(&mut probe) => match read {
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => continue,
            },
        };
        match next {
            Some(Ok(bytes)) if bytes.is_empty() => {}
            Some(Ok(bytes)) => {
                let mut chunk = Vec::with_capacity(bytes.len() + 12);
                chunk.extend_from_slice(format!("{:x}\r\n", bytes.len()).as_bytes());
                chunk.extend_from_slice(&bytes);
                chunk.extend_from_slice(b"\r\n");
                write(&mut wr, &chunk).await?;
            }
            Some(Err(e)) => return Err(io::Error::other(e)),
            None => return write(&mut wr, b"0\r\n\r\n").await,
        }
    }
}

async fn write(wr: &mut tokio::net::tcp::WriteHalf<'_>, bytes: &[u8]) -> io::Result<()> {
    tokio::time::timeout(WRITE_STALL, wr.write_all(bytes))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"))?
}

/// A connection with bytes already read from it put back in front, for hyper.
pub struct Rewind {
    read: Vec<u8>,
    at: usize,
    inner: TcpStream,
}

impl Rewind {
    pub fn new(read: Vec<u8>, inner: TcpStream) -> Rewind {
        Rewind { read, at: 0, inner }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.read.len() {
            let n = buf.remaining().min(this.read.len() - this.at);
            buf.put_slice(&this.read[this.at..this.at + n]);
            this.at += n;
            if this.at == this.read.len() {
                this.read = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
