//! Finds a virtual host's first matching route without trying every route: routes whose
//! path is an exact or prefix match are looked up by path, the rest are tried in order,
//! and the first match in route order wins, as Envoy's linear walk would have it.
//!
//! A request's candidates are the routes keyed by its whole path, by each of its prefixes
//! that some route names, and the routes that cannot be keyed (regex, case-insensitive).
//! Each list is in route order, so the winner is the lowest index that fully matches.

use std::collections::HashMap;

use super::matcher::{PathMatch, RouteMatch};

/// Below this many routes a walk is as quick as the lookups.
const INDEXED_FROM: usize = 16;

#[derive(Debug, Default)]
pub struct RouteIndex {
    /// `None` for short route lists: they are walked.
    keyed: Option<Keyed>,
}

#[derive(Debug, Default)]
struct Keyed {
    exact: HashMap<String, Vec<usize>>,
    prefix: HashMap<String, Vec<usize>>,
    /// The distinct lengths of the prefixes, shortest first.
    prefix_lengths: Vec<usize>,
    unkeyed: Vec<usize>,
}

impl RouteIndex {
    /// The index of routes with these matchers, in route order.
    pub fn new(matchers: &[&RouteMatch]) -> Self {
        if matchers.len() < INDEXED_FROM {
            return RouteIndex::default();
        }
        let mut keyed = Keyed::default();
        for (index, matcher) in matchers.iter().enumerate() {
            let case_sensitive = matcher.case_sensitive;
            match &matcher.path {
                PathMatch::Exact(path) if case_sensitive => {
                    keyed.exact.entry(path.clone()).or_default().push(index);
                }
                PathMatch::Prefix(prefix) if case_sensitive => {
                    keyed.prefix.entry(prefix.clone()).or_default().push(index);
                }
                _ => keyed.unkeyed.push(index),
            }
        }
        let mut lengths: Vec<usize> = keyed.prefix.keys().map(String::len).collect();
        lengths.sort_unstable();
        lengths.dedup();
        keyed.prefix_lengths = lengths;
        RouteIndex { keyed: Some(keyed) }
    }

    /// The position of the first of `count` routes (those the index was built from) for
    /// which `matches` holds, trying only the candidates for `path`.
    pub fn first_match(
        &self,
        path: &str,
        count: usize,
        matches: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let Some(keyed) = &self.keyed else {
            return (0..count).find(|&index| matches(index));
        };
        let mut best: Option<usize> = None;
        let mut consider = |candidates: &[usize]| {
            for &index in candidates {
                if best.is_some_and(|best| index >= best) {
                    return;
                }
                if matches(index) {
                    best = Some(index);
                    return;
                }
            }
        };
        if let Some(candidates) = keyed.exact.get(path) {
            consider(candidates);
        }
        for &length in &keyed.prefix_lengths {
            let Some(head) = path.get(..length) else {
                // Longer than the path, or not on a character boundary.
                if length > path.len() {
                    break;
                }
                continue;
            };
            if let Some(candidates) = keyed.prefix.get(head) {
                consider(candidates);
            }
        }
        consider(&keyed.unkeyed);
        best
    }
}
