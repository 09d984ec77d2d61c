//! DestinationRules → [`DestinationPolicy`]: each level's load balancer, connection pool
//! and outlier detection, read the way istiod reads them (a zero count is unset).

use std::collections::BTreeMap;

use bosun_api::Config;
use bosun_api::networking::{
    ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, ConsistentHashLb, DestinationRule,
    H2UpgradePolicy, LoadBalancerSettings, LoadBalancerSimple,
    OutlierDetection as ApiOutlierDetection, PortTrafficPolicy, TrafficPolicy as ApiTrafficPolicy,
};

use super::source;
use crate::host::Hostname;
use crate::policy::{
    CertificateFiles, ClientTls, ConnectionPool, ConsistentHash, DestinationPolicy, HashCookie,
    HashKey, HashTable, Http2Keepalive, LayeredPolicy, LoadBalancer, LoadBalancing, OriginatedTls,
    OutlierDetection, ServerVerification, Subset, TcpKeepalive, TrafficPolicy, Warmup,
};

pub(super) fn policy_of(rule: &Config<DestinationRule>) -> DestinationPolicy {
    DestinationPolicy {
        source: source(rule),
        host: Hostname::resolve(&rule.spec.host, &rule.meta.namespace),
        policy: layered(rule.spec.traffic_policy.as_deref()),
        subsets: rule
            .spec
            .subsets
            .iter()
            .map(|subset| Subset {
                name: subset.name.clone(),
                labels: subset.labels.clone(),
                policy: layered(subset.traffic_policy.as_deref()),
            })
            .collect(),
    }
}

fn layered(policy: Option<&ApiTrafficPolicy>) -> LayeredPolicy {
    let Some(policy) = policy else {
        return LayeredPolicy::default();
    };
    LayeredPolicy {
        policy: TrafficPolicy {
            load_balancer: load_balancer(policy.load_balancer.as_ref()),
            connection_pool: policy.connection_pool.as_ref().map(connection_pool),
            outlier_detection: policy.outlier_detection.as_ref().map(outlier_detection),
            tls: policy.tls.as_ref().and_then(client_tls),
        },
        ports: policy
            .port_level_settings
            .iter()
            .filter_map(port_policy)
            .collect::<BTreeMap<_, _>>(),
    }
}

/// A port's settings; validation has refused ports without a number in range.
fn port_policy(settings: &PortTrafficPolicy) -> Option<(u16, TrafficPolicy)> {
    let port = u16::try_from(settings.port?.number?).ok()?;
    Some((
        port,
        TrafficPolicy {
            load_balancer: load_balancer(settings.load_balancer.as_ref()),
            connection_pool: settings.connection_pool.as_ref().map(connection_pool),
            outlier_detection: settings.outlier_detection.as_ref().map(outlier_detection),
            tls: settings.tls.as_ref().and_then(client_tls),
        },
    ))
}

/// A level's `tls`. SIMPLE and MUTUAL with a `credentialName` are reported as not
/// supported yet (Istio applies them to sidecars only under a DestinationRule with a
/// workload selector) and left to auto mTLS meanwhile.
fn client_tls(settings: &ClientTlsSettings) -> Option<ClientTls> {
    let sni = settings.sni.clone().filter(|sni| !sni.is_empty());
    let named = |value: &Option<String>| value.clone().filter(|value| !value.is_empty());
    match settings.mode? {
        ClientTlsMode::Disable => Some(ClientTls::Disable),
        ClientTlsMode::IstioMutual => Some(ClientTls::IstioMutual {
            sni,
            subject_alt_names: settings.subject_alt_names.clone(),
        }),
        ClientTlsMode::Simple | ClientTlsMode::Mutual
            if named(&settings.credential_name).is_some() =>
        {
            None
        }
        mode @ (ClientTlsMode::Simple | ClientTlsMode::Mutual) => {
            // Validation has refused MUTUAL without both files.
            let client_certificate = match (
                mode,
                named(&settings.client_certificate),
                named(&settings.private_key),
            ) {
                (ClientTlsMode::Mutual, Some(certificate), Some(private_key)) => {
                    Some(CertificateFiles {
                        certificate,
                        private_key,
                    })
                }
                _ => None,
            };
            let verification = if settings.insecure_skip_verify == Some(true) {
                ServerVerification::Skip
            } else {
                named(&settings.ca_certificates)
                    .map_or(ServerVerification::SystemRoots, ServerVerification::CaFile)
            };
            Some(ClientTls::Originate(OriginatedTls {
                client_certificate,
                verification,
                sni,
                subject_alt_names: settings.subject_alt_names.clone(),
            }))
        }
    }
}

fn load_balancer(settings: Option<&LoadBalancerSettings>) -> Option<LoadBalancing> {
    let settings = settings?;
    let algorithm = match (&settings.consistent_hash, settings.simple) {
        (Some(hash), _) => LoadBalancer::ConsistentHash(consistent_hash(hash)),
        (None, Some(LoadBalancerSimple::RoundRobin)) => LoadBalancer::RoundRobin,
        (None, Some(LoadBalancerSimple::Random)) => LoadBalancer::Random,
        (None, Some(LoadBalancerSimple::LeastConn | LoadBalancerSimple::LeastRequest)) => {
            LoadBalancer::LeastRequest
        }
        // Unset means the mesh's default; PASSTHROUGH is reported as not supported by the
        // API layer, and behaves as the default meanwhile.
        (None, Some(LoadBalancerSimple::Unspecified | LoadBalancerSimple::Passthrough) | None) => {
            LoadBalancer::default()
        }
    };
    let warmup = match (&settings.warmup, settings.warmup_duration_secs) {
        (Some(warmup), _) => Some(Warmup {
            duration: warmup.duration.as_std(),
            minimum_percent: warmup
                .minimum_percent
                .unwrap_or(DEFAULT_WARMUP_MINIMUM_PERCENT),
            aggression: warmup.aggression.unwrap_or(DEFAULT_WARMUP_AGGRESSION),
        }),
        // The deprecated `warmupDurationSecs`: Envoy's defaults for the rest.
        (None, Some(duration)) => Some(Warmup {
            duration: duration.as_std(),
            minimum_percent: DEFAULT_WARMUP_MINIMUM_PERCENT,
            aggression: DEFAULT_WARMUP_AGGRESSION,
        }),
        (None, None) => None,
    };
    Some(LoadBalancing { algorithm, warmup })
}

