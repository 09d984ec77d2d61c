//! Refuses a second resource with the same kind, namespace and name.

use std::collections::HashMap;

use super::{LoadError, LoadErrorKind, LoadResult};
use crate::origin::Origin;

/// Keeps the first of each (group, kind, namespace, name) and reports the others, naming
/// both places. Nameless resources (a `List`) are never duplicates.
pub(super) fn refuse_duplicates(result: &mut LoadResult) {
    let mut first_seen: HashMap<(String, String, String, String), Origin> = HashMap::new();
    let mut kept = Vec::with_capacity(result.resources.len());
    for resource in std::mem::take(&mut result.resources) {
        let meta = resource.meta();
        if meta.name.is_empty() {
            kept.push(resource);
            continue;
        }
        let key = (
            resource.group().to_owned(),
            resource.kind().to_owned(),
            meta.namespace.clone(),
            meta.name.clone(),
        );
        match first_seen.get(&key) {
            Some(first) => {
                let reference = resource.reference();
                result.errors.push(LoadError {
                    origin: resource.origin().clone(),
                    message: format!(
                        "duplicate {reference}: defined at {first} and {}",
                        resource.origin()
                    ),
                    resource: Some(reference),
                    kind: LoadErrorKind::Duplicate {
                        first: first.clone(),
                    },
                });
            }
            None => {
                first_seen.insert(key, resource.origin().clone());
                kept.push(resource);
            }
        }
    }
    result.resources = kept;
}
