//! Istio's path normalization table (`../shared/corpus/istio-security/path-normalization.yaml`,
//! from its integration tests): every input, in every mode, becomes what Istio's proxies
//! make of it, and inputs Istio leaves alone stay as sent.

use std::path::Path;

use bosun_proxy::http_path::{EscapedSlashes, InvalidPath, PathNormalization};
use serde_json::Value;

const TABLE: &str = "../../../shared/corpus/istio-security/path-normalization.yaml";

fn mode(name: &str) -> PathNormalization {
    let (normalize, merge_slashes, escaped_slashes) = match name {
        "NONE" => (false, false, EscapedSlashes::Keep),
        "BASE" => (true, false, EscapedSlashes::Keep),
        "MERGE_SLASHES" => (true, true, EscapedSlashes::Keep),
        "DECODE_AND_MERGE_SLASHES" => (true, true, EscapedSlashes::Unescape),
        other => panic!("unknown mode {other}"),
    };
    PathNormalization {
        normalize,
        merge_slashes,
        escaped_slashes,
    }
}

/// The path as the proxy sees it: the request line's target without its fragment (the
/// HTTP parser drops it before normalization does anything).
fn normalized(input: &str, mode_name: &str) -> Result<String, InvalidPath> {
    let path = input.split('#').next().unwrap_or_default();
    mode(mode_name).apply(path).map(|p| p.into_owned())
}

#[test]
fn every_input_in_every_mode_as_istio_makes_it() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(TABLE);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the shared corpus belongs beside the checkout)",
            path.display()
        )
    });
    let table: Value = serde_saphyr::from_str(&text).expect("the table parses");
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut check = |input: &str, mode: &str, expected: &str| {
        checked += 1;
        let got = normalized(input, mode);
        if got.as_deref() != Ok(expected) {
            failures.push(format!("{mode} {input:?}: {got:?}, Istio: {expected:?}"));
        }
    };
    for case in table["normalization_cases"].as_array().expect("cases") {
        let input = case["input"].as_str().expect("input");
        for (mode, expected) in case["expected"].as_object().expect("per mode") {
            check(input, mode, expected.as_str().expect("a path"));
        }
    }
    for group in ["not_normalized_cases", "percent_encoded_cases"] {
        let cases = table[group]["cases"].as_array().expect("cases");
        for case in cases {
            let mode = case["mode"]
                .as_str()
                .or(table[group]["mode"].as_str())
                .expect("a mode");
            check(
                case["input"].as_str().expect("input"),
                mode,
                case["expected"].as_str().expect("expected"),
            );
        }
    }
    for case in table["invalid_cases"].as_array().expect("invalid cases") {
        checked += 1;
        let input = case["input"].as_str().expect("input");
        let mode = case["mode"].as_str().expect("mode");
        if normalized(input, mode).is_ok() {
            failures.push(format!("{mode} {input:?} is not refused"));
        }
    }
    assert!(checked >= 340, "only {checked} cases read");
    assert!(
        failures.is_empty(),
        "{} of {checked}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
