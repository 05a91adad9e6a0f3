//! Serving HTTP/1.1 with limits a slow or idle client cannot get around: each request's headers
//! must arrive within `CONNVAULT_HEADER_TIMEOUT_SECS` (an idle kept-alive connection is closed
//! after as long), each request must be answered within `CONNVAULT_REQUEST_TIMEOUT_SECS` (408
//! otherwise), and at most `CONNVAULT_MAX_CONNECTIONS` connections are open at once (further
//! clients wait in the listen queue until one closes).
//!
//! `axum::serve` sets none of these: a client that sent half a request header held its
//! connection open indefinitely.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::config::Config;

/// What [`serve`] enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn from_config(c: &Config) -> Limits {
        Limits { header_timeout: c.header_timeout, request_timeout: c.request_timeout, max_connections: c.max_connections }
    }
}

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting and waits for
/// the open connections to finish their requests (the caller bounds how long). Handlers see
/// the peer as `ConnectInfo<SocketAddr>`.
pub async fn serve(listener: TcpListener, router: axum::Router, limits: Limits, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let router = router.layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout));
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the connection semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = router.clone().map_request(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            req
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection closed with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
