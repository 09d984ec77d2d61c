//! DestinationRule validation.

use std::collections::HashSet;

use super::findings::Findings;
use super::rules::{
    is_ip, validate_duration, validate_export_to, validate_fqdn, validate_labels, validate_percent,
    validate_port, validate_selector_labels, validate_subset_name, validate_wildcard_domain,
};
use crate::meta::Config;
use crate::networking::{
    ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, DestinationRule, H2UpgradePolicy,
    LoadBalancerSettings, OutlierDetection, TrafficPolicy,
};

/// Envoy's largest Maglev table.
const MAX_MAGLEV_TABLE_SIZE: u64 = 5_000_011;

pub(super) fn validate(config: &Config<DestinationRule>, findings: &mut Findings) {
    let spec = &config.spec;
    findings.check("spec.host", validate_wildcard_domain(&spec.host));
    if let Some(policy) = &spec.traffic_policy {
        validate_traffic_policy(findings, "spec.trafficPolicy", policy);
    }

    let mut names = HashSet::new();
    for (index, subset) in spec.subsets.iter().enumerate() {
        let field = format!("spec.subsets[{index}]");
        if !names.insert(subset.name.as_str()) {
            findings.error(
                format!("{field}.name"),
                format!("duplicate subset names: {}", subset.name),
            );
        }
        findings.check(format!("{field}.name"), validate_subset_name(&subset.name));
        validate_labels(findings, &format!("{field}.labels"), &subset.labels);
        if let Some(policy) = &subset.traffic_policy {
            validate_traffic_policy(findings, &format!("{field}.trafficPolicy"), policy);
        }
    }

    if let Some(selector) = &spec.workload_selector {
        validate_selector_labels(
            findings,
            "spec.workloadSelector.matchLabels",
            &selector.match_labels,
        );
    }
    validate_export_to(
        findings,
        &spec.export_to,
        false,
        spec.workload_selector.is_some(),
    );
}

fn validate_traffic_policy(findings: &mut Findings, field: &str, policy: &TrafficPolicy) {
    if policy.load_balancer.is_none()
        && policy.connection_pool.is_none()
        && policy.outlier_detection.is_none()
        && policy.tls.is_none()
        && policy.port_level_settings.is_empty()
        && policy.tunnel.is_none()
        && policy.proxy_protocol.is_none()
        && policy.retry_budget.is_none()
    {
        findings.error(field, "traffic policy must have at least one field");
        return;
    }
    if policy.tunnel.is_some() && policy.proxy_protocol.is_some() {
        findings.error(field, "tunnel and proxyProtocol must not be set together");
        return;
    }
    if let Some(outlier) = &policy.outlier_detection {
        validate_outlier_detection(findings, &format!("{field}.outlierDetection"), outlier);
    }
    if let Some(pool) = &policy.connection_pool {
        validate_connection_pool(findings, &format!("{field}.connectionPool"), pool);
    }
    if let Some(load_balancer) = &policy.load_balancer {
        validate_load_balancer(findings, &format!("{field}.loadBalancer"), load_balancer);
    }
    if let Some(tls) = &policy.tls {
        validate_client_tls(findings, &format!("{field}.tls"), tls);
    }
    for (index, port_policy) in policy.port_level_settings.iter().enumerate() {
        let field = format!("{field}.portLevelSettings[{index}]");
        match port_policy.port.and_then(|port| port.number) {
            None => findings.error(&field, "portTrafficPolicy must have valid port"),
            Some(number) => findings.check(format!("{field}.port.number"), validate_port(number)),
        }
        if port_policy.load_balancer.is_none()
            && port_policy.connection_pool.is_none()
            && port_policy.outlier_detection.is_none()
            && port_policy.tls.is_none()
        {
            findings.error(&field, "port traffic policy must have at least one field");
            continue;
        }
        if let Some(outlier) = &port_policy.outlier_detection {
            validate_outlier_detection(findings, &format!("{field}.outlierDetection"), outlier);
        }
        if let Some(pool) = &port_policy.connection_pool {
            validate_connection_pool(findings, &format!("{field}.connectionPool"), pool);
        }
        if let Some(load_balancer) = &port_policy.load_balancer {
            validate_load_balancer(findings, &format!("{field}.loadBalancer"), load_balancer);
        }
        if let Some(tls) = &port_policy.tls {
            validate_client_tls(findings, &format!("{field}.tls"), tls);
        }
    }
    if let Some(tunnel) = &policy.tunnel {
        let field = format!("{field}.tunnel");
        if let Some(protocol) = tunnel.protocol.as_deref()
            && !matches!(protocol, "" | "CONNECT" | "POST")
        {
            findings.error(
                format!("{field}.protocol"),
                "tunnel protocol must be \"CONNECT\" or \"POST\"",
            );
        }
        if validate_fqdn(&tunnel.target_host).is_err() && !is_ip(&tunnel.target_host) {
            findings.error(
                format!("{field}.targetHost"),
                format!(
                    "tunnel target host must be valid FQDN or IP address: {:?}",
                    tunnel.target_host
                ),
            );
        }
        findings.check(
            format!("{field}.targetPort"),
            validate_port(tunnel.target_port),
        );
    }
    if let Some(budget) = &policy.retry_budget
        && let Some(percent) = budget.percent
        && !(0.0..=100.0).contains(&percent)
    {
        findings.error(
            format!("{field}.retryBudget.percent"),
            format!("Invalid value: {percent} (must be between 0 and 100)"),
        );
    }
}

