//! Notices edits in a config folder and turns bursts of file events into one signal.
//!
//! Editors save in several steps (write a temp file, rename, touch), and a user may save
//! several files at once; the debouncer folds such a burst into one reload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;

/// How long the folder must stay quiet before a burst of events becomes one reload.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}

/// A running watch; dropping it stops watching.
pub struct FolderWatch {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
}

impl FolderWatch {
    /// Watches `dir` (not recursively) and sends `()` on `changed` after each quiet burst
    /// of events that touched a YAML file.
    pub fn start(
        dir: &Path,
        debounce: Duration,
        changed: mpsc::Sender<()>,
    ) -> Result<Self, WatchError> {
        let handler = move |result: DebounceEventResult| match result {
            Ok(events) => {
                // Reading the files on reload raises access events: only changes count,
                // or every reload would trigger the next.
                let touches_yaml = events
                    .iter()
                    .filter(|event| !matches!(event.kind, EventKind::Access(_)))
                    .flat_map(|event| event.paths.iter())
                    .any(|path| is_yaml(path));
                if touches_yaml {
                    // A full channel already holds a pending reload: that one will see
                    // this change too, so dropping the signal loses nothing.
                    let _ = changed.try_send(());
                }
            }
            Err(errors) => {
                for error in errors {
                    tracing::warn!(%error, "config folder watch error");
                }
                let _ = changed.try_send(());
            }
        };
        let tick = Some(debounce / 4);
        let mut debouncer =
            new_debouncer(debounce, tick, handler).map_err(|source| WatchError::Watch {
                path: dir.to_path_buf(),
                source,
            })?;
        debouncer
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|source| WatchError::Watch {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(Self {
            _debouncer: debouncer,
        })
    }
}

/// The files Bosun reads from a config folder.
pub fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|ext| ext.to_str()),
        Some("yaml" | "yml")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_of_writes_becomes_one_signal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, mut rx) = mpsc::channel(1);
        let _watch = FolderWatch::start(dir.path(), Duration::from_millis(50), tx).expect("watch");
        for i in 0..5 {
            std::fs::write(dir.path().join("a.yaml"), format!("# {i}\n")).expect("write");
        }
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a change is signalled")
            .expect("channel open");
        // Only non-YAML files, or reading a YAML file: no signal.
        std::fs::write(dir.path().join("notes.txt"), "x").expect("write");
        let _ = std::fs::read_to_string(dir.path().join("a.yaml")).expect("read");
        let quiet = tokio::time::timeout(Duration::from_millis(400), rx.recv()).await;
        assert!(quiet.is_err(), "a non-YAML file must not trigger a reload");
    }
}
