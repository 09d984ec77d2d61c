//! Test scenario building blocks: a fake control plane, upstream servers, the
//! proxy running in-process, and HTTP clients.
#![allow(dead_code)]

pub mod ads;
pub mod resources;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bosun_proxy::{Backoff, Proxy, ProxyConfig, ProxyHandle, XdsMode};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;

/// A proxy serving one listener named `outbound` in front of one cluster, both as given,
/// from a fake control plane: the control plane, the proxy and the listener's address.
pub async fn proxy_with(
    cluster: (String, envoy_types::pb::google::protobuf::Any),
    listener: (String, envoy_types::pb::google::protobuf::Any),
) -> (ads::FakeAds, TestProxy, SocketAddr) {
    use bosun_proxy::resource::ResourceType;
    let ads = ads::FakeAds::start().await;
    ads.set(ResourceType::Cluster, vec![cluster]);
    ads.set(ResourceType::Listener, vec![listener]);
    let proxy = TestProxy::start(&ads.url(), XdsMode::Delta).await;
    proxy.ready().await;
    let address = proxy.listener("outbound").await;
    (ads, proxy, address)
}

/// Polls `check` until it returns `Some`, or panics after `deadline`.
pub async fn eventually<T>(deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = tokio::time::Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Like [`eventually`] for async checks.
pub async fn eventually_async<T, F: Future<Output = Option<T>>>(
    deadline: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let start = tokio::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub struct TestProxy {
    pub handle: ProxyHandle,
    pub admin: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestProxy {
    pub async fn start(xds: &str, mode: XdsMode) -> TestProxy {
        Self::start_with(xds, mode, |_| {}).await
    }

    /// Starts a proxy whose config `adjust` has changed from the tests' default.
    pub async fn start_with(
        xds: &str,
        mode: XdsMode,
        adjust: impl FnOnce(&mut ProxyConfig),
    ) -> TestProxy {
        let mut config = ProxyConfig {
            xds_address: xds.to_owned(),
            xds_mode: mode,
            admin_address: "127.0.0.1:0".parse().expect("addr"),
            drain_timeout: Duration::from_secs(5),
            xds_backoff: Backoff {
                initial: Duration::from_millis(50),
                max: Duration::from_millis(200),
            },
            ..Default::default()
        };
        adjust(&mut config);
        let bound = Proxy::bind(config).await.expect("bind proxy");
        let handle = bound.handle();
        let admin = bound.admin_address;
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            bound
                .run(async {
                    let _ = rx.await;
                })
                .await
                .expect("proxy run");
        });
        TestProxy {
            handle,
            admin,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub async fn ready(&self) {
        tokio::time::timeout(Duration::from_secs(10), self.handle.wait_ready())
            .await
            .expect("proxy ready in time");
    }

    pub async fn listener(&self, name: &str) -> SocketAddr {
        let handle = self.handle.clone();
        eventually_async(Duration::from_secs(10), || {
            let handle = handle.clone();
            let name = name.to_owned();
            async move { handle.listener_address(&name).await }
        })
        .await
    }

    /// Signals shutdown and waits for the drain to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("proxy task");
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

pub fn http1_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn upstream(&self) -> &str {
        self.headers
            .get("x-upstream")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Sends `GET path` to the proxy listener at `proxy` with the given Host / :authority.
pub async fn get(
    client: &HttpClient,
    proxy: SocketAddr,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    try_get(client, proxy, authority, path, headers)
        .await
        .expect("request through proxy")
}

pub async fn try_get(
    client: &HttpClient,
    proxy: SocketAddr,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, hyper_util::client::legacy::Error> {
    let mut req = Request::builder().uri(format!("http://{proxy}{path}"));
    req = req.header("host", authority);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::new()).expect("request");
    let resp = client.request(req).await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Sends one h2c (prior knowledge) request with `:authority` = `authority`.
pub async fn h2_get(proxy: SocketAddr, authority: &str, path: &str) -> Reply {
    let stream = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect proxy");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(format!("http://{authority}{path}"))
        .version(http::Version::HTTP_2)
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("h2 request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Sends a raw absolute-form HTTP/1.1 request (what HTTP_PROXY clients send).
pub async fn absolute_form_get(proxy: SocketAddr, url: &str, host: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect proxy");
    let request = format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

pub async fn admin_get(admin: SocketAddr, path: &str) -> (StatusCode, String) {
    let reply = get(&http1_client(), admin, &admin.to_string(), path, &[]).await;
    (reply.status, reply.body)
}
