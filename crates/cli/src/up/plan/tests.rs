use std::path::Path;

use super::*;

fn load(yaml: &str) -> Vec<Resource> {
    let loaded = bosun_api::load_str(yaml, Path::new("resources.yaml"));
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded.resources
}

const ENTRIES: &str = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1}
spec:
  address: 127.0.10.3
  ports: {http: 9080}
  labels: {app: reviews, version: v1}
  serviceAccount: bookinfo-reviews
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: traffic}
spec:
  address: 127.0.10.100
"#;

#[test]
fn joins_each_local_workload_with_its_workload_entry() {
    let yaml = format!(
        "{ENTRIES}---
apiVersion: bosun.dev/v1alpha1
kind: LocalWorkload
metadata: {{name: traffic}}
spec:
  workloadEntry: traffic
  command: ['{{bosun}}', sample, load, --target, 'http://reviews:9080/']
---
apiVersion: bosun.dev/v1alpha1
kind: LocalWorkload
metadata: {{name: reviews-v1}}
spec:
  workloadEntry: reviews-v1
  command: ['{{bosun}}', sample, serve, --service, reviews]
  env: {{RUST_LOG: debug}}
"
    );
    let plan = plan(&load(&yaml)).unwrap();
    assert!(plan.needs_control_plane());
    let names: Vec<_> = plan.workloads.iter().map(|w| w.name.as_str()).collect();
    // The one that answers requests starts before the one that sends them.
    assert_eq!(names, ["reviews-v1", "traffic"]);

    let reviews = &plan.workloads[0];
    assert_eq!(reviews.ip.to_string(), "127.0.10.3");
    assert_eq!(
        reviews.ports,
        [PortPlan {
            name: "http".into(),
            port: 9080,
            app_port: 19080
        }]
    );
    assert_eq!(reviews.service_account.as_deref(), Some("bookinfo-reviews"));
    assert_eq!(reviews.labels["version"], "v1");
    assert!(!is_traffic_generator(&reviews.command));
    assert_eq!(reviews.stats_address, None);
    let env: BTreeMap<_, _> = reviews.app_env().into_iter().collect();
    assert_eq!(env["BOSUN_WORKLOAD_IP"], "127.0.10.3");
    assert_eq!(env["BOSUN_APP_PORT"], "19080");
    assert_eq!(env["BOSUN_WORKLOAD_NAME"], "reviews-v1");
    assert_eq!(env["BOSUN_NAMESPACE"], "default");
    assert_eq!(env["HTTP_PROXY"], "http://127.0.10.3:15001");
    assert_eq!(env["RUST_LOG"], "debug");
    assert_eq!(
        reviews.command_for("/bin/bosun"),
        ["/bin/bosun", "sample", "serve", "--service", "reviews"]
    );

    let traffic = &plan.workloads[1];
    assert!(is_traffic_generator(&traffic.command));
    assert!(traffic.ports.is_empty());
    assert_eq!(
        traffic.stats_address,
        Some("127.0.10.100:15020".parse().unwrap())
    );
    let env: BTreeMap<_, _> = traffic.app_env().into_iter().collect();
    assert_eq!(env["BOSUN_STATS_LISTEN"], "127.0.10.100:15020");
    assert!(!env.contains_key("BOSUN_APP_PORT"));
}

#[test]
fn without_a_proxy_the_app_listens_on_the_workload_port_and_no_control_plane_is_needed() {
    let yaml = format!(
        "{ENTRIES}---
apiVersion: bosun.dev/v1alpha1
kind: LocalWorkload
metadata: {{name: reviews-v1}}
spec:
  workloadEntry: reviews-v1
  proxy: none
  command: ['{{bosun}}', sample, serve]
"
    );
    let plan = plan(&load(&yaml)).unwrap();
    assert!(!plan.needs_control_plane());
    assert_eq!(plan.workloads[0].ports[0].app_port, 9080);
    let env: BTreeMap<_, _> = plan.workloads[0].app_env().into_iter().collect();
    assert!(!env.contains_key("HTTP_PROXY"));
}

#[test]
fn an_explicit_stats_address_in_the_command_is_used() {
    let yaml = format!(
        "{ENTRIES}---
apiVersion: bosun.dev/v1alpha1
kind: LocalWorkload
metadata: {{name: traffic}}
spec:
  workloadEntry: traffic
  command: ['{{bosun}}', sample, load, '--stats-listen=127.0.10.100:9999']
"
    );
    let plan = plan(&load(&yaml)).unwrap();
    assert_eq!(
        plan.workloads[0].stats_address,
        Some("127.0.10.100:9999".parse().unwrap())
    );
}

