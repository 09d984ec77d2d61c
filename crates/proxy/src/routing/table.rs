//! Route tables: virtual hosts, their ordered routes, and route actions.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use super::actions::{HeaderRules, PathRewrite, Redirect};
use super::hash_policy::HashPolicy;
use super::route_index::RouteIndex;
use super::{DomainIndex, FilterConfigs, PathMatch, RequestView, RetryPolicy, RouteMatch};

/// One compiled RouteConfiguration.
#[derive(Debug)]
pub struct RouteTable {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHost>,
    domains: DomainIndex,
}

impl RouteTable {
    pub fn new(name: String, virtual_hosts: Vec<VirtualHost>, domains: DomainIndex) -> Self {
        RouteTable {
            name,
            virtual_hosts,
            domains,
        }
    }

    /// The first route of the matching virtual host whose match holds.
    pub fn route(&self, req: &RequestView<'_>) -> Option<&Arc<Route>> {
        let vhost = self.virtual_hosts.get(self.domains.find(req.authority)?)?;
        let routes = &vhost.routes;
        let first = vhost.index.first_match(req.path, routes.len(), |index| {
            routes[index].matcher.matches(req)
        })?;
        routes.get(first)
    }

    /// Cluster names this table can send traffic to.
    pub fn cluster_names(&self) -> impl Iterator<Item = &str> {
        self.virtual_hosts
            .iter()
            .flat_map(|v| v.routes.iter())
            .flat_map(|r| match &r.action {
                RouteAction::Cluster(name) => vec![name.as_ref()],
                RouteAction::Weighted(w) => w.clusters.iter().map(|(n, _)| n.as_ref()).collect(),
                RouteAction::Direct(_) | RouteAction::Redirect(_) => vec![],
            })
    }
}

#[derive(Debug)]
pub struct VirtualHost {
    pub name: String,
    pub domains: Vec<String>,
    pub routes: Vec<Arc<Route>>,
    /// Finds the first matching route without trying each one.
    index: RouteIndex,
}

impl VirtualHost {
    pub fn new(name: String, domains: Vec<String>, routes: Vec<Arc<Route>>) -> Self {
        let matchers: Vec<&RouteMatch> = routes.iter().map(|route| &route.matcher).collect();
        let index = RouteIndex::new(&matchers);
        VirtualHost {
            name,
            domains,
            routes,
            index,
        }
    }
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub matcher: RouteMatch,
    pub action: RouteAction,
    /// Upstream response-headers timeout, over all attempts; `None` disables it.
    pub timeout: Option<Duration>,
    pub retry: Option<Arc<RetryPolicy>>,
    /// What the route says to the HTTP filters before the router.
    pub filter_configs: FilterConfigs,
    /// Header changes of the route, its virtual host and its route table, in the order
    /// Envoy applies them (the least specific last, so it wins).
    pub headers: Vec<Arc<HeaderRules>>,
    /// The path forwarded upstream, rewritten.
    pub path_rewrite: Option<PathRewrite>,
    /// The `Host` / `:authority` forwarded upstream, replaced.
    pub host_rewrite: Option<http::uri::Authority>,
    /// Clusters a share of the requests is copied to, their answers ignored.
    pub mirrors: Vec<MirrorPolicy>,
    /// What the request is hashed on, for a ring-hash or maglev cluster.
    pub hash_policy: Option<Arc<HashPolicy>>,
}

/// Envoy's `RequestMirrorPolicy`: copy this share of the requests to `cluster`.
#[derive(Debug, Clone)]
pub struct MirrorPolicy {
    pub cluster: Arc<str>,
    pub share: super::Fraction,
    /// Whether the copy's host gets Envoy's `-shadow` suffix.
    pub shadow_suffix: bool,
}

/// The cluster a request goes to, with the header changes of its weighted entry.
#[derive(Debug, Clone)]
pub struct SelectedCluster<'r> {
    pub name: &'r Arc<str>,
    pub headers: Option<&'r Arc<HeaderRules>>,
}

impl Route {
    /// Whether the route terminates a `CONNECT` and tunnels its bytes to the cluster.
    pub fn tunnels(&self) -> bool {
        matches!(self.matcher.path, PathMatch::Connect)
    }

