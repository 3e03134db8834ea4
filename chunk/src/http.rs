//! The HTTP transport OpenDAL's S3 service sends requests through: hyper's pooled HTTP/1.1
//! client (TLS by rustls with the platform's roots) over TCP connections that acknowledge what
//! they receive at once.
//!
//! Why our own: Ceph RGW's beast frontend, as deployed by default (`tcp_nodelay` off), writes a
//! response's headers and its body with separate writes. With Nagle's algorithm on the server,
//! a body smaller than a segment waits until the headers are acknowledged, and Linux delays that
//! ACK (up to 40 ms) on a connection it takes for interactive: every GET of a small object took
//! ~44 ms on this machine's RGW (loopback, where a segment is 64 KiB), ~22 reads of small files
//! per second for any S3 client; on a real network objects up to ~8 KiB are hit the same way
//! (rook/rook#17988). Asking for quick ACKs (`TCP_QUICKACK`) before every read sends a pending
//! ACK at once, so the body follows the headers without the wait: 0.6 ms instead of 44. The
//! option is not sticky (the kernel falls back to delayed ACKs by itself), hence once per read.
//! reqwest, which we used before, gives no access to its sockets.

use bytes::Bytes;
use futures::TryStreamExt;
use http::{Request, Response};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use opendal::raw::{parse_content_encoding, parse_content_length};
use opendal::{Buffer, Error, ErrorKind, HttpBody, HttpTransport};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// A TCP connection that asks for quick ACKs before each read.
pub(crate) struct QuickAck(TokioIo<tokio::net::TcpStream>);

impl QuickAck {
    fn rearm(&self) {
        // best effort: a socket that refuses the option still works, only slower
        let _ = socket2::SockRef::from(self.0.inner()).set_tcp_quickack(true);
    }
}

impl Read for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        self.rearm();
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl Write for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl Connection for QuickAck {
    fn connected(&self) -> Connected {
        self.0.connected()
    }
}

/// hyper's TCP connector, its connections wrapped in [`QuickAck`].
#[derive(Clone)]
pub(crate) struct QuickAckConnector(HttpConnector);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<http::Uri> for QuickAckConnector {
    type Response = QuickAck;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<QuickAck, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let connecting = self.0.call(dst);
        Box::pin(async move { Ok(QuickAck(connecting.await?)) })
    }
}

/// A request body: the bytes of an OpenDAL [`Buffer`], piece by piece.
pub(crate) struct BufferBody(Buffer);

impl http_body::Body for BufferBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.next().map(|b| Ok(http_body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0.len() as u64)
    }
}

/// The transport (see the module doc).
pub(crate) struct Transport {
    client: Client<hyper_rustls::HttpsConnector<QuickAckConnector>, BufferBody>,
}

impl Transport {
    /// A transport with connections made within `connect_timeout` and kept idle for
    /// `idle_timeout`, at most `max_idle` of them per host.
    pub(crate) fn new(
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Result<Self, rustls::Error> {
        use rustls_platform_verifier::ConfigVerifierExt;
        let tls = rustls::ClientConfig::with_platform_verifier()?;
        let mut tcp = HttpConnector::new();
        // https URLs are the TLS layer's to open
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(QuickAckConnector(tcp));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle_timeout)
            .pool_max_idle_per_host(max_idle)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Self { client })
    }
}

fn failed(
    what: &'static str,
    url: &str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    // the request may not have reached the server, or the answer was cut: worth another try
    Error::new(ErrorKind::Unexpected, what)
        .with_operation("tidefs::http")
        .with_context("url", url)
        .with_temporary(true)
        .set_source(e)
}

impl HttpTransport for Transport {
    async fn fetch(&self, req: Request<Buffer>) -> opendal::Result<Response<HttpBody>> {
        let uri = req.uri().clone();
        let url = uri.to_string();
        let is_head = req.method() == http::Method::HEAD;
        let (parts, body) = req.into_parts();
        let resp = self
            .client
            .request(Request::from_parts(parts, BufferBody(body)))
            .await
            .map_err(|e| failed("send http request", &url, e))?;
        let (mut parts, body) = resp.into_parts();
        let size = if is_head || parse_content_encoding(&parts.headers)?.is_some() {
            None
        } else {
            parse_content_length(&parts.headers)?
        };
        let stream = http_body_util::BodyDataStream::new(body)
            .try_filter(|b| std::future::ready(!b.is_empty()))
            .map_ok(Buffer::from)
            .map_err(move |e| failed("read data from http response", &url, e));
        parts.extensions.insert(uri);
        Ok(Response::from_parts(
            parts,
            HttpBody::new(sync_wrapper::SyncStream::new(stream), size),
        ))
    }
}
