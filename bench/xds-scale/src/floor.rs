//! The floor under a full push on this machine: the same bytes moved to the same number
//! of loopback connections with nothing else done (no gRPC, no protobuf, no config), so
//! the full-push figure can be read against what the wire alone costs here.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Time from "go" until each of `clients` connections has read `bytes_per_client`.
pub async fn wire_floor(clients: usize, bytes_per_client: usize) -> anyhow::Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let payload = vec![0x5a_u8; bytes_per_client];
    let (go_tx, go) = watch::channel(false);

    let mut readers = JoinSet::new();
    let mut writers = JoinSet::new();
    for _ in 0..clients {
        let mut reader = TcpStream::connect(address).await?;
        let (mut writer, _) = listener.accept().await?;
        let payload = payload.clone();
        let mut go = go.clone();
        writers.spawn(async move {
            let _ = go.wait_for(|go| *go).await;
            writer.write_all(&payload).await?;
            writer.shutdown().await
        });
        readers.spawn(async move {
            let mut buffer = vec![0; 64 * 1024];
            let mut total = 0;
            loop {
                match reader.read(&mut buffer).await? {
                    0 => return Ok::<_, std::io::Error>(total),
                    read => total += read,
                }
            }
        });
    }
    let started = Instant::now();
    go_tx.send(true)?;
    while let Some(read) = readers.join_next().await {
        let read = read??;
        anyhow::ensure!(read == bytes_per_client, "a reader got {read} bytes");
    }
    let elapsed = started.elapsed();
    while let Some(written) = writers.join_next().await {
        written??;
    }
    Ok(elapsed)
}
