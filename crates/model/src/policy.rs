//! Traffic policy for a destination, from DestinationRules: the load balancer, the
//! connection pool's limits and the outlier detection of a host, a port or a subset.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::host::Hostname;

/// `loadBalancer`: how a request picks one of the destination's endpoints.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LoadBalancing {
    pub algorithm: LoadBalancer,
    /// New endpoints take a growing share of requests over this time (`warmup`).
    pub warmup: Option<Warmup>,
}

impl LoadBalancing {
    pub fn simple(algorithm: LoadBalancer) -> Self {
        LoadBalancing {
            algorithm,
            warmup: None,
        }
    }
}

/// Istio's load balancers. The default is LEAST_REQUEST, as in Istio since 1.14.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub enum LoadBalancer {
    RoundRobin,
    #[default]
    LeastRequest,
    Random,
    /// `consistentHash`: requests with the same key go to the same endpoint.
    ConsistentHash(ConsistentHash),
}

/// Session affinity: what a request is hashed on, and the table hashes are looked up in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConsistentHash {
    /// `None`: the rule names no key, and every request picks at random.
    pub key: Option<HashKey>,
    pub table: HashTable,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum HashKey {
    /// `httpHeaderName`.
    Header(String),
    /// `httpCookie`: with a `ttl`, the proxy sets the cookie when the request has none.
    Cookie(HashCookie),
    /// `useSourceIp`: the caller's address.
    SourceIp,
    /// `httpQueryParameterName`.
    QueryParameter(String),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HashCookie {
    pub name: String,
    pub path: Option<String>,
    pub ttl: Option<Duration>,
    /// Extra attributes of the cookie the proxy sets (`name`, optional `value`).
    pub attributes: Vec<(String, Option<String>)>,
}

/// The consistent-hashing table: Envoy's ring hash (Istio's default) or maglev.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum HashTable {
    RingHash { minimum_ring_size: Option<u64> },
    Maglev { table_size: Option<u64> },
}

/// `warmup`: Envoy's slow start. A new endpoint's weight grows from `minimum_percent`
/// to its full weight over `duration`, faster with a higher `aggression`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Warmup {
    pub duration: Duration,
    pub minimum_percent: f64,
    pub aggression: f64,
}

/// The policy parts a DestinationRule sets at one level (the rule, a port, a subset).
/// `None` leaves the part to the level below, or to Istio's default.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TrafficPolicy {
    pub load_balancer: Option<LoadBalancing>,
    pub connection_pool: Option<ConnectionPool>,
    pub outlier_detection: Option<OutlierDetection>,
    /// `tls`: how the client side speaks to the destination; `None`: auto mTLS decides.
    pub tls: Option<ClientTls>,
}

/// `tls` of a DestinationRule, in the modes Bosun honours.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum ClientTls {
    /// Plaintext, even to an endpoint whose sidecar takes mutual TLS.
    Disable,
    /// Istio mutual TLS to every endpoint, with or without a sidecar.
    IstioMutual {
        sni: Option<String>,
        /// The identities the server may present (SPIFFE URIs); empty: the service's.
        subject_alt_names: Vec<String>,
    },
    /// TLS of the destination's own (SIMPLE, or MUTUAL with a client certificate),
    /// originated by the sidecar: the app speaks plaintext, the server TLS.
    Originate(OriginatedTls),
}

/// `tls` in SIMPLE or MUTUAL mode, with its certificates in files the proxy reads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OriginatedTls {
    /// MUTUAL: the certificate chain and key the proxy presents.
    pub client_certificate: Option<CertificateFiles>,
    pub verification: ServerVerification,
    /// The name sent as SNI; `None`: the request's host (and, with no
    /// `subject_alt_names`, the server's certificate must be valid for it).
    pub sni: Option<String>,
    /// Names one of which the server's certificate must carry (DNS names, SPIFFE URIs
    /// or IP addresses, exactly).
    pub subject_alt_names: Vec<String>,
}

/// A PEM certificate chain and its private key, by path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertificateFiles {
    pub certificate: String,
    pub private_key: String,
}

/// What the server's certificate chain must end in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum ServerVerification {
    /// `caCertificates`: the roots in this PEM file.
    CaFile(String),
    /// No `caCertificates`: the system's roots (Istio's default).
    SystemRoots,
    /// `insecureSkipVerify: true`: any certificate.
    Skip,
}

/// A level's policy with the port-level settings written beside it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LayeredPolicy {
    pub policy: TrafficPolicy,
    /// `portLevelSettings`, by port number.
    pub ports: BTreeMap<u16, TrafficPolicy>,
}

impl LayeredPolicy {
    /// This level's policy for `port`: a port's settings replace the level's whole, and
    /// what they leave out falls to the defaults, not to the level (Istio's rule).
    fn for_port(&self, port: u16) -> &TrafficPolicy {
        self.ports.get(&port).unwrap_or(&self.policy)
    }

    /// This level's `tls` for `port`: the port's, else the level's.
    /// (See [`DestinationPolicy::tls`] for how the levels combine.)
    fn tls_for_port(&self, port: u16) -> Option<ClientTls> {
        self.ports
            .get(&port)
            .and_then(|policy| policy.tls.clone())
            .or_else(|| self.policy.tls.clone())
    }
}

