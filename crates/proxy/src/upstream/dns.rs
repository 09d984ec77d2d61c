//! Clusters whose endpoints are names the proxy resolves itself: Envoy's STRICT_DNS
//! (every address of every name is an endpoint) and LOGICAL_DNS (the first address of
//! the one name). A task per cluster resolves on start and again when the answer's TTL
//! or the refresh rate runs out; a name that fails keeps the addresses it had.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::LookupIpStrategy;
use rand::Rng;

use super::endpoint::EndpointSpec;

/// Envoy's default when a cluster sets no dns_refresh_rate.
pub const DEFAULT_REFRESH_RATE: Duration = Duration::from_secs(5);
/// Answers given for longer than this are asked again sooner all the same.
const LONGEST_WAIT: Duration = Duration::from_secs(24 * 3600);

/// Which addresses a name is resolved to (Envoy's `dns_lookup_family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupFamily {
    V4Only,
    V6Only,
    /// IPv6 when the name has some, else IPv4 (Envoy's AUTO).
    V6Preferred,
    V4Preferred,
    All,
}

impl LookupFamily {
    fn strategy(self) -> LookupIpStrategy {
        match self {
            LookupFamily::V4Only => LookupIpStrategy::Ipv4Only,
            LookupFamily::V6Only => LookupIpStrategy::Ipv6Only,
            LookupFamily::V6Preferred => LookupIpStrategy::Ipv6thenIpv4,
            LookupFamily::V4Preferred => LookupIpStrategy::Ipv4thenIpv6,
            LookupFamily::All => LookupIpStrategy::Ipv4AndIpv6,
        }
    }

    fn admits(self, ip: IpAddr) -> bool {
        match self {
            LookupFamily::V4Only => ip.is_ipv4(),
            LookupFamily::V6Only => ip.is_ipv6(),
            _ => true,
        }
    }
}

/// How a DNS cluster finds its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsDiscovery {
    /// LOGICAL_DNS: one name, and only its first address is used.
    pub logical: bool,
    pub targets: Vec<DnsTarget>,
    pub family: LookupFamily,
    pub refresh: Duration,
    /// After a failed lookup (Envoy: the refresh rate).
    pub failure_refresh: Duration,
    /// Up to this much is added to each wait, so proxies do not ask all at once.
    pub jitter: Duration,
    /// Ask again when the answer's TTL runs out rather than at the refresh rate.
    pub respect_ttl: bool,
}

/// One name and what each of its addresses becomes: `endpoint` with the address's IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsTarget {
    pub name: String,
    pub endpoint: EndpointSpec,
}

/// Resolves the names for as long as `publish` takes the answers: it gets the endpoints
/// after every round of lookups (the first one too, when nothing resolved) and says
/// `false` once nobody wants them.
pub async fn keep_resolving(
    discovery: DnsDiscovery,
    mut publish: impl FnMut(Vec<EndpointSpec>) -> bool + Send + 'static,
) {
    let resolver = match resolver(discovery.family) {
        Ok(resolver) => resolver,
        Err(error) => {
            tracing::warn!(%error, "no DNS resolver: the cluster has no endpoints");
            publish(Vec::new());
            return;
        }
    };
    // The addresses each name last resolved to: kept when a lookup fails.
    let mut known: Vec<Vec<IpAddr>> = vec![Vec::new(); discovery.targets.len()];
    loop {
        let lookups = discovery
            .targets
            .iter()
            .map(|target| lookup(&resolver, &target.name, discovery.family));
        let answers = futures::future::join_all(lookups).await;
        let mut wait = LONGEST_WAIT;
        let mut failed = false;
        for ((target, answer), known) in discovery.targets.iter().zip(answers).zip(&mut known) {
            match answer {
                Ok((addresses, ttl)) => {
                    *known = addresses;
                    let next = match ttl {
                        Some(ttl) if discovery.respect_ttl && !ttl.is_zero() => ttl,
                        _ => discovery.refresh,
                    };
                    wait = wait.min(next);
                }
                Err(error) => {
                    failed = true;
                    tracing::warn!(name = %target.name, %error, "DNS lookup failed; keeping the last addresses");
                }
            }
        }
        if failed {
            wait = wait.min(discovery.failure_refresh);
        }
        if !publish(endpoints(&discovery, &known)) {
            return;
        }
        tokio::time::sleep(wait + jitter(discovery.jitter)).await;
    }
}

