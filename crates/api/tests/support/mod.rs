//! Finds the shared corpus of third-party Istio configuration.

use std::path::PathBuf;

/// `shared/corpus/<folder>`, beside the checkout (CI) or above it. `None` (with a notice)
/// when absent, so the crate's other tests still run in a bare checkout.
pub fn corpus_dir(folder: &str) -> Option<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = manifest
        .ancestors()
        .map(|dir| dir.join("shared").join("corpus").join(folder));
    for candidate in candidates {
        if candidate.is_dir() {
            return Some(candidate);
        }
    }
    if std::env::var_os("BOSUN_REQUIRE_CORPUS").is_some() {
        panic!(
            "BOSUN_REQUIRE_CORPUS is set but shared/corpus/{folder} is not above {}",
            manifest.display()
        );
    }
    eprintln!(
        "corpus folder shared/corpus/{folder} not found above {}; skipping",
        manifest.display()
    );
    None
}
