//! Human tables for `bosun proxy-config`.

use bosun_proxy::config_dump::{ConfigDump, RouteActionDump, RouteConfigDump};
use comfy_table::presets::NOTHING;
use comfy_table::{ContentArrangement, Table};

use super::What;

pub fn render(dump: &ConfigDump, what: What) -> String {
    let mut out = String::new();
    let mut section = |title: &str, table: Table| {
        if what == What::All {
            out.push_str(&format!("{title}\n"));
        }
        out.push_str(&format!("{table}\n"));
        if what == What::All {
            out.push('\n');
        }
    };
    if matches!(what, What::Listeners | What::All) {
        section("LISTENERS", listeners(dump));
    }
    if matches!(what, What::Routes | What::All) {
        section("ROUTES", routes(dump));
    }
    if matches!(what, What::Clusters | What::All) {
        section("CLUSTERS", clusters(dump));
    }
    if matches!(what, What::Endpoints | What::All) {
        section("ENDPOINTS", endpoints(dump));
    }
    for (kind, nack) in &dump.last_nacks {
        out.push_str(&format!(
            "last rejected {kind:?} update: {}\n",
            nack.message
        ));
    }
    out
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    t
}

fn listeners(dump: &ConfigDump) -> Table {
    let mut t = table(&["NAME", "ADDRESS", "TRANSPORT", "ROUTES", "VERSION"]);
    for l in &dump.listeners {
        let routes = match (&l.route_config_name, &l.inline_route_config) {
            (Some(rds), _) => format!("RDS {rds}"),
            (None, Some(inline)) => format!("inline {}", inline.name),
            (None, None) => "-".to_owned(),
        };
        let address = l.bound_address.clone().unwrap_or_else(|| l.address.clone());
        t.add_row(vec![
            l.name.clone(),
            address,
            l.transport.clone(),
            routes,
            l.version.clone(),
        ]);
    }
    t
}

fn routes(dump: &ConfigDump) -> Table {
    let mut t = table(&["ROUTE CONFIG", "VIRTUAL HOST", "DOMAINS", "MATCH", "ACTION"]);
    let inline = dump
        .listeners
        .iter()
        .filter_map(|l| l.inline_route_config.as_ref());
    let all: Vec<&RouteConfigDump> = dump.routes.iter().chain(inline).collect();
    for config in all {
        for vhost in &config.virtual_hosts {
            let domains = vhost.domains.join(",");
            if vhost.routes.is_empty() {
                t.add_row(vec![
                    config.name.clone(),
                    vhost.name.clone(),
                    domains.clone(),
                    "-".into(),
                    "-".into(),
                ]);
            }
            for route in &vhost.routes {
                let mut matched = route.path_match.clone();
                for h in &route.headers {
                    matched.push_str(&format!(", header {h}"));
                }
                let action = match &route.action {
                    RouteActionDump::Cluster(c) => c.clone(),
                    RouteActionDump::WeightedClusters(ws) => ws
                        .iter()
                        .map(|w| format!("{} {}%", w.cluster, w.weight))
                        .collect::<Vec<_>>()
                        .join(", "),
                    RouteActionDump::DirectResponse { status } => {
                        format!("direct response {status}")
                    }
                    RouteActionDump::Redirect { status } => format!("redirect {status}"),
                };
                t.add_row(vec![
                    config.name.clone(),
                    vhost.name.clone(),
                    domains.clone(),
                    matched,
                    action,
                ]);
            }
        }
    }
    t
}

fn clusters(dump: &ConfigDump) -> Table {
    let mut t = table(&["NAME", "TYPE", "LB", "PROTOCOL", "HEALTHY", "VERSION"]);
    for c in &dump.clusters {
        t.add_row(vec![
            c.name.clone(),
            c.discovery.clone(),
            c.lb_policy.clone(),
            c.protocol.clone(),
            c.healthy_endpoints.to_string(),
            c.version.clone(),
        ]);
    }
    t
}

fn endpoints(dump: &ConfigDump) -> Table {
    let mut t = table(&["CLUSTER", "ADDRESS", "WEIGHT", "HEALTH"]);
    for e in &dump.endpoints {
        for ep in &e.endpoints {
            t.add_row(vec![
                e.cluster_name.clone(),
                ep.address.clone(),
                ep.weight.to_string(),
                ep.health.clone(),
            ]);
        }
    }
    t
}