#[test]
fn every_reason_the_folder_cannot_run_is_reported_with_its_place() {
    let yaml = format!(
        "{ENTRIES}---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: remote}}
spec:
  address: 10.1.2.3
---
apiVersion: bosun.dev/v1alpha1
kind: LocalWorkload
metadata: {{name: ghost}}
spec:
  workloadEntry: nowhere
  command: [sleep, '1']
---
apiVersion: bosun.dev/v1alpha1
kind: LocalWorkload
metadata: {{name: remote}}
spec:
  workloadEntry: remote
  command: [sleep, '1']
---
apiVersion: bosun.dev/v1alpha1
kind: LocalWorkload
metadata: {{name: reviews-a}}
spec:
  workloadEntry: reviews-v1
  command: []
  appPorts: {{http: 15001, grpc: 9000}}
"
    );
    let errors = plan(&load(&yaml)).unwrap_err().to_string();
    let lines: Vec<&str> = errors.lines().collect();
    assert_eq!(
        lines,
        [
            "LocalWorkload default/ghost (resources.yaml:23): workloadEntry \"nowhere\" is not \
             defined in namespace default",
            "WorkloadEntry default/remote (resources.yaml:17): address 10.1.2.3 is not a loopback \
             address: `bosun up` runs every workload on this machine, each on its own 127.x.y.z",
            "LocalWorkload default/reviews-a (resources.yaml:37): `command` is empty: nothing to run",
            "LocalWorkload default/reviews-a (resources.yaml:37): appPorts names port \"grpc\", which \
             WorkloadEntry reviews-v1 does not have",
            "LocalWorkload default/reviews-a (resources.yaml:37): app port 15001 of port http is \
             taken by the sidecar on the same IP",
        ]
    );
}

#[test]
fn workloads_cannot_share_an_entry_or_an_address() {
    let yaml = format!(
        "{ENTRIES}---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: twin}}
spec:
  address: 127.0.10.3
---
apiVersion: bosun.dev/v1alpha1
kind: LocalWorkload
metadata: {{name: reviews-a}}
spec:
  workloadEntry: reviews-v1
  command: [sleep, '1']
---
apiVersion: bosun.dev/v1alpha1
kind: LocalWorkload
metadata: {{name: reviews-b}}
spec:
  workloadEntry: reviews-v1
  command: [sleep, '1']
---
apiVersion: bosun.dev/v1alpha1
kind: LocalWorkload
metadata: {{name: twin}}
spec:
  workloadEntry: twin
  command: [sleep, '1']
"
    );
    let errors = plan(&load(&yaml)).unwrap_err().to_string();
    let lines: Vec<&str> = errors.lines().collect();
    assert_eq!(lines.len(), 2, "{errors}");
    assert!(
        lines[0].starts_with("LocalWorkload default/reviews-b (resources.yaml:30): WorkloadEntry reviews-v1 is already run by LocalWorkload reviews-a (resources.yaml:23)"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("LocalWorkload default/twin (resources.yaml:37): address 127.0.10.3 is also the address of LocalWorkload reviews-a"),
        "{}",
        lines[1]
    );
}

/// The example folder shipped with Bosun loads and plans as the README describes.
#[test]
fn the_bookinfo_example_plans() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bookinfo");
    let loaded = bosun_api::load_dir(&folder).unwrap();
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let plan = plan(&loaded.resources).unwrap();
    let names: Vec<(&str, String)> = plan
        .workloads
        .iter()
        .map(|workload| (workload.name.as_str(), workload.ip.to_string()))
        .collect();
    assert_eq!(
        names,
        [
            ("productpage-v1", "127.0.10.1".to_owned()),
            ("details-v1", "127.0.10.2".to_owned()),
            ("reviews-v1", "127.0.10.3".to_owned()),
            ("reviews-v2", "127.0.10.4".to_owned()),
            ("reviews-v3", "127.0.10.5".to_owned()),
            ("ratings-v1", "127.0.10.6".to_owned()),
            ("traffic", "127.0.10.100".to_owned()),
        ]
    );
    assert!(plan.needs_control_plane());
    let traffic = &plan.workloads[6];
    assert_eq!(
        traffic.stats_address,
        Some("127.0.10.100:15020".parse().unwrap())
    );
    let reviews_v1 = &plan.workloads[2];
    assert!(
        !reviews_v1
            .command
            .iter()
            .any(|part| part.contains("ratings"))
    );
    let reviews_v2 = &plan.workloads[3];
    assert!(
        reviews_v2
            .command
            .iter()
            .any(|part| part == "http://ratings:9080/ratings/0")
    );
    for resource in &loaded.resources {
        let errors: Vec<_> = bosun_api::validate(resource)
            .into_iter()
            .filter(|message| message.severity == bosun_api::Severity::Error)
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
    }
}
