//! An [`AdsServer`] serving on 127.0.0.1 with a port of its own.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_stream::wrappers::TcpListenerStream;

use crate::generator::Generator;
use crate::server::AdsServer;

/// A running ADS server; stops when dropped.
pub struct AdsTestServer {
    pub addr: SocketAddr,
    pub server: AdsServer,
    generators: watch::Sender<Arc<dyn Generator>>,
    _shutdown: oneshot::Sender<()>,
}

impl AdsTestServer {
    /// Binds 127.0.0.1:0 and serves `generator` until [`AdsTestServer::publish`] replaces it.
    pub async fn start(generator: Arc<dyn Generator>) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (generators, receiver) = watch::channel(generator);
        let server = AdsServer::new(receiver);
        let (shutdown, stopped) = oneshot::channel::<()>();
        let service = server.service();
        tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    // Either an explicit stop or the owner being dropped ends the server.
                    let _ = stopped.await;
                })
                .await;
            if let Err(error) = result {
                tracing::warn!(%error, "test ADS server failed");
            }
        });
        Ok(Self {
            addr,
            server,
            generators,
            _shutdown: shutdown,
        })
    }

    /// Publishes a config change: every connected proxy gets what changed for it.
    pub fn publish(&self, generator: Arc<dyn Generator>) {
        self.generators.send_replace(generator);
    }
}
