//! The monitoring HTTP server (feature `monitor`): one task accepts; each HTTP connection is a
//! task of its own on the broker's task tracker, and all of them end when the server shuts
//! down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::info;

use crate::broker::Broker;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish once the server shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Logs the monitor's address as nats-server does, before the client listener's lines (scripts
/// that read the log up to "Server is ready" find it).
pub(crate) fn announce(listener: &TcpListener, https: bool) {
    if let Ok(addr) = listener.local_addr() {
        let scheme = if https { "https" } else { "http" };
        info!("Starting {scheme} monitor on {addr}");
    }
}

/// Serves on the listener the builder bound: records its address and starts the accept loop on
/// the broker's task tracker.
pub(crate) fn start(broker: &Arc<Broker>, listener: TcpListener) {
    broker
        .identity()
        .set_monitor_addr(listener.local_addr().ok());
    broker
        .lifecycle()
        .spawn(accept_loop(broker.clone(), listener));
}

async fn accept_loop(broker: Arc<Broker>, listener: TcpListener) {
    let shutdown = broker.lifecycle().shutdown_token().clone();
    crate::transport::accept_loop(
        "monitor",
        listener,
        shutdown.cancelled_owned(),
        |stream, _| match broker.monitor_tls() {
            #[cfg(feature = "tls")]
            Some(tls) => {
                let (broker, tls) = (broker.clone(), tls.clone());
                broker.clone().lifecycle().spawn(async move {
                    let timeout = tls.config().handshake_timeout();
                    match tokio::time::timeout(timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => serve(broker, stream).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "monitor TLS handshake failed"),
                        Err(_) => tracing::debug!("monitor TLS handshake timed out"),
                    }
                });
            }
            _ => {
                broker.lifecycle().spawn(serve(broker.clone(), stream));
            }
        },
    )
    .await;
}

/// Serves one HTTP connection (keep-alive) until the peer closes it or the server shuts down.
async fn serve<S>(broker: Arc<Broker>, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let shutdown = broker.lifecycle().shutdown_token().clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let response = respond(&broker, &req);
        async move { Ok::<_, Infallible>(response) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = shutdown.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
}

/// Answers one request (nats-server does not check the method: POST /varz is served like GET).
fn respond<B>(broker: &Broker, req: &Request<B>) -> Response<Full<Bytes>> {
    match super::answer_http(broker.view(), req.uri().path(), req.uri().query()) {
        Some(a) => response(
            StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK),
            a.content_type,
            a.body,
        ),
        None => response(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            b"404 page not found\n".to_vec(),
        ),
    }
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::NOT_FOUND {
        headers.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
    }
    resp
}
