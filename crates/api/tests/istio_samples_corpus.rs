//! Istio's bookinfo sample and pilot test configuration: every file loads and validates,
//! and the scenarios the Istio docs describe read as they should.

mod support;

use std::path::Path;

use bosun_api::networking::{HttpRoute, LoadBalancerSimple, VirtualService};
use bosun_api::{Config, LoadResult, Resource, StringMatch, load_dir, load_str, validate};

fn load_folder(folder: &str) -> Option<LoadResult> {
    let dir = support::corpus_dir(folder)?;
    Some(load_dir(&dir).unwrap_or_else(|error| panic!("{error}")))
}

fn assert_loads_and_validates(result: &LoadResult) {
    assert!(result.errors.is_empty(), "{:#?}", result.errors);
    let errors: Vec<String> = result
        .resources
        .iter()
        .flat_map(validate)
        .filter(|message| message.is_error())
        .map(|message| message.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

fn virtual_service<'a>(result: &'a LoadResult, file: &str) -> &'a Config<VirtualService> {
    result
        .resources
        .iter()
        .find_map(|resource| match resource {
            Resource::VirtualService(vs) if vs.origin.file.ends_with(file) => Some(vs),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no VirtualService in {file}"))
}

/// `(subset, weight)` of each destination of a route.
fn split(route: &HttpRoute) -> Vec<(&str, Option<i32>)> {
    route
        .route
        .iter()
        .map(|d| (d.destination.subset.as_deref().unwrap_or(""), d.weight))
        .collect()
}

/// Bookinfo's files define the same resources several times (one file per scenario), so
/// each file is loaded on its own, as a user applies them one at a time.
fn load_each_file(folder: &str) -> Option<Vec<LoadResult>> {
    let dir = support::corpus_dir(folder)?;
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    Some(
        files
            .iter()
            .map(|file| load_str(&std::fs::read_to_string(file).unwrap(), file))
            .collect(),
    )
}

#[test]
fn every_bookinfo_file_loads_and_validates() {
    let Some(results) = load_each_file("bookinfo/networking") else {
        return;
    };
    for result in &results {
        assert_loads_and_validates(result);
        assert!(!result.resources.is_empty());
    }
}

#[test]
fn every_istio_testdata_file_loads_and_validates() {
    let Some(results) = load_each_file("istio-testdata-config") else {
        return;
    };
    for result in &results {
        assert_loads_and_validates(result);
    }
    // Gateways are kept as unsupported, not dropped; PeerAuthentications are read.
    let unsupported: Vec<&str> = results
        .iter()
        .flat_map(|r| &r.resources)
        .filter(|r| !r.is_supported())
        .map(Resource::kind)
        .collect();
    assert!(unsupported.contains(&"Gateway"), "{unsupported:?}");
    let peer_authentications = results
        .iter()
        .flat_map(|r| &r.resources)
        .filter(|r| matches!(r, Resource::PeerAuthentication(_)))
        .count();
    assert!(
        peer_authentications > 0,
        "Istio's test data has PeerAuthentications"
    );
    let sidecars = results
        .iter()
        .flat_map(|r| &r.resources)
        .filter(|r| matches!(r, Resource::Sidecar(_)))
        .count();
    assert!(sidecars > 0, "Istio's test data has Sidecars, read as such");
}

#[test]
fn reviews_90_10_splits_between_v1_and_v2() {
    let Some(result) = load_folder("bookinfo/networking") else {
        return;
    };
    // Loaded as one folder the scenario files redefine each other; the first wins and the
    // rest are reported as duplicates naming both files.
    assert!(
        result
            .errors
            .iter()
            .all(|e| e.message.starts_with("duplicate "))
    );

    let dir = support::corpus_dir("bookinfo/networking").unwrap();
    let file = dir.join("virtual-service-reviews-90-10.yaml");
    let single = load_str(&std::fs::read_to_string(&file).unwrap(), &file);
    let vs = virtual_service(&single, "virtual-service-reviews-90-10.yaml");
    assert_eq!(vs.meta.name, "reviews");
    assert_eq!(vs.spec.hosts, ["reviews"]);
    assert_eq!(
        split(&vs.spec.http[0]),
        [("v1", Some(90)), ("v2", Some(10))]
    );
}

#[test]
fn reviews_test_v2_routes_jason_to_v2() {
    let Some(results) = load_each_file("bookinfo/networking") else {
        return;
    };
    let result = results
        .iter()
        .find(|r| {
            r.resources[0]
                .origin()
                .file
                .ends_with("virtual-service-reviews-test-v2.yaml")
        })
        .unwrap();
    let vs = virtual_service(result, "virtual-service-reviews-test-v2.yaml");
    let jason = &vs.spec.http[0];
    assert_eq!(
        jason.matches[0].headers["end-user"],
        StringMatch::Exact("jason".into())
    );
    assert_eq!(split(jason), [("v2", None)]);
    assert!(
        vs.spec.http[1].matches.is_empty(),
        "the last rule is the default"
    );
    assert_eq!(split(&vs.spec.http[1]), [("v1", None)]);
}

#[test]
fn ratings_delay_scenario_loads_its_fault_and_nothing_is_unsupported() {
    let Some(results) = load_each_file("bookinfo/networking") else {
        return;
    };
    let result = results
        .iter()
        .find(|r| {
            r.resources[0]
                .origin()
                .file
                .ends_with("virtual-service-ratings-test-delay.yaml")
        })
        .unwrap();
    let vs = virtual_service(result, "virtual-service-ratings-test-delay.yaml");
    let delay = vs.spec.http[0]
        .fault
        .as_ref()
        .unwrap()
        .delay
        .as_ref()
        .unwrap();
    assert_eq!(
        delay.fixed_delay.unwrap().as_std(),
        std::time::Duration::from_secs(7)
    );
    assert!(
        bosun_api::unsupported_fields(&result.resources[0]).is_empty(),
        "{:?}",
        bosun_api::unsupported_fields(&result.resources[0])
    );
}

#[test]
fn destination_rules_define_subsets_and_policies() {
    let Some(results) = load_each_file("istio-testdata-config") else {
        return;
    };
    let rules: Vec<_> = results
        .iter()
        .flat_map(|r| &r.resources)
        .filter_map(|r| match r {
            Resource::DestinationRule(dr) => Some(dr),
            _ => None,
        })
        .collect();
    assert!(!rules.is_empty());
    let passthrough = rules
        .iter()
        .find(|dr| {
            dr.origin
                .file
                .ends_with("destination-rule-passthrough.yaml")
        })
        .unwrap();
    let simple = passthrough
        .spec
        .traffic_policy
        .as_ref()
        .and_then(|p| p.load_balancer.as_ref())
        .and_then(|lb| lb.simple);
    assert_eq!(simple, Some(LoadBalancerSimple::Passthrough));
}

#[test]
fn errors_point_into_the_corpus_file() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - name: v1
    lables: {version: v1}
";
    let result = load_str(text, Path::new("destination-rule-reviews.yaml"));
    assert_eq!(
        result.errors[0].to_string(),
        "DestinationRule default/reviews (destination-rule-reviews.yaml:8): unknown field `lables`, expected one of name, labels, trafficPolicy"
    );
}
