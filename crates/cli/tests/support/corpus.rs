//! What the corpus runners report: how many cases passed of how many apply, and why the
//! others did not run. Printed, and written to `target/<corpus>-<proxy>.txt` for notes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::mesh::ClientProxy;

#[derive(Default)]
pub struct Tally {
    pub passed: Vec<String>,
    pub failed: Vec<String>,
    pub unsupported: Vec<String>,
    /// Cases that apply but are known to fail, with the reason; they must keep failing.
    pub known_gaps: Vec<String>,
    pub not_applicable: BTreeMap<String, usize>,
}

impl Tally {
    pub fn applicable(&self) -> usize {
        self.passed.len() + self.failed.len() + self.known_gaps.len()
    }

    /// Counts a case left out, by the first word of why.
    pub fn not_applicable(&mut self, reason: &str) {
        let reason = reason.split(' ').next().unwrap_or_default().to_owned();
        *self.not_applicable.entry(reason).or_default() += 1;
    }

    /// Prints the tally and writes `target/<corpus>-<proxy>.txt`.
    pub fn report(&self, corpus: &str, proxy: ClientProxy) {
        eprintln!(
            "{corpus} with {proxy:?}: {} passed of {} applicable ({} known gaps, {} more not supported yet, {} not applicable here)",
            self.passed.len(),
            self.applicable(),
            self.known_gaps.len(),
            self.unsupported.len(),
            self.not_applicable.values().sum::<usize>(),
        );
        for failed in &self.failed {
            eprintln!("  failed {failed}");
        }
        for unsupported in &self.unsupported {
            eprintln!("  unsupported {unsupported}");
        }
        eprintln!("  not applicable, by reason: {:?}", self.not_applicable);
        let name = match proxy {
            ClientProxy::Bosun => "bosun",
            ClientProxy::Envoy(_) => "envoy",
        };
        let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target")
            .join(format!("{corpus}-{name}.txt"));
        let mut text = format!(
            "passed {} of {} applicable ({} known gaps); {} not supported yet\n",
            self.passed.len(),
            self.applicable(),
            self.known_gaps.len(),
            self.unsupported.len()
        );
        for (label, lines) in [
            ("pass", &self.passed),
            ("FAIL", &self.failed),
            ("gap", &self.known_gaps),
            ("unsupported", &self.unsupported),
        ] {
            for line in lines {
                text.push_str(&format!("{label} {line}\n"));
            }
        }
        let _ = std::fs::write(path, text);
    }

    /// Fails the test when a case failed or too few applied.
    pub fn assert_passed(&self, least_applicable: usize, logs: impl FnOnce() -> String) {
        assert!(
            self.failed.is_empty(),
            "{} of {} applicable cases failed:\n{}\n{}",
            self.failed.len(),
            self.applicable(),
            self.failed.join("\n"),
            logs()
        );
        assert!(
            self.applicable() >= least_applicable,
            "only {} cases applied",
            self.applicable()
        );
    }
}
