//! VirtualService and LocalWorkload validation (Istio's corpus has no VirtualService pairs).

use std::path::Path;

use bosun_api::{Severity, load_str, validate};

fn errors(yaml: &str) -> Vec<String> {
    let loaded = load_str(yaml, Path::new("vs.yaml"));
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    validate(&loaded.resources[0])
        .into_iter()
        .filter(|m| m.severity == Severity::Error)
        .map(|m| m.to_string())
        .collect()
}

fn vs(http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews, namespace: shop}}\nspec:\n  hosts: [reviews]\n  http:\n{http}"
    )
}

#[test]
fn message_names_kind_namespace_name_place_field_and_reason() {
    let found = errors(&vs(
        "  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: -5\n",
    ));
    assert_eq!(
        found,
        ["VirtualService shop/reviews (vs.yaml:1): spec.http[0].route[0].weight: weight -5 < 0"]
    );
}

#[test]
fn route_redirect_or_direct_response_is_required() {
    let found = errors(&vs("  - name: empty\n    match: [{uri: {prefix: /}}]\n"));
    assert!(
        found[0].ends_with("HTTP route, redirect or direct_response is required"),
        "{found:?}"
    );
}

#[test]
fn weights_of_several_destinations_cannot_all_be_zero() {
    let found = errors(&vs(
        "  - route:\n    - destination: {host: reviews, subset: v1}\n    - destination: {host: reviews, subset: v2}\n",
    ));
    assert!(
        found[0].ends_with("total destination weight = 0"),
        "{found:?}"
    );
}

#[test]
fn bad_regex_prefix_and_header_names_are_refused() {
    let found = errors(&vs(
        "  - match:\n    - uri: {regex: '(unclosed'}\n      headers: {'bad header': {prefix: ''}}\n    route:\n    - destination: {host: reviews}\n",
    ));
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found
            .iter()
            .any(|e| e.contains("spec.http[0].match[0].uri") && e.contains("RE2"))
    );
    assert!(found.iter().any(|e| e.contains("not a valid header name")));
    assert!(
        found
            .iter()
            .any(|e| e.contains("prefix string match should not be empty"))
    );
}

#[test]
fn mesh_virtual_service_cannot_use_wildcard_host() {
    let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: all}\nspec:\n  hosts: ['*']\n  http:\n  - route:\n    - destination: {host: reviews}\n";
    let found = errors(text);
    assert!(
        found[0].contains("wildcard host * is not allowed"),
        "{found:?}"
    );
}

#[test]
fn timeouts_below_a_millisecond_and_bad_fault_statuses_are_refused() {
    let found = errors(&vs(
        "  - timeout: 0.5ms\n    fault: {abort: {httpStatus: 700, percentage: {value: 10}}}\n    route:\n    - destination: {host: reviews}\n",
    ));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().any(|e| e.contains("spec.http[0].timeout")));
    assert!(
        found
            .iter()
            .any(|e| e.contains("HTTP status 700 is not in range 200-599"))
    );
}

#[test]
fn a_valid_virtual_service_has_no_findings() {
    let text = vs(
        "  - match:\n    - headers: {end-user: {exact: jason}}\n    route:\n    - destination: {host: reviews, subset: v2}\n  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 90\n    - destination: {host: reviews, subset: v2}\n      weight: 10\n",
    );
    let loaded = load_str(&text, Path::new("vs.yaml"));
    assert!(validate(&loaded.resources[0]).is_empty());
}

#[test]
fn unreachable_rules_are_warnings() {
    let loaded = load_str(
        &vs(
            "  - route:\n    - destination: {host: reviews}\n  - route:\n    - destination: {host: reviews}\n",
        ),
        Path::new("vs.yaml"),
    );
    let messages = validate(&loaded.resources[0]);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].severity, Severity::Warning);
    assert!(
        messages[0]
            .to_string()
            .contains("warning: spec.http[1]: virtualService rule #1 not used")
    );
}

#[test]
fn local_workload_needs_an_entry_and_a_command() {
    let text = "apiVersion: bosun.dev/v1alpha1\nkind: LocalWorkload\nmetadata: {name: w}\nspec:\n  workloadEntry: ''\n  appPorts: {http: 0}\n";
    let found = errors(text);
    assert_eq!(found.len(), 3, "{found:?}");
}

fn sidecar(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default}}\nspec:\n{spec}"
    )
}

#[test]
fn sidecar_egress_is_validated_as_istio_does() {
    assert!(
        errors(&sidecar(
            "  egress:\n  - hosts: [./*, istio-system/*, '*/*.example.com']\n"
        ))
        .is_empty()
    );
    let empty = errors(&sidecar("  workloadSelector: {labels: {app: a}}\n"));
    assert!(
        empty
            .iter()
            .any(|e| e.contains("sidecar: empty configuration provided")),
        "{empty:?}"
    );
    let no_slash = errors(&sidecar(
        "  egress:\n  - hosts: [reviews.default.svc.cluster.local]\n",
    ));
    assert!(
        no_slash.iter().any(|e| e.contains("namespace/dnsName")),
        "{no_slash:?}"
    );
    let no_hosts = errors(&sidecar(
        "  egress:\n  - port: {number: 9080, protocol: HTTP, name: http}\n",
    ));
    assert!(
        no_hosts
            .iter()
            .any(|e| e.contains("egress listener must contain at least one host")),
        "{no_hosts:?}"
    );
    let catch_all_first = errors(&sidecar(
        "  egress:\n  - hosts: [./*]\n  - port: {number: 9080, name: http, protocol: HTTP}\n    hosts: [./*]\n",
    ));
    assert!(
        catch_all_first
            .iter()
            .any(|e| e.contains("should be the last listener")),
        "{catch_all_first:?}"
    );
}