fn validate_outlier_detection(findings: &mut Findings, field: &str, outlier: &OutlierDetection) {
    if let Some(duration) = outlier.base_ejection_time {
        findings.check(
            format!("{field}.baseEjectionTime"),
            validate_duration(duration),
        );
    }
    if let Some(interval) = outlier.interval {
        findings.check(format!("{field}.interval"), validate_duration(interval));
    }
    if outlier.consecutive_errors.is_some_and(|errors| errors != 0) {
        findings.warning(
            format!("{field}.consecutiveErrors"),
            "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead",
        );
    }
    if outlier.consecutive_local_origin_failures.unwrap_or(0) > 0
        && !outlier.split_external_local_origin_errors.unwrap_or(false)
    {
        findings.error(
            format!("{field}.consecutiveLocalOriginFailures"),
            "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false",
        );
    }
    if let Some(percent) = outlier.max_ejection_percent {
        findings.check(
            format!("{field}.maxEjectionPercent"),
            validate_percent(percent),
        );
    }
    if let Some(percent) = outlier.min_health_percent {
        findings.check(
            format!("{field}.minHealthPercent"),
            validate_percent(percent),
        );
    }
    for code in &outlier.outlier_detection_http_error_codes {
        if !(100..=599).contains(code) {
            findings.error(
                format!("{field}.outlierDetectionHttpErrorCodes"),
                format!("Invalid value: {code} (must be an HTTP status code 100-599)"),
            );
        }
    }
}

fn validate_connection_pool(findings: &mut Findings, field: &str, pool: &ConnectionPoolSettings) {
    if pool.http.is_none() && pool.tcp.is_none() {
        findings.error(field, "connection pool must have at least one field");
        return;
    }
    if let Some(http) = &pool.http {
        let field = format!("{field}.http");
        let non_negative = [
            (
                http.http1_max_pending_requests,
                "http1 max pending requests",
            ),
            (http.http2_max_requests, "http2 max requests"),
            (
                http.max_requests_per_connection,
                "max requests per connection",
            ),
            (http.max_retries, "max retries"),
            (http.max_concurrent_streams, "max concurrent streams"),
        ];
        for (value, what) in non_negative {
            if value.is_some_and(|v| v < 0) {
                findings.error(&field, format!("{what} must be non-negative"));
            }
        }
        if let Some(timeout) = http.idle_timeout {
            findings.check(format!("{field}.idleTimeout"), validate_duration(timeout));
        }
        if http.h2_upgrade_policy == Some(H2UpgradePolicy::Upgrade)
            && http.use_client_protocol == Some(true)
        {
            findings.error(
                &field,
                "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
            );
        }
        if let Some(keep_alive) = &http.http2_keep_alive {
            for (value, name) in [
                (keep_alive.interval, "interval"),
                (keep_alive.timeout, "timeout"),
            ] {
                if let Some(value) = value {
                    findings.check(
                        format!("{field}.http2KeepAlive.{name}"),
                        validate_duration(value),
                    );
                }
            }
        }
    }
    if let Some(tcp) = &pool.tcp {
        let field = format!("{field}.tcp");
        if tcp.max_connections.is_some_and(|v| v < 0) {
            findings.error(&field, "max connections must be non-negative");
        }
        let durations = [
            (tcp.connect_timeout, "connectTimeout"),
            (tcp.max_connection_duration, "maxConnectionDuration"),
            (tcp.idle_timeout, "idleTimeout"),
            (
                tcp.tcp_keepalive.as_ref().and_then(|k| k.time),
                "tcpKeepalive.time",
            ),
            (
                tcp.tcp_keepalive.as_ref().and_then(|k| k.interval),
                "tcpKeepalive.interval",
            ),
        ];
        for (value, name) in durations {
            if let Some(value) = value {
                findings.check(format!("{field}.{name}"), validate_duration(value));
            }
        }
    }
}

