//! Loading YAML: file:line in messages, per-document errors, duplicates, unsupported kinds.

use std::path::Path;

use bosun_api::{LoadErrorKind, Resource, StringMatch, load_dir, load_str};

const TWO_GOOD_ONE_BAD: &str = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ratings
spec:
  hosts: [ratings]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
      weigth: 100
---
# a comment before the document
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
";

#[test]
fn a_bad_document_is_refused_alone_with_file_line_and_field() {
    let result = load_str(TWO_GOOD_ONE_BAD, Path::new("mesh/bookinfo.yaml"));
    let kinds: Vec<&str> = result.resources.iter().map(Resource::kind).collect();
    assert_eq!(kinds, ["ServiceEntry", "DestinationRule"]);

    assert_eq!(result.errors.len(), 1, "{:?}", result.errors);
    let error = &result.errors[0];
    assert_eq!(error.kind, LoadErrorKind::Schema);
    assert_eq!(
        error.origin.to_string(),
        "mesh/bookinfo.yaml:19",
        "points at the misspelt field"
    );
    let text = error.to_string();
    assert!(
        text.starts_with(
            "VirtualService bookinfo/reviews (mesh/bookinfo.yaml:19): unknown field `weigth`"
        ),
        "{text}"
    );
    assert!(text.contains("expected one of"), "{text}");

    // Each resource starts at its first content line, after separators and comments.
    assert_eq!(result.resources[0].origin().line, 1);
    assert_eq!(result.resources[1].origin().line, 22);
    assert_eq!(result.resources[0].meta().namespace, "default");
}

#[test]
fn a_value_of_the_wrong_type_names_its_field_and_line() {
    let text = TWO_GOOD_ONE_BAD.replace("weigth: 100", "weight: ninety");
    let result = load_str(&text, Path::new("vs.yaml"));
    assert_eq!(result.errors.len(), 1, "{:?}", result.errors);
    assert_eq!(
        result.errors[0].to_string(),
        "VirtualService bookinfo/reviews (vs.yaml:19): weight: invalid value `ninety`: expected an integer"
    );
}

#[test]
fn yaml_syntax_errors_name_the_line_and_spare_other_documents() {
    let text = "kind: [unclosed\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n";
    let result = load_str(text, Path::new("x.yaml"));
    assert_eq!(result.resources.len(), 1);
    assert_eq!(result.errors.len(), 1);
    assert_eq!(result.errors[0].kind, LoadErrorKind::Syntax);
    assert_eq!(result.errors[0].origin.to_string(), "x.yaml:1");
}

#[test]
fn wrong_types_and_bad_durations_are_reported_at_the_field() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - timeout: 10 parsecs
    route:
    - destination: {host: reviews}
";
    let result = load_str(text, Path::new("vs.yaml"));
    assert!(result.resources.is_empty());
    let error = &result.errors[0];
    assert_eq!(error.origin.line, 8);
    assert!(
        error.message.contains("invalid duration `10 parsecs`"),
        "{}",
        error.message
    );
}

#[test]
fn missing_spec_and_name_are_errors() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: no-spec
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
spec:
  address: 1.2.3.4
";
    let result = load_str(text, Path::new("we.yaml"));
    assert!(result.resources.is_empty());
    let messages: Vec<String> = result.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "WorkloadEntry default/no-spec (we.yaml:1): spec: Required value",
            "we.yaml:6: WorkloadEntry: metadata.name: Required value",
        ]
    );
}

#[test]
fn duplicates_name_both_places() {
    let dir = tempfile::tempdir().unwrap();
    let vs = |line_padding: &str| {
        format!(
            "{line_padding}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {{host: reviews}}\n"
        )
    };
    std::fs::write(dir.path().join("a.yaml"), vs("")).unwrap();
    std::fs::write(dir.path().join("b.yaml"), vs("# one\n# two\n---\n")).unwrap();
    let result = load_dir(dir.path()).unwrap();

    assert_eq!(result.resources.len(), 1, "the first one is kept");
    assert_eq!(result.resources[0].origin().file, dir.path().join("a.yaml"));
    assert_eq!(result.errors.len(), 1);
    let error = &result.errors[0];
    let a = format!("{}:1", dir.path().join("a.yaml").display());
    let b = format!("{}:4", dir.path().join("b.yaml").display());
    assert!(matches!(&error.kind, LoadErrorKind::Duplicate { first } if first.to_string() == a));
    assert_eq!(
        error.message,
        format!("duplicate VirtualService default/reviews: defined at {a} and {b}")
    );
}

