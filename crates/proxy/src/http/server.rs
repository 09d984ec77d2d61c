//! Accept loop and per-connection serving: HTTP/1.1 and h2c on one port.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use super::forward;
use crate::drain::DrainWatcher;
use crate::listeners::ListenerContext;

/// Serves `listener` until `drain` fires; then stops accepting and lets every
/// connection finish its in-flight requests (the drain trigger waits for them).
pub async fn serve(listener: TcpListener, ctx: Arc<ListenerContext>, drain: DrainWatcher) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = drain.signaled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(err) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        ctx.config.load().stats.connections.fetch_add(1, Relaxed);
        let ctx = ctx.clone();
        let builder = builder.clone();
        let drain = drain.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| forward::handle(ctx.clone(), req));
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = drain.signaled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
            drop(drain);
        });
    }
}
