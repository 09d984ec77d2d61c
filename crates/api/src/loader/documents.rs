//! Splits a YAML stream into its documents, remembering where each starts.
//!
//! Each document is parsed on its own so that one broken document does not hide the
//! others, and so errors can be mapped back to lines of the whole file.

/// One document of a YAML stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Document {
    /// The document's text; marker lines are blanked so line numbers stay aligned.
    pub text: String,
    /// Number of file lines before `text` starts (add to a line within `text`).
    pub line_offset: u32,
    /// The 1-based file line of the document's first content (not comment) line.
    pub start_line: u32,
}

impl Document {
    /// Maps a 1-based line within the document to a line of the file.
    pub fn file_line(&self, line_in_document: u64) -> u32 {
        u32::try_from(line_in_document)
            .unwrap_or(u32::MAX)
            .saturating_add(self.line_offset)
    }
}

/// Splits `text` at `---` and `...` markers. Documents holding only comments and blank
/// lines are left out.
pub(crate) fn split_documents(text: &str) -> Vec<Document> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut documents = Vec::new();
    let mut current = Chunk::starting_at(0);
    for (index, line) in text.lines().enumerate() {
        let line_number = u32::try_from(index).unwrap_or(u32::MAX).saturating_add(1);
        if is_marker(line, "---") {
            documents.extend(current.finish());
            current = Chunk::starting_at(line_number - 1);
            // Content after the marker (`--- {a: 1}`) stays, shifted to keep its column.
            current.push(&format!("   {}", &line[3..]), line_number);
        } else if is_marker(line, "...") {
            documents.extend(current.finish());
            current = Chunk::starting_at(line_number);
        } else if line.starts_with('%') && current.start_line.is_none() {
            // A directive belongs to the document that follows its `---`.
            current.push("", line_number);
        } else {
            current.push(line, line_number);
        }
    }
    documents.extend(current.finish());
    documents
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

struct Chunk {
    lines: Vec<String>,
    line_offset: u32,
    start_line: Option<u32>,
}

impl Chunk {
    fn starting_at(line_offset: u32) -> Self {
        Self {
            lines: Vec::new(),
            line_offset,
            start_line: None,
        }
    }

    fn push(&mut self, line: &str, line_number: u32) {
        let content = line.trim_start();
        if self.start_line.is_none() && !content.is_empty() && !content.starts_with('#') {
            self.start_line = Some(line_number);
        }
        self.lines.push(line.to_owned());
    }

    fn finish(self) -> Option<Document> {
        let start_line = self.start_line?;
        Some(Document {
            text: self.lines.join("\n") + "\n",
            line_offset: self.line_offset,
            start_line,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_keeps_file_lines() {
        let text = "# leading comment\n---\na: 1\n---\n\n# only a comment\n---\nb: 2\nc: 3\n...\n";
        let documents = split_documents(text);
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[0].start_line, 3);
        assert_eq!(
            documents[0].file_line(2),
            3,
            "line 2 of the first document is file line 3"
        );
        assert_eq!(documents[1].start_line, 8);
        assert_eq!(documents[1].file_line(2), 8);
        assert!(documents[1].text.contains("c: 3"));
    }

    #[test]
    fn document_without_leading_marker_starts_at_line_one() {
        let documents = split_documents("kind: A\n---\nkind: B\n");
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[0].start_line, 1);
        assert_eq!(documents[1].start_line, 3);
    }

    #[test]
    fn content_on_the_marker_line_is_kept() {
        let documents = split_documents("--- {kind: A}\n");
        assert_eq!(documents.len(), 1);
        assert_eq!(documents[0].start_line, 1);
        assert_eq!(documents[0].text.trim(), "{kind: A}");
    }

    #[test]
    fn dashes_inside_a_value_are_not_markers() {
        let documents = split_documents("a: |\n  ---\n  x\nb: ---x\n");
        assert_eq!(documents.len(), 1);
    }

    #[test]
    fn empty_input_has_no_documents() {
        assert!(split_documents("").is_empty());
        assert!(split_documents("---\n---\n# nothing\n").is_empty());
    }
}