/// The endpoints the names' addresses make: all of them, or for LOGICAL_DNS the first.
fn endpoints(discovery: &DnsDiscovery, known: &[Vec<IpAddr>]) -> Vec<EndpointSpec> {
    let mut out: Vec<EndpointSpec> = Vec::new();
    for (target, addresses) in discovery.targets.iter().zip(known) {
        for ip in addresses {
            let address = SocketAddr::new(*ip, target.endpoint.address.port());
            if out.iter().any(|endpoint| endpoint.address == address) {
                continue;
            }
            out.push(EndpointSpec {
                address,
                ..target.endpoint.clone()
            });
        }
    }
    if discovery.logical {
        out.truncate(1);
    }
    out
}

fn resolver(family: LookupFamily) -> Result<TokioResolver, hickory_resolver::net::NetError> {
    let mut builder = TokioResolver::builder_tokio()?;
    builder.options_mut().ip_strategy = family.strategy();
    builder.build()
}

/// A name's addresses and how long they hold; an IP literal is its own answer.
async fn lookup(
    resolver: &TokioResolver,
    name: &str,
    family: LookupFamily,
) -> Result<(Vec<IpAddr>, Option<Duration>), String> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok((vec![ip], None));
    }
    let answer = resolver.lookup_ip(name).await.map_err(|e| e.to_string())?;
    let ttl = answer
        .valid_until()
        .checked_duration_since(std::time::Instant::now());
    let addresses: Vec<IpAddr> = answer.iter().filter(|ip| family.admits(*ip)).collect();
    if addresses.is_empty() {
        return Err(format!("{name} has no address of the wanted family"));
    }
    Ok((addresses, ttl))
}

fn jitter(most: Duration) -> Duration {
    if most.is_zero() {
        return Duration::ZERO;
    }
    most.mul_f64(rand::rng().random::<f64>())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn target(name: &str, port: u16, weight: u32) -> DnsTarget {
        DnsTarget {
            name: name.to_owned(),
            endpoint: EndpointSpec {
                address: SocketAddr::from(([0, 0, 0, 0], port)),
                weight,
                healthy: true,
                health: "UNKNOWN".into(),
                socket_match: BTreeMap::new(),
                workload: None,
            },
        }
    }

    fn discovery(logical: bool, targets: Vec<DnsTarget>) -> DnsDiscovery {
        DnsDiscovery {
            logical,
            targets,
            family: LookupFamily::V4Only,
            refresh: DEFAULT_REFRESH_RATE,
            failure_refresh: DEFAULT_REFRESH_RATE,
            jitter: Duration::ZERO,
            respect_ttl: true,
        }
    }

    #[test]
    fn every_address_of_every_name_is_an_endpoint_with_the_names_port_and_weight() {
        let strict = discovery(false, vec![target("a", 80, 2), target("b", 81, 5)]);
        let known = vec![
            vec!["127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()],
            vec!["127.0.0.3".parse().unwrap()],
        ];
        let endpoints = endpoints(&strict, &known);
        let got: Vec<(String, u32)> = endpoints
            .iter()
            .map(|e| (e.address.to_string(), e.weight))
            .collect();
        assert_eq!(
            got,
            [
                ("127.0.0.1:80".to_owned(), 2),
                ("127.0.0.2:80".to_owned(), 2),
                ("127.0.0.3:81".to_owned(), 5)
            ]
        );
        let logical = discovery(true, vec![target("a", 80, 1)]);
        let first = super::endpoints(&logical, &known[..1]);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].address.to_string(), "127.0.0.1:80");
    }

    #[tokio::test]
    async fn names_from_the_hosts_file_and_ip_literals_resolve() {
        let resolver = resolver(LookupFamily::V4Only).expect("system resolver");
        let (addresses, ttl) = lookup(&resolver, "localhost", LookupFamily::V4Only)
            .await
            .expect("localhost resolves");
        assert_eq!(addresses, [IpAddr::from([127, 0, 0, 1])]);
        assert!(ttl.is_some());
        let (addresses, ttl) = lookup(&resolver, "127.0.0.9", LookupFamily::V4Only)
            .await
            .unwrap();
        assert_eq!(addresses, [IpAddr::from([127, 0, 0, 9])]);
        assert_eq!(ttl, None);
    }
}
