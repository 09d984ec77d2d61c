//! The sample workload's TCP echo (`--tcp-port`): each connection is greeted with
//! `<service> <version>\n`, so a caller sees which workload a TCP route reached, and
//! then every byte it sends comes back.

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// Accepts TCP connections on `address` forever, greeting each with `who`.
pub async fn serve(address: SocketAddr, who: String) -> anyhow::Result<()> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    tracing::info!(%address, "sample workload echoing TCP");
    loop {
        let (mut stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let greeting = format!("{who}\n");
        tokio::spawn(async move {
            if stream.write_all(greeting.as_bytes()).await.is_err() {
                return;
            }
            let (mut reader, mut writer) = stream.split();
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
        });
    }
}
