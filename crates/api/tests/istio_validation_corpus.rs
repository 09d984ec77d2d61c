//! Istio's own validation test data: every valid document must pass, every invalid one
//! must be refused (when loading or by validation).

mod support;

use std::path::Path;

use bosun_api::{LoadResult, load_str, validate};

/// Invalid documents Bosun does not refuse yet, with the reason.
const KNOWN_GAPS: &[(&str, &str)] = &[];

struct Case {
    name: String,
    expected_error: Option<String>,
    text: String,
}

/// Splits a corpus file into documents, turning the `_err:` annotation into a comment so
/// that line numbers are kept and the document is a plain resource.
fn cases(path: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut cases = Vec::new();
    for document in text.split("\n---") {
        let mut expected_error = None;
        let mut lines = Vec::new();
        for line in document.lines() {
            if let Some(error) = line.strip_prefix("_err:") {
                expected_error = Some(error.trim().trim_matches(['\'', '"']).to_owned());
                lines.push(format!("# {line}"));
            } else {
                lines.push(line.to_owned());
            }
        }
        let text = lines.join("\n");
        let name = text
            .lines()
            .skip_while(|line| !line.starts_with("metadata:"))
            .find_map(|line| line.trim().strip_prefix("name:"))
            .map(|name| name.trim().to_owned());
        if let Some(name) = name {
            cases.push(Case {
                name,
                expected_error,
                text,
            });
        }
    }
    cases
}

fn errors(result: &LoadResult) -> Vec<String> {
    let mut errors: Vec<String> = result.errors.iter().map(ToString::to_string).collect();
    for resource in &result.resources {
        errors.extend(
            validate(resource)
                .into_iter()
                .filter(|message| message.is_error())
                .map(|message| message.to_string()),
        );
    }
    errors
}

/// Whether one of `errors` says what Istio says. Istio's "field: Required value" is a
/// missing field to the deserializer.
fn agrees_with_istio(expected: &str, errors: &[String]) -> bool {
    let missing_field = expected
        .strip_suffix(": Required value")
        .and_then(|path| path.rsplit('.').next())
        .map(|field| format!("missing field `{field}`"));
    errors.iter().any(|error| {
        error.contains(expected) || missing_field.as_ref().is_some_and(|m| error.contains(m))
    })
}

fn check_kind(kind: &str) {
    let Some(dir) = support::corpus_dir("istio-validation-crds") else {
        return;
    };
    let mut failures = Vec::new();

    let valid_path = dir.join(format!("{kind}-valid.yaml"));
    let valid = cases(&valid_path);
    assert!(
        !valid.is_empty(),
        "no documents in {}",
        valid_path.display()
    );
    for case in &valid {
        let result = load_str(&case.text, &valid_path);
        assert_eq!(
            result.resources.len(),
            1,
            "{}: {:?}",
            case.name,
            result.errors
        );
        let errors = errors(&result);
        if !errors.is_empty() {
            failures.push(format!("valid {} was refused: {errors:?}", case.name));
        }
    }

    let invalid_path = dir.join(format!("{kind}-invalid.yaml"));
    let invalid = cases(&invalid_path);
    assert!(
        !invalid.is_empty(),
        "no documents in {}",
        invalid_path.display()
    );
    for case in &invalid {
        let expected = case.expected_error.as_deref().unwrap_or("?");
        let result = load_str(&case.text, &invalid_path);
        let errors = errors(&result);
        let gap = KNOWN_GAPS.iter().find(|(name, _)| *name == case.name);
        match (errors.is_empty(), gap) {
            (true, None) => failures.push(format!(
                "invalid {} was accepted (Istio: {expected})",
                case.name
            )),
            (false, Some(_)) => failures.push(format!(
                "{} is listed as a known gap but is now refused: remove it from KNOWN_GAPS",
                case.name
            )),
            (false, None) if !agrees_with_istio(expected, &errors) => failures.push(format!(
                "invalid {} was refused, but not for Istio's reason ({expected}): {errors:?}",
                case.name
            )),
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn destination_rules() {
    check_kind("destinationrule");
}

#[test]
fn service_entries() {
    check_kind("serviceentry");
}

#[test]
fn workload_entries() {
    check_kind("workloadentry");
}

#[test]
fn peer_authentications() {
    check_kind("peerauth");
}

#[test]
fn authorization_policies() {
    check_kind("authz");
}

#[test]
fn request_authentications() {
    check_kind("reqauth");
}