#[test]
fn same_name_in_other_namespace_or_kind_is_not_a_duplicate() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec: {host: reviews}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: other}
spec: {host: reviews}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec: {hosts: [reviews]}
";
    let result = load_str(text, Path::new("x.yaml"));
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    assert_eq!(result.resources.len(), 3);
}

#[test]
fn other_kinds_are_kept_as_unsupported() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway}
spec:
  anything: goes
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, namespace: shop}
spec: {replicas: 2}
---
apiVersion: v1
kind: List
items: []
";
    let result = load_str(text, Path::new("x.yaml"));
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    let described: Vec<String> = result
        .resources
        .iter()
        .map(|r| format!("{} {} {}", r.kind(), r.api_version(), r.meta().namespace))
        .collect();
    assert_eq!(
        described,
        [
            "Gateway networking.istio.io/v1 default",
            "Deployment apps/v1 shop",
            "List v1 default"
        ]
    );
    assert!(result.resources.iter().all(|r| !r.is_supported()));
}

#[test]
fn known_kind_with_unknown_version_is_an_error() {
    let text =
        "apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: r}\nspec: {}\n";
    let result = load_str(text, Path::new("x.yaml"));
    assert!(result.resources.is_empty());
    assert!(
        result.errors[0]
            .message
            .contains("unsupported apiVersion `networking.istio.io/v2`"),
        "{}",
        result.errors[0]
    );
}

#[test]
fn all_three_networking_versions_load() {
    for version in ["v1", "v1beta1", "v1alpha3"] {
        let text = format!(
            "apiVersion: networking.istio.io/{version}\nkind: WorkloadEntry\nmetadata: {{name: w}}\nspec: {{address: 1.2.3.4}}\n"
        );
        let result = load_str(&text, Path::new("x.yaml"));
        assert!(result.is_clean(), "{version}: {:?}", result.errors);
        assert!(matches!(result.resources[0], Resource::WorkloadEntry(_)));
    }
}

#[test]
fn local_workload_loads_with_defaults() {
    let text = r#"
apiVersion: bosun.dev/v1alpha1
kind: LocalWorkload
metadata:
  name: reviews-v1
spec:
  workloadEntry: reviews-v1
  command: ["{bosun}", "sample", "serve", "--service", "reviews"]
  appPorts: {http: 8000}
"#;
    let result = load_str(text, Path::new("launch.yaml"));
    assert!(result.is_clean(), "{:?}", result.errors);
    let Resource::LocalWorkload(local) = &result.resources[0] else {
        panic!("not a LocalWorkload");
    };
    assert_eq!(local.spec.proxy, bosun_api::ProxyKind::Bosun);
    assert_eq!(local.spec.command[0], "{bosun}");
    assert_eq!(local.spec.app_ports["http"], 8000);
    assert!(local.spec.env.is_empty());
}

#[test]
fn load_dir_reads_only_yaml_files_in_name_order_not_subfolders() {
    let dir = tempfile::tempdir().unwrap();
    let entry = |name: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: {name}}}\nspec: {{address: 1.2.3.4}}\n"
        )
    };
    std::fs::write(dir.path().join("b.yml"), entry("b")).unwrap();
    std::fs::write(dir.path().join("a.yaml"), entry("a")).unwrap();
    std::fs::write(dir.path().join("notes.txt"), entry("txt")).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/c.yaml"), entry("c")).unwrap();
    let result = load_dir(dir.path()).unwrap();
    let names: Vec<&str> = result
        .resources
        .iter()
        .map(|r| r.meta().name.as_str())
        .collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn load_dir_of_a_missing_folder_is_an_error() {
    let err = load_dir(Path::new("/nonexistent/bosun/config")).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/bosun/config"),
        "{err}"
    );
}

#[test]
fn string_matches_and_methods_deserialize() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - match:
    - uri: {prefix: /api}
      method: {exact: GET}
      headers:
        x-user: {regex: 'a.*'}
    route:
    - destination: {host: r}
";
    let result = load_str(text, Path::new("x.yaml"));
    let Resource::VirtualService(vs) = &result.resources[0] else {
        panic!("{:?}", result.errors);
    };
    let request = &vs.spec.http[0].matches[0];
    assert_eq!(request.uri, Some(StringMatch::Prefix("/api".into())));
    assert_eq!(request.method, Some(StringMatch::Exact("GET".into())));
    assert_eq!(request.headers["x-user"], StringMatch::Regex("a.*".into()));
}