    /// The cluster this request goes to: the route's, or one of its weighted clusters.
    pub fn select_cluster(&self) -> Option<SelectedCluster<'_>> {
        match &self.action {
            RouteAction::Cluster(name) => Some(SelectedCluster {
                name,
                headers: None,
            }),
            RouteAction::Weighted(weighted) => Some(weighted.select_entry()),
            RouteAction::Direct(_) | RouteAction::Redirect(_) => None,
        }
    }

    /// How much of the path the route's match covers, for a prefix rewrite: a prefix
    /// match's length, else all of it.
    pub fn matched_prefix(&self) -> Option<usize> {
        match &self.matcher.path {
            PathMatch::Prefix(prefix) => Some(prefix.len()),
            PathMatch::Exact(_) | PathMatch::Regex(_) | PathMatch::Connect => None,
        }
    }
}

#[derive(Debug)]
pub enum RouteAction {
    Cluster(Arc<str>),
    Weighted(WeightedClusters),
    Direct(DirectResponse),
    Redirect(Redirect),
}

#[derive(Debug, Clone)]
pub struct DirectResponse {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Clusters with weights, stored as cumulative upper bounds for a binary search.
#[derive(Debug)]
pub struct WeightedClusters {
    /// `(cluster, weight)` as configured, for display.
    pub clusters: Vec<(Arc<str>, u32)>,
    /// Each entry's own header changes, by position.
    headers: Vec<Option<Arc<HeaderRules>>>,
    cumulative: Vec<u64>,
    total: u64,
}

impl WeightedClusters {
    /// `None` when the weights sum to zero.
    pub fn new(clusters: Vec<(Arc<str>, u32)>) -> Option<Self> {
        let mut total = 0u64;
        let cumulative = clusters
            .iter()
            .map(|(_, w)| {
                total += u64::from(*w);
                total
            })
            .collect();
        (total > 0).then_some(WeightedClusters {
            headers: vec![None; clusters.len()],
            clusters,
            cumulative,
            total,
        })
    }

    /// The same clusters with each entry's header changes (by position).
    pub fn with_headers(mut self, headers: Vec<Option<Arc<HeaderRules>>>) -> Self {
        if headers.len() == self.clusters.len() {
            self.headers = headers;
        }
        self
    }

    /// A cluster picked by weight, with its header changes.
    pub fn select_entry(&self) -> SelectedCluster<'_> {
        let index = self.index_at(rand::random_range(0..self.total));
        SelectedCluster {
            name: &self.clusters[index].0,
            headers: self.headers[index].as_ref(),
        }
    }

    fn index_at(&self, point: u64) -> usize {
        self.cumulative
            .partition_point(|&upper| upper <= point)
            .min(self.clusters.len() - 1)
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The cluster owning `point` in `[0, total)`.
    pub fn select_at(&self, point: u64) -> &Arc<str> {
        &self.clusters[self.index_at(point)].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weighted(weights: &[(&str, u32)]) -> WeightedClusters {
        WeightedClusters::new(weights.iter().map(|(n, w)| (Arc::from(*n), *w)).collect())
            .expect("non-zero total")
    }

    #[test]
    fn select_at_respects_boundaries() {
        let w = weighted(&[("a", 90), ("b", 10)]);
        assert_eq!(w.total(), 100);
        assert_eq!(w.select_at(0).as_ref(), "a");
        assert_eq!(w.select_at(89).as_ref(), "a");
        assert_eq!(w.select_at(90).as_ref(), "b");
        assert_eq!(w.select_at(99).as_ref(), "b");
    }

    #[test]
    fn zero_weight_clusters_are_never_chosen() {
        let w = weighted(&[("a", 0), ("b", 5), ("c", 0)]);
        for point in 0..5 {
            assert_eq!(w.select_at(point).as_ref(), "b");
        }
        assert!(WeightedClusters::new(vec![(Arc::from("a"), 0)]).is_none());
    }

    #[test]
    fn random_selection_follows_weights() {
        let w = weighted(&[("a", 75), ("b", 25)]);
        let a = (0..20_000)
            .filter(|_| w.select_entry().name.as_ref() == "a")
            .count();
        let share = a as f64 / 20_000.0;
        assert!((0.72..0.78).contains(&share), "share of a was {share}");
    }
}
