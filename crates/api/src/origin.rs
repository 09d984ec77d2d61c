//! Where a resource came from, so every message can point at `file:line`.

use std::fmt;
use std::path::PathBuf;

/// A place in a configuration file: the file and a 1-based line number.
///
/// Displays as `file:line`, the form editors and terminals turn into links.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub file: PathBuf,
    pub line: u32,
}

impl Origin {
    pub fn new(file: impl Into<PathBuf>, line: u32) -> Self {
        Self {
            file: file.into(),
            line,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_file_colon_line() {
        assert_eq!(
            Origin::new("mesh/reviews.yaml", 12).to_string(),
            "mesh/reviews.yaml:12"
        );
    }
}
