//! Errors found while loading: each names its `file:line` and, when known, the resource.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::meta::ResourceRef;
use crate::origin::Origin;

/// A document that could not be loaded. The other documents of the load are unaffected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The offending field when the parser knows it, else the start of the document.
    pub origin: Origin,
    /// The resource, when its kind and name could be read.
    pub resource: Option<ResourceRef>,
    pub kind: LoadErrorKind,
    /// What is wrong, naming the field: "unknown field `foo`, expected one of ...".
    pub message: String,
}

/// The sort of problem, for callers that react differently to each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadErrorKind {
    /// Not YAML, or not valid UTF-8.
    Syntax,
    /// YAML, but not a valid resource of its kind (unknown field, wrong type, missing field).
    Schema,
    /// The same kind, namespace and name as an earlier resource, defined at `first`.
    Duplicate { first: Origin },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.resource {
            Some(resource) => write!(f, "{resource} ({}): {}", self.origin, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

impl std::error::Error for LoadError {}

/// A folder that could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadDirError {
    #[error("cannot read folder {}: {source}", path.display())]
    ReadDir { path: PathBuf, source: io::Error },
    #[error("cannot read {}: {source}", path.display())]
    ReadFile { path: PathBuf, source: io::Error },
}
