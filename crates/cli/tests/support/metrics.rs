//! Reading a sidecar's Istio metrics.

use std::net::SocketAddr;
use std::time::Duration;

use super::get;

/// The value of the first `metric` series carrying every one of `labels`.
pub fn series_value(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(&format!("{metric}{{")))
        .find(|line| {
            labels
                .iter()
                .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
        })
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

/// Scrapes `admin` until a series with `labels` reaches `count` (a request is recorded
/// when its response ends, a moment after the client has read it).
pub async fn scrape_until(admin: SocketAddr, labels: &[(&str, &str)], count: f64) -> String {
    let mut text = String::new();
    for _ in 0..40 {
        text = get(admin, "/stats/prometheus")
            .await
            .map(|reply| reply.body)
            .unwrap_or_default();
        if series_value(&text, "istio_requests_total", labels) == Some(count) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no istio_requests_total {labels:?} = {count} at {admin}:\n{text}");
}
