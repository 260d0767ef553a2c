//! The HTTP server loop, with the limits a server facing browsers needs:
//! at most `max_connections` at once (further clients wait in the kernel's
//! backlog), a request head within `header_timeout` (which is also how
//! long an idle keep-alive connection is kept), heads of at most
//! `max_header_bytes` (431 beyond), a back-off when descriptors run out,
//! and a graceful end. HTTP/1.1 only (what WHIP clients and browsers use
//! here).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::accept::AcceptBackoff;

/// `[http]` limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
    /// A connection is closed (gracefully, then for good 10 s later) at
    /// this age: a client that stops reading its responses cannot hold
    /// its place for ever.
    pub max_age: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes; then stops
/// accepting, lets requests in progress finish (at most 5 s) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut backoff = AcceptBackoff::new("HTTP");
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => p.expect("never closed"),
        };
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => {
                    backoff.accepted();
                    c
                }
                Err(e) => {
                    backoff.failed(&e).await;
                    continue;
                }
            },
        };
        let svc = TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        while conns.try_join_next().is_some() {}
        conns.spawn(async move {
            let _permit = permit;
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .max_header_size(limits.max_header_bytes);
            let conn = b.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = async { drop(stop.wait_for(|s| *s).await) } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
                _ = tokio::time::sleep(limits.max_age) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}
