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
//!
//! Proxies are taken from the environment as curl and reqwest take them (`HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, also in lower case): https endpoints through an HTTP
//! `CONNECT` tunnel, plain http ones with requests in absolute form; `user:password@` in the
//! proxy URL is sent as basic proxy authorization.

use bytes::Bytes;
use futures::TryStreamExt;
use http::{Request, Response};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use opendal::raw::{parse_content_encoding, parse_content_length};
use opendal::{Buffer, Error, ErrorKind, HttpBody, HttpTransport};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// A TCP connection that asks for quick ACKs before each read; `proxied` when it goes to an
/// HTTP proxy that forwards plain-http requests (they are then written in absolute form).
pub(crate) struct QuickAck(TokioIo<tokio::net::TcpStream>, bool);

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
        self.0.connected().proxy(self.1)
    }
}

/// hyper's TCP connector, its connections wrapped in [`QuickAck`], through the proxy the
/// environment names for a destination, if any.
#[derive(Clone)]
pub(crate) struct QuickAckConnector {
    tcp: HttpConnector,
    proxies: Arc<Matcher>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<http::Uri> for QuickAckConnector {
    type Response = QuickAck;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<QuickAck, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let Some(proxy) = self.proxies.intercept(&dst) else {
            let connecting = self.tcp.call(dst);
            return Box::pin(async move { Ok(QuickAck(connecting.await?, false)) });
        };
        if dst.scheme() == Some(&http::uri::Scheme::HTTPS) {
            // a CONNECT tunnel; TLS to the endpoint runs inside it
            let mut tunnel = Tunnel::new(proxy.uri().clone(), self.tcp.clone());
            if let Some(auth) = proxy.basic_auth() {
                tunnel = tunnel.with_auth(auth.clone());
            }
            let connecting = tunnel.call(dst);
            return Box::pin(async move { Ok(QuickAck(connecting.await?, false)) });
        }
        let connecting = self.tcp.call(proxy.uri().clone());
        Box::pin(async move { Ok(QuickAck(connecting.await?, true)) })
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
    proxies: Arc<Matcher>,
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
        let proxies = Arc::new(Matcher::from_env());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(QuickAckConnector {
                tcp,
                proxies: proxies.clone(),
            });
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle_timeout)
            .pool_max_idle_per_host(max_idle)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Self { client, proxies })
    }
}

/// Whether `e` comes from TLS refusing the server (its certificate, its protocol): asking again
/// gets the same answer.
fn tls_refusal(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut at = Some(e);
    while let Some(err) = at {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // rustls's errors reach us wrapped in io::Error
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                return true;
            }
        }
        at = err.source();
    }
    false
}

fn failed(
    what: &'static str,
    url: &str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    // the request may not have reached the server, or the answer was cut: worth another try,
    // unless TLS refused the server
    let temporary = !tls_refusal(&e);
    Error::new(ErrorKind::Unexpected, what)
        .with_operation("tidefs::http")
        .with_context("url", url)
        .with_temporary(temporary)
        .set_source(e)
}

impl HttpTransport for Transport {
    async fn fetch(&self, req: Request<Buffer>) -> opendal::Result<Response<HttpBody>> {
        let uri = req.uri().clone();
        let url = uri.to_string();
        let is_head = req.method() == http::Method::HEAD;
        let (mut parts, body) = req.into_parts();
        // a plain-http request through a proxy carries the proxy's credentials itself (a
        // tunnel's CONNECT carries them for https)
        if uri.scheme() == Some(&http::uri::Scheme::HTTP) {
            if let Some(auth) = self
                .proxies
                .intercept(&uri)
                .and_then(|p| p.basic_auth().cloned())
            {
                parts
                    .headers
                    .insert(http::header::PROXY_AUTHORIZATION, auth);
            }
        }
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