/// istiod's warmup defaults: a new endpoint starts at 10 % of its weight, growing linearly.
const DEFAULT_WARMUP_MINIMUM_PERCENT: f64 = 10.0;
const DEFAULT_WARMUP_AGGRESSION: f64 = 1.0;

/// The hash key and table of `consistentHash`; with neither `ringHash` nor `maglev`,
/// istiod's ring hash of the deprecated `minimumRingSize` or 1,024 entries.
fn consistent_hash(settings: &ConsistentHashLb) -> ConsistentHash {
    let key = if let Some(name) = &settings.http_header_name {
        Some(HashKey::Header(name.to_ascii_lowercase()))
    } else if let Some(cookie) = &settings.http_cookie {
        Some(HashKey::Cookie(HashCookie {
            name: cookie.name.clone(),
            path: cookie.path.clone().filter(|path| !path.is_empty()),
            ttl: cookie.ttl.map(|ttl| ttl.as_std()),
            attributes: cookie
                .attributes
                .iter()
                .map(|attribute| (attribute.name.clone(), attribute.value.clone()))
                .collect(),
        }))
    } else if settings.use_source_ip == Some(true) {
        Some(HashKey::SourceIp)
    } else {
        settings
            .http_query_parameter_name
            .clone()
            .map(HashKey::QueryParameter)
    };
    let nonzero = |value: Option<u64>| value.filter(|v| *v > 0);
    let table = match (&settings.maglev, &settings.ring_hash) {
        (Some(maglev), _) => HashTable::Maglev {
            table_size: nonzero(maglev.table_size),
        },
        (None, Some(ring)) => HashTable::RingHash {
            minimum_ring_size: nonzero(ring.minimum_ring_size),
        },
        (None, None) => HashTable::RingHash {
            minimum_ring_size: Some(nonzero(settings.minimum_ring_size).unwrap_or(1024)),
        },
    };
    ConsistentHash { key, table }
}

/// istiod takes a count only when it is above zero; validation refuses negative ones.
fn positive(value: Option<i32>) -> Option<u32> {
    value.filter(|v| *v > 0).map(i32::unsigned_abs)
}

fn connection_pool(settings: &ConnectionPoolSettings) -> ConnectionPool {
    let tcp = settings.tcp.as_ref();
    let http = settings.http.as_ref();
    ConnectionPool {
        max_connections: positive(tcp.and_then(|tcp| tcp.max_connections)),
        connect_timeout: tcp.and_then(|tcp| tcp.connect_timeout).map(|d| d.as_std()),
        tcp_keepalive: tcp
            .and_then(|tcp| tcp.tcp_keepalive.as_ref())
            .map(|keepalive| TcpKeepalive {
                probes: keepalive.probes,
                time: keepalive.time.map(|d| d.as_std()),
                interval: keepalive.interval.map(|d| d.as_std()),
            }),
        max_connection_duration: tcp
            .and_then(|tcp| tcp.max_connection_duration)
            .map(|d| d.as_std()),
        http1_max_pending_requests: positive(http.and_then(|http| http.http1_max_pending_requests)),
        http2_max_requests: positive(http.and_then(|http| http.http2_max_requests)),
        max_requests_per_connection: positive(
            http.and_then(|http| http.max_requests_per_connection),
        ),
        max_retries: positive(http.and_then(|http| http.max_retries)),
        idle_timeout: http
            .and_then(|http| http.idle_timeout)
            .or_else(|| tcp.and_then(|tcp| tcp.idle_timeout))
            .map(|d| d.as_std()),
        h2_upgrade: http
            .and_then(|http| http.h2_upgrade_policy)
            .and_then(|policy| match policy {
                H2UpgradePolicy::Default => None,
                H2UpgradePolicy::Upgrade => Some(true),
                H2UpgradePolicy::DoNotUpgrade => Some(false),
            }),
        http2_keepalive: http
            .and_then(|http| http.http2_keep_alive.as_ref())
            .map(|keepalive| Http2Keepalive {
                interval: keepalive.interval.map(|d| d.as_std()),
                timeout: keepalive.timeout.map(|d| d.as_std()),
            }),
    }
}

fn outlier_detection(settings: &ApiOutlierDetection) -> OutlierDetection {
    OutlierDetection {
        consecutive_5xx: settings.consecutive_5xx_errors,
        consecutive_gateway_errors: settings.consecutive_gateway_errors,
        split_local_origin_errors: settings.split_external_local_origin_errors == Some(true),
        consecutive_local_origin_failures: settings
            .consecutive_local_origin_failures
            .filter(|count| *count > 0),
        interval: settings.interval.map(|d| d.as_std()),
        base_ejection_time: settings.base_ejection_time.map(|d| d.as_std()),
        max_ejection_percent: positive(settings.max_ejection_percent),
        min_health_percent: positive(settings.min_health_percent).unwrap_or(0),
    }
}