/// `connectionPool`: limits on the connections and requests to a destination. Unset
/// fields are Envoy's defaults as istiod leaves them (no limit).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConnectionPool {
    pub max_connections: Option<u32>,
    pub connect_timeout: Option<Duration>,
    pub tcp_keepalive: Option<TcpKeepalive>,
    pub max_connection_duration: Option<Duration>,
    pub http1_max_pending_requests: Option<u32>,
    pub http2_max_requests: Option<u32>,
    pub max_requests_per_connection: Option<u32>,
    pub max_retries: Option<u32>,
    /// `http.idleTimeout`, else `tcp.idleTimeout`.
    pub idle_timeout: Option<Duration>,
    /// `h2UpgradePolicy`: `Some(true)` UPGRADE, `Some(false)` DO_NOT_UPGRADE.
    pub h2_upgrade: Option<bool>,
    pub http2_keepalive: Option<Http2Keepalive>,
}

/// TCP keepalive probes on upstream connections; unset fields are the system's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TcpKeepalive {
    pub probes: Option<u32>,
    pub time: Option<Duration>,
    pub interval: Option<Duration>,
}

/// HTTP/2 PING keepalive on upstream connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Http2Keepalive {
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
}

/// `outlierDetection`: endpoints that keep failing leave the load-balancing set for a
/// while. Unset counts and times are Envoy's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutlierDetection {
    pub consecutive_5xx: Option<u32>,
    pub consecutive_gateway_errors: Option<u32>,
    /// Connection failures and timeouts are counted on their own, not as 5xx.
    pub split_local_origin_errors: bool,
    pub consecutive_local_origin_failures: Option<u32>,
    pub interval: Option<Duration>,
    pub base_ejection_time: Option<Duration>,
    pub max_ejection_percent: Option<u32>,
    /// Below this share of healthy endpoints the balancer uses them all (Envoy's panic
    /// threshold; istiod sets it to this, 0 by default, whenever outlier detection is on).
    pub min_health_percent: u32,
}

/// A named group of a service's endpoints, selected by labels.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Subset {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The subset's own policy, over the rule's.
    pub policy: LayeredPolicy,
}

/// The DestinationRule that applies to a host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DestinationPolicy {
    pub source: String,
    pub host: Hostname,
    pub policy: LayeredPolicy,
    pub subsets: Vec<Subset>,
}

impl DestinationPolicy {
    /// The `tls` for traffic to `port` of the host or its `subset`: the subset's (its
    /// port's, else its own), else the rule's (its port's, else its own).
    pub fn tls(&self, port: u16, subset: Option<&str>) -> Option<ClientTls> {
        let own = subset
            .and_then(|name| self.subset(name))
            .and_then(|subset| subset.policy.tls_for_port(port));
        own.or_else(|| self.policy.tls_for_port(port))
    }

    pub fn subset(&self, name: &str) -> Option<&Subset> {
        self.subsets.iter().find(|subset| subset.name == name)
    }

    /// The policy for traffic to `port` of the host, or of its `subset`, merged as istiod
    /// merges it: the rule's port settings replace the rule's policy; each part the
    /// subset sets replaces the rule's; the subset's port settings replace everything.
    ///
    /// `tls` is the exception, as in istiod's endpoint and cluster builders: a port's
    /// `tls` replaces its level's, and a level without one inherits from the level above.
    pub fn effective(&self, port: u16, subset: Option<&str>) -> TrafficPolicy {
        let tls = self.tls(port, subset);
        let mut top = self.policy.for_port(port).clone();
        let Some(subset) = subset.and_then(|name| self.subset(name)) else {
            top.tls = tls;
            return top;
        };
        if let Some(own_port) = subset.policy.ports.get(&port) {
            return TrafficPolicy {
                tls,
                ..own_port.clone()
            };
        }
        let own = &subset.policy.policy;
        TrafficPolicy {
            tls,
            load_balancer: own
                .load_balancer
                .clone()
                .or_else(|| top.load_balancer.clone()),
            connection_pool: own
                .connection_pool
                .clone()
                .or_else(|| top.connection_pool.clone()),
            outlier_detection: own
                .outlier_detection
                .clone()
                .or_else(|| top.outlier_detection.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(max_connections: u32) -> Option<ConnectionPool> {
        Some(ConnectionPool {
            max_connections: Some(max_connections),
            ..ConnectionPool::default()
        })
    }

    #[test]
    fn ports_replace_whole_and_subsets_replace_part_by_part() {
        let rule = DestinationPolicy {
            source: "test".into(),
            host: Hostname::resolve("reviews", "default"),
            policy: LayeredPolicy {
                policy: TrafficPolicy {
                    load_balancer: Some(LoadBalancing::simple(LoadBalancer::Random)),
                    connection_pool: pool(10),
                    outlier_detection: None,
                    tls: None,
                },
                ports: BTreeMap::from([(
                    9080,
                    TrafficPolicy {
                        connection_pool: pool(1),
                        ..TrafficPolicy::default()
                    },
                )]),
            },
            subsets: vec![Subset {
                name: "v2".into(),
                labels: BTreeMap::new(),
                policy: LayeredPolicy {
                    policy: TrafficPolicy {
                        load_balancer: Some(LoadBalancing::simple(LoadBalancer::RoundRobin)),
                        ..TrafficPolicy::default()
                    },
                    ports: BTreeMap::new(),
                },
            }],
        };
        // The port's settings replace the rule's whole: its load balancer is the default.
        let port = rule.effective(9080, None);
        assert_eq!(port.load_balancer, None);
        assert_eq!(port.connection_pool, pool(1));
        assert_eq!(rule.effective(9090, None).connection_pool, pool(10));
        // The subset's load balancer replaces the rule's; the pool stays the port's.
        let subset = rule.effective(9080, Some("v2"));
        assert_eq!(
            subset.load_balancer,
            Some(LoadBalancing::simple(LoadBalancer::RoundRobin))
        );
        assert_eq!(subset.connection_pool, pool(1));
    }
}
