//! The project's own examples: every file of examples/*/ and examples/*/scenarios/ loads,
//! validates, and sets no field Bosun does not act on yet, so what the docs tell users to
//! swap in works as written.

use std::path::{Path, PathBuf};

use bosun_api::{load_str, unsupported_fields, validate};

fn example_files() -> Vec<PathBuf> {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files = Vec::new();
    for example in std::fs::read_dir(&examples).expect("examples/") {
        let example = example.expect("entry").path();
        for folder in [example.clone(), example.join("scenarios")] {
            let Ok(entries) = std::fs::read_dir(&folder) else {
                continue;
            };
            files.extend(
                entries
                    .map(|entry| entry.expect("entry").path())
                    .filter(|path| path.extension().is_some_and(|ext| ext == "yaml")),
            );
        }
    }
    files.sort();
    files
}

#[test]
fn every_example_file_loads_validates_and_is_acted_on_whole() {
    let files = example_files();
    assert!(files.len() >= 20, "found only {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        let loaded = load_str(&text, &file);
        assert!(
            loaded.errors.is_empty(),
            "{}: {:#?}",
            file.display(),
            loaded.errors
        );
        for resource in &loaded.resources {
            let errors: Vec<String> = validate(resource)
                .into_iter()
                .filter(|message| message.is_error())
                .map(|message| message.to_string())
                .collect();
            assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
            let unsupported = unsupported_fields(resource);
            assert!(
                unsupported.is_empty(),
                "{}: not supported yet: {unsupported:?}",
                file.display()
            );
        }
    }
}
