use std::net::SocketAddr;
use std::time::Duration;

use super::super::serve::{ServeConfig, serve_with};
use super::*;

async fn start_sample(
    service: &str,
    version: &str,
    calls: Vec<String>,
    latency: Duration,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let config = ServeConfig {
        service: service.into(),
        version: version.into(),
        workload: format!("{service}-{version}"),
        calls: calls.iter().map(|url| url.parse().unwrap()).collect(),
        latency,
        error_rate: 0.0,
        echo_headers: false,
        proxy: None,
        call_timeout: Duration::from_secs(5),
        call_attempts: 1,
    };
    tokio::spawn(serve_with(listener, config, Default::default(), None));
    address
}

fn load_config(target: SocketAddr, rps: f64, concurrency: u32) -> LoadConfig {
    LoadConfig {
        target: format!("http://{target}/productpage").parse().unwrap(),
        rps,
        concurrency,
        headers: HeaderMap::new(),
        header_ratio: 1.0,
        proxy: None,
        timeout: Duration::from_secs(5),
    }
}

fn new_stats(config: &LoadConfig) -> SharedStats {
    Arc::new(Mutex::new(RollingStats::new(
        config.target.to_string(),
        std::time::Instant::now(),
    )))
}

async fn fetch_stats(address: SocketAddr) -> StatsSnapshot {
    let client = HttpClient::new(None, Duration::from_secs(5));
    let url: Uri = format!("http://{address}/stats").parse().unwrap();
    let response = client.get(&url, HeaderMap::new()).await.unwrap();
    assert_eq!(response.status, StatusCode::OK);
    serde_json::from_slice(&response.body).unwrap()
}

#[tokio::test]
async fn stats_show_every_service_and_version_in_the_answers() {
    let ratings = start_sample("ratings", "v1", vec![], Duration::ZERO).await;
    let reviews = start_sample(
        "reviews",
        "v2",
        vec![format!("http://{ratings}/ratings")],
        Duration::ZERO,
    )
    .await;
    let productpage = start_sample(
        "productpage",
        "v1",
        vec![format!("http://{reviews}/reviews")],
        Duration::ZERO,
    )
    .await;
    let config = load_config(productpage, 50.0, 8);
    let stats = new_stats(&config);
    let stats_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stats_address = stats_listener.local_addr().unwrap();
    tokio::spawn(serve_stats(stats_listener, stats.clone()));

    generate(
        config,
        stats.clone(),
        Some(Instant::now() + Duration::from_secs(1)),
    )
    .await;

    let snapshot = fetch_stats(stats_address).await;
    assert!(snapshot.target.ends_with("/productpage"));
    // 50 rps for one second; the first tick fires at once.
    assert!((45..=52).contains(&snapshot.total.requests), "{snapshot:?}");
    assert_eq!(snapshot.total.success_rate, Some(1.0));
    assert_eq!(snapshot.skipped, 0);
    let services: Vec<_> = snapshot
        .services
        .iter()
        .map(|hop| {
            (
                hop.service.as_str(),
                hop.version.as_str(),
                hop.traffic.requests,
            )
        })
        .collect();
    let requests = snapshot.total.requests;
    assert_eq!(
        services,
        vec![
            ("productpage", "v1", requests),
            ("ratings", "v1", requests),
            ("reviews", "v2", requests),
        ]
    );
    for hop in &snapshot.services {
        assert_eq!(hop.traffic.success_rate, Some(1.0));
        assert!(hop.traffic.p50_ms.is_some_and(|ms| ms > 0.0));
        assert!(hop.traffic.requests_per_second > 10.0, "{hop:?}");
    }
}

#[tokio::test]
async fn a_busy_target_makes_the_generator_skip_not_queue() {
    let slow = start_sample("productpage", "v1", vec![], Duration::from_millis(400)).await;
    let config = load_config(slow, 50.0, 1);
    let stats = new_stats(&config);
    generate(
        config,
        stats.clone(),
        Some(Instant::now() + Duration::from_millis(900)),
    )
    .await;
    let snapshot = lock(&stats).snapshot(std::time::Instant::now());
    // One request at a time, 400 ms each: at most three fit in 900 ms (plus the wait for
    // the last one to finish).
    assert!((2..=3).contains(&snapshot.total.requests), "{snapshot:?}");
    assert!(snapshot.skipped > 30, "{snapshot:?}");
}

#[tokio::test]
async fn an_unreachable_target_counts_as_failures_under_its_host() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let config = load_config(address, 20.0, 4);
    let stats = new_stats(&config);
    generate(
        config,
        stats.clone(),
        Some(Instant::now() + Duration::from_millis(200)),
    )
    .await;
    let snapshot = lock(&stats).snapshot(std::time::Instant::now());
    assert!(snapshot.total.requests >= 1);
    assert_eq!(snapshot.total.success_rate, Some(0.0));
    assert_eq!(snapshot.services[0].service, "127.0.0.1");
    assert_eq!(
        snapshot.services[0].version,
        crate::sample::stats::UNKNOWN_VERSION
    );
}

#[test]
fn headers_parse_as_name_colon_value() {
    let (name, value) = parse_header("end-user: jason").unwrap();
    assert_eq!(name, "end-user");
    assert_eq!(value, "jason");
    assert!(parse_header("no-colon").is_err());
    assert!(parse_rate("0").is_err());
    assert!(parse_rate("2.5").is_ok());
}
