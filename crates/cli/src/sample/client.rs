//! The HTTP client of the sample workload and the traffic generator: HTTP/1.1 with
//! connection reuse, either straight to the destination or through an HTTP proxy (the
//! sidecar's outbound listener), the way any `HTTP_PROXY` client does it: connect to the
//! proxy and send the request in absolute form (`GET http://reviews:9080/reviews`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid proxy address {address:?}: {reason}")]
    InvalidProxy { address: String, reason: String },
    #[error("invalid request to {url}: {source}")]
    InvalidRequest { url: String, source: http::Error },
    #[error("request to {url} failed: {source}")]
    Request {
        url: String,
        source: hyper_util::client::legacy::Error,
    },
    #[error("reading the response from {url} failed: {source}")]
    Body { url: String, source: hyper::Error },
    #[error("no response from {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
}

/// A response, fully read.
#[derive(Debug)]
pub struct FetchedResponse {
    pub status: StatusCode,
    pub body: Bytes,
}

/// A cloneable HTTP/1.1 client; clones share one connection pool.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<ProxyConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    /// A client that sends every request through `proxy` when given, else directly.
    pub fn new(proxy: Option<Uri>, timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let connector = ProxyConnector { http, proxy };
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self { inner, timeout }
    }

    /// `GET url` with `headers`, reading the whole answer.
    pub async fn get(&self, url: &Uri, headers: HeaderMap) -> Result<FetchedResponse, ClientError> {
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(url.clone())
            .body(Empty::new())
            .map_err(|source| ClientError::InvalidRequest {
                url: url.to_string(),
                source,
            })?;
        request.headers_mut().extend(headers);
        let exchange = async {
            let response =
                self.inner
                    .request(request)
                    .await
                    .map_err(|source| ClientError::Request {
                        url: url.to_string(),
                        source,
                    })?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|source| ClientError::Body {
                    url: url.to_string(),
                    source,
                })?
                .to_bytes();
            Ok(FetchedResponse { status, body })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                url: url.to_string(),
                timeout: self.timeout,
            })?
    }
}

/// Parses a proxy address as `HTTP_PROXY` holds it: `http://127.0.10.1:15001` or
/// `127.0.10.1:15001`. An empty value means no proxy.
pub fn parse_proxy(address: &str) -> Result<Option<Uri>, ClientError> {
    let address = address.trim();
    if address.is_empty() {
        return Ok(None);
    }
    let invalid = |reason: &str| ClientError::InvalidProxy {
        address: address.to_owned(),
        reason: reason.to_owned(),
    };
    let with_scheme = if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    };
    let uri: Uri = with_scheme
        .parse()
        .map_err(|error: http::uri::InvalidUri| invalid(&error.to_string()))?;
    if uri.scheme_str() != Some("http") {
        return Err(invalid("only http:// proxies are supported"));
    }
    let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
    if authority.port_u16().is_none() {
        return Err(invalid("no port"));
    }
    Uri::builder()
        .scheme("http")
        .authority(authority.as_str())
        .path_and_query("/")
        .build()
        .map(Some)
        .map_err(|error| invalid(&error.to_string()))
}

/// The proxy to use when none is given on the command line: `HTTP_PROXY`, then
/// `http_proxy`, as curl and most HTTP clients read them.
pub fn proxy_from_environment() -> Option<String> {
    ["HTTP_PROXY", "http_proxy"]
        .iter()
        .find_map(|name| std::env::var(name).ok())
        .filter(|value| !value.trim().is_empty())
}

/// Connects to the proxy when there is one (and says so, so that requests go out in
/// absolute form), else to the request's own destination.
#[derive(Clone)]
struct ProxyConnector {
    http: HttpConnector,
    proxy: Option<Uri>,
}

type ConnectFuture = Pin<
    Box<
        dyn Future<Output = Result<ProxiedStream, Box<dyn std::error::Error + Send + Sync>>> + Send,
    >,
>;

impl tower::Service<Uri> for ProxyConnector {
    type Response = ProxiedStream;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        let proxied = self.proxy.is_some();
        let connecting = self.http.call(self.proxy.clone().unwrap_or(destination));
        Box::pin(async move {
            let stream = connecting.await?;
            Ok(ProxiedStream { stream, proxied })
        })
    }
}

/// A TCP stream that remembers whether it leads to a proxy.
struct ProxiedStream {
    stream: TokioIo<TcpStream>,
    proxied: bool,
}

impl Connection for ProxiedStream {
    fn connected(&self) -> Connected {
        self.stream.connected().proxy(self.proxied)
    }
}

impl hyper::rt::Read for ProxiedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for ProxiedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_addresses_as_http_proxy_holds_them() {
        let expected: Uri = "http://127.0.10.1:15001/".parse().unwrap();
        assert_eq!(
            parse_proxy("http://127.0.10.1:15001").unwrap(),
            Some(expected.clone())
        );
        assert_eq!(parse_proxy("127.0.10.1:15001").unwrap(), Some(expected));
        assert_eq!(parse_proxy("  ").unwrap(), None);
        assert!(parse_proxy("https://127.0.10.1:15001").is_err());
        assert!(parse_proxy("127.0.10.1").is_err());
    }

    /// A request through a proxy goes to the proxy's address, in absolute form, with the
    /// destination as `Host`.
    #[tokio::test]
    async fn proxied_requests_use_absolute_form() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_address = proxy.local_addr().unwrap();
        let seen = tokio::spawn(async move {
            let (mut stream, _) = proxy.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buffer = [0u8; 1024];
            while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                let read = stream.read(&mut buffer).await.unwrap();
                head.extend_from_slice(&buffer[..read]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            String::from_utf8(head).unwrap()
        });
        let client = HttpClient::new(
            parse_proxy(&proxy_address.to_string()).unwrap(),
            Duration::from_secs(5),
        );
        let url: Uri = "http://reviews:9080/reviews".parse().unwrap();
        let response = client.get(&url, HeaderMap::new()).await.unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(&response.body[..], b"ok");
        let head = seen.await.unwrap().to_ascii_lowercase();
        assert!(
            head.starts_with("get http://reviews:9080/reviews http/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nhost: reviews:9080\r\n"), "{head}");
    }
}