fn validate_load_balancer(findings: &mut Findings, field: &str, settings: &LoadBalancerSettings) {
    if settings.simple.is_some() && settings.consistent_hash.is_some() {
        findings.error(field, "only one of simple or consistentHash can be set");
    }
    if let Some(hash) = &settings.consistent_hash {
        let field = format!("{field}.consistentHash");
        if let Some(cookie) = &hash.http_cookie
            && cookie.name.is_empty()
        {
            findings.error(
                format!("{field}.httpCookie.name"),
                "name required for HttpCookie",
            );
        }
        let hash_keys = [
            hash.http_header_name.is_some(),
            hash.http_cookie.is_some(),
            hash.use_source_ip.is_some(),
            hash.http_query_parameter_name.is_some(),
        ];
        if hash_keys.iter().filter(|set| **set).count() > 1 {
            findings.error(
                &field,
                "only one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName can be set",
            );
        }
        if hash.minimum_ring_size.is_some_and(|size| size != 0) {
            findings.warning(
                format!("{field}.minimumRingSize"),
                "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash configuration instead",
            );
            if hash.ring_hash.is_some() || hash.maglev.is_some() {
                findings.error(
                    &field,
                    "only one of MinimumRingSize or Maglev/Ringhash can be specified",
                );
            }
        }
        if hash.ring_hash.is_some() && hash.maglev.is_some() {
            findings.error(&field, "only one of ringHash or maglev can be set");
        }
        if let Some(maglev) = &hash.maglev {
            let size = maglev.table_size.unwrap_or(0);
            let field = format!("{field}.maglev.tableSize");
            if size == 0 {
                findings.error(&field, "tableSize must be set for maglev");
            } else if size >= MAX_MAGLEV_TABLE_SIZE {
                findings.error(
                    &field,
                    format!("tableSize must be less than {MAX_MAGLEV_TABLE_SIZE} for maglev"),
                );
            } else if !is_prime(size) {
                findings.error(&field, "tableSize must be a prime number for maglev");
            }
        }
    }
    if let Some(locality) = &settings.locality_lb_setting {
        let field = format!("{field}.localityLbSetting");
        if !locality.distribute.is_empty() && !locality.failover.is_empty() {
            findings.error(
                &field,
                "can not simultaneously specify 'distribute' and 'failover'",
            );
        }
        if !locality.failover.is_empty() && !locality.failover_priority.is_empty() {
            for failover in &locality.failover {
                if failover.to.as_deref().is_some_and(|to| !to.is_empty()) {
                    findings.error(
                        &field,
                        "can not simultaneously set 'failover.to' and 'failoverPriority'",
                    );
                    break;
                }
            }
        }
        for failover in &locality.failover {
            if failover.from.is_some() && failover.from == failover.to {
                findings.error(
                    &field,
                    "locality lb failover settings must specify different regions",
                );
            }
            if failover
                .from
                .as_deref()
                .is_some_and(|from| from.contains('/'))
                || failover.to.as_deref().is_some_and(|to| to.contains('/'))
            {
                findings.error(&field, "locality lb failover only specify region");
            }
        }
        for distribute in &locality.distribute {
            let total: u64 = distribute.to.values().map(|w| u64::from(*w)).sum();
            if total != 100 {
                findings.error(&field, "total weight across all localities should be 100");
            }
        }
    }
    if let Some(warmup) = settings.warmup_duration_secs {
        findings.check(
            format!("{field}.warmupDurationSecs"),
            validate_duration(warmup),
        );
    }
    if let Some(warmup) = &settings.warmup {
        let field = format!("{field}.warmup");
        findings.check(
            format!("{field}.duration"),
            validate_duration(warmup.duration),
        );
        if let Some(percent) = warmup.minimum_percent
            && !(0.0..=100.0).contains(&percent)
        {
            findings.error(
                format!("{field}.minimumPercent"),
                format!("Invalid value: {percent} (must be between 0 and 100)"),
            );
        }
        if let Some(aggression) = warmup.aggression
            && aggression < 0.0
        {
            findings.error(
                format!("{field}.aggression"),
                format!("Invalid value: {aggression} (must be at least 0)"),
            );
        }
    }
}

fn validate_client_tls(findings: &mut Findings, field: &str, tls: &ClientTlsSettings) {
    let set = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.is_empty());
    let mode = tls.mode.unwrap_or(ClientTlsMode::Disable);
    match mode {
        ClientTlsMode::Disable | ClientTlsMode::IstioMutual => {
            if set(&tls.client_certificate)
                || set(&tls.private_key)
                || set(&tls.ca_certificates)
                || set(&tls.credential_name)
                || set(&tls.ca_crl)
            {
                let mode = if mode == ClientTlsMode::Disable {
                    "DISABLE"
                } else {
                    "ISTIO_MUTUAL"
                };
                findings.error(
                    field,
                    format!("cannot specify client certificates or CA certificate or CA CRL or credentialName if tls mode is {mode}"),
                );
            }
        }
        ClientTlsMode::Mutual if !set(&tls.credential_name) => {
            if !set(&tls.client_certificate) {
                findings.error(field, "client certificate required for mutual tls");
            }
            if !set(&tls.private_key) {
                findings.error(field, "private key required for mutual tls");
            }
        }
        ClientTlsMode::Simple | ClientTlsMode::Mutual => {}
    }
    if set(&tls.credential_name) && set(&tls.ca_crl) {
        findings.error(
            field,
            "CRL is not supported with credentialName. CRL has to be specified in the credential",
        );
    }
}

/// Envoy's primality test for Maglev table sizes.
fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n < 4 {
        return true;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    let mut factor = 3;
    while factor * factor <= n {
        if n.is_multiple_of(factor) {
            return false;
        }
        factor += 2;
    }
    true
}
