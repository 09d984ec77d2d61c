//! Virtual host selection by `Host` / `:authority`, with Envoy's domain rules.
//!
//! Order of precedence (Envoy's): exact names, then suffix wildcards (`*.example.com`,
//! longest first), then prefix wildcards (`example.*`, longest first), then `*`.
//! A wildcard never matches an empty remainder. Matching is case-insensitive and the
//! port, when present in a domain, is part of the name (`reviews:9080`).

use std::collections::HashMap;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DomainError {
    #[error("domain {0:?} appears in more than one virtual host")]
    Duplicate(String),
    #[error("domain {0:?} is not a valid domain pattern")]
    Invalid(String),
}

/// Precompiled lookup from a request's authority to the index of its virtual host.
#[derive(Debug, Default)]
pub struct DomainIndex {
    exact: HashMap<String, usize>,
    /// `(suffix, vhost)`, longest suffix first.
    suffixes: Vec<(String, usize)>,
    /// `(prefix, vhost)`, longest prefix first.
    prefixes: Vec<(String, usize)>,
    any: Option<usize>,
}

impl DomainIndex {
    /// Builds the index from each virtual host's domain list (indexed like the input).
    pub fn build<'a, I, D>(vhosts: I) -> Result<Self, DomainError>
    where
        I: IntoIterator<Item = D>,
        D: IntoIterator<Item = &'a str>,
    {
        let mut index = DomainIndex::default();
        let mut seen = std::collections::HashSet::new();
        for (vhost, domains) in vhosts.into_iter().enumerate() {
            for domain in domains {
                let domain = domain.to_ascii_lowercase();
                if domain.is_empty() {
                    return Err(DomainError::Invalid(domain));
                }
                if !seen.insert(domain.clone()) {
                    return Err(DomainError::Duplicate(domain));
                }
                if domain == "*" {
                    index.any = Some(vhost);
                } else if let Some(suffix) = domain.strip_prefix('*') {
                    index.suffixes.push((suffix.to_owned(), vhost));
                } else if let Some(prefix) = domain.strip_suffix('*') {
                    index.prefixes.push((prefix.to_owned(), vhost));
                } else if domain.contains('*') {
                    return Err(DomainError::Invalid(domain));
                } else {
                    index.exact.insert(domain, vhost);
                }
            }
        }
        // Stable sorts keep configuration order among equal lengths.
        index
            .suffixes
            .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        index
            .prefixes
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(index)
    }

    /// The virtual host serving `authority`, if any.
    pub fn find(&self, authority: &str) -> Option<usize> {
        // Hosts are almost always lower case already; only allocate when they are not.
        let lowered;
        let host = if authority.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = authority.to_ascii_lowercase();
            lowered.as_str()
        } else {
            authority
        };
        if let Some(&vhost) = self.exact.get(host) {
            return Some(vhost);
        }
        for (suffix, vhost) in &self.suffixes {
            if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                return Some(*vhost);
            }
        }
        for (prefix, vhost) in &self.prefixes {
            if host.len() > prefix.len() && host.starts_with(prefix.as_str()) {
                return Some(*vhost);
            }
        }
        self.any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(vhosts: &[&[&str]]) -> DomainIndex {
        DomainIndex::build(vhosts.iter().map(|d| d.iter().copied())).expect("valid domains")
    }

    #[test]
    fn exact_beats_wildcards() {
        let idx = index(&[&["*"], &["*.example.com"], &["api.example.com"], &["api.*"]]);
        assert_eq!(idx.find("api.example.com"), Some(2));
        assert_eq!(idx.find("www.example.com"), Some(1));
        assert_eq!(idx.find("api.other.org"), Some(3));
        assert_eq!(idx.find("unrelated"), Some(0));
    }

    #[test]
    fn longest_suffix_wins_and_wildcard_needs_a_remainder() {
        let idx = index(&[&["*.com"], &["*.example.com"]]);
        assert_eq!(idx.find("a.example.com"), Some(1));
        assert_eq!(idx.find("a.other.com"), Some(0));
        assert_eq!(idx.find(".example.com"), Some(0));
        let idx = index(&[&["*-bar.foo.com"]]);
        assert_eq!(idx.find("-bar.foo.com"), None);
        assert_eq!(idx.find("baz-bar.foo.com"), Some(0));
    }

    #[test]
    fn longest_prefix_wins() {
        let idx = index(&[&["foo*"], &["foo.bar*"]]);
        assert_eq!(idx.find("foo.bar.baz"), Some(1));
        assert_eq!(idx.find("foo.qux"), Some(0));
        assert_eq!(idx.find("foo"), None);
    }

    #[test]
    fn ports_are_part_of_the_name_and_case_is_ignored() {
        let idx = index(&[&["reviews", "reviews:9080"], &["ratings:9080"]]);
        assert_eq!(idx.find("reviews:9080"), Some(0));
        assert_eq!(idx.find("REVIEWS"), Some(0));
        assert_eq!(idx.find("ratings:9080"), Some(1));
        assert_eq!(idx.find("ratings"), None);
        assert_eq!(idx.find("reviews:9081"), None);
    }

    #[test]
    fn duplicates_and_inner_wildcards_are_rejected() {
        let err = DomainIndex::build([["a"].into_iter(), ["A"].into_iter()]).unwrap_err();
        assert_eq!(err, DomainError::Duplicate("a".into()));
        let err = DomainIndex::build([["a*b"].into_iter()]).unwrap_err();
        assert_eq!(err, DomainError::Invalid("a*b".into()));
    }
}
